"""Batches in flight at once, each in a lane of its own."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from alprd.engines.base import Steps

if TYPE_CHECKING:
    from alprd.pipeline.recognizer import Recognizer

T = TypeVar("T")


class Lanes(Generic[T]):
    """Up to `n` batches in flight at once (`Recognizer.steps`, or anything built
    on it), each in a lane of its own (on a GPU, its own CUDA stream): while the
    device works on one batch, the host decodes another's results and sets up its
    next stage, instead of the two taking turns. `submit` a batch when `free`,
    then `step`: it advances the batches in flight one step each in turn, oldest
    first, and hands finished ones back in the order they were submitted. With
    one lane a batch simply runs through."""

    def __init__(self, recognizer: Recognizer, n: int) -> None:
        self.contexts = [recognizer.lane() for _ in range(n)]
        self.idle = list(range(n))
        self.active: deque[tuple[Steps[T], int, int]] = deque()
        self.tags: dict[int, Any] = {}
        self.finished: dict[int, T] = {}
        self.submitted = self.released = 0

    @property
    def free(self) -> bool:
        return bool(self.idle)

    @property
    def busy(self) -> bool:
        """Batches in flight, or finished and not handed back yet."""
        return self.released < self.submitted

    def submit(self, steps: Steps[T], tag: Any = None) -> None:
        """Start `steps` (its first device work is queued now) in a free lane."""
        seq = self.submitted
        self.submitted += 1
        self.tags[seq] = tag
        self._advance(steps, self.idle.pop(0), seq)

    def step(self) -> list[tuple[Any, T]]:
        """Advance the batch in flight whose turn it is by one step (waiting for
        its device work, likely done meanwhile); returns (tag, result) of the
        batches finished, in submission order."""
        if self.active:
            self._advance(*self.active.popleft())
        out = []
        while self.released in self.finished:
            out.append((self.tags.pop(self.released), self.finished.pop(self.released)))
            self.released += 1
        return out

    def drain(self) -> list[tuple[Any, T]]:
        """Run every batch in flight to its end; all of them, in order."""
        out = []
        while self.busy:
            out += self.step()
        return out

    def _advance(self, steps: Steps[T], lane: int, seq: int) -> None:
        with self.contexts[lane]:
            try:
                next(steps)
            except StopIteration as end:
                self.idle.append(lane)
                self.finished[seq] = end.value
                return
        self.active.append((steps, lane, seq))


@dataclass
class BatchWindow:
    """When the main loop takes the cameras' frames into a batch for a free lane.
    With no other batch in flight it takes them at once (nothing to wait behind;
    one lane: always). While another batch is in flight (the GPU busy with it),
    it waits up to `window_s` from the first frame seen waiting for more cameras'
    frames, and takes them as soon as `expected` cameras have one: a lane freed
    the moment the previous batch took every frame would otherwise start a batch
    of the one or two cameras whose frame came since. 0: at once, always. The
    clock (`now`, seconds) comes from the caller."""

    window_s: float
    _since: float | None = None

    def due(self, waiting: int, expected: int, in_flight: bool, now: float) -> bool:
        """Whether to take the `waiting` frames now (`expected`: cameras that
        deliver frames; `in_flight`: another batch is in flight)."""
        if waiting == 0:
            self._since = None
            return False
        if not in_flight or self.window_s <= 0 or waiting >= expected:
            self._since = None
            return True
        if self._since is None:
            self._since = now
        if now - self._since >= self.window_s:
            self._since = None
            return True
        return False
