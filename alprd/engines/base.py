"""The engine interface every backend implements, and the typed build request."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

Role = Literal["vehicle", "plate", "ocr"]
Kind = Literal["detector", "recognizer"]
ROLES: tuple[Role, ...] = ("vehicle", "plate", "ocr")
KIND: dict[Role, Kind] = {"vehicle": "detector", "plate": "detector", "ocr": "recognizer"}

#: Bumped when the layout of our artefacts or sidecars changes: every engine rebuilds.
ENGINE_FORMAT = 1

Progress = Callable[[str], None]


class EngineError(Exception):
    """An engine cannot be built, validated or loaded; the message says which and why."""


class ModelRejected(EngineError):
    """The model itself cannot serve its role (unreadable, unfit, its engine
    disagrees with it): the same bytes will not do better on another try."""


class BackendUnavailable(EngineError):
    """The runtime for a backend is not installed or has no usable device here."""


@dataclass(frozen=True)
class InputShape:
    """Network input: batch x 3 x height x width; width None = dynamic (recogniser)."""

    batch: int
    height: int
    width: int | None

    def dims(self, width: int | None = None) -> tuple[int, int, int, int]:
        w = self.width if self.width is not None else width
        if w is None:
            raise ValueError("dynamic width needs a width")
        return (self.batch, 3, self.height, w)


#: Widths a dynamic-width recogniser engine is optimised for (TensorRT profile).
OCR_WIDTHS = (48, 320, 960)


@dataclass(frozen=True)
class Tolerances:
    """How closely an engine must agree with its source model (config: engines.validation)."""

    conf: float = 0.25  # detections of the source above this confidence must be matched
    iou_min: float = 0.8  # a match overlaps at least this much
    score_tol: float = 0.1  # and its confidence differs by at most this
    min_match: float = 0.9  # fraction of source detections (and of recognised texts) matched


@dataclass(frozen=True)
class BuildRequest:
    """Everything one engine build needs. Paths are absolute."""

    role: Role
    source: Path
    backend: str
    precision: str  # effective for the backend (see Backend.effective_precision)
    shape: InputShape
    workspace_gb: float
    calibration: tuple[Path, ...]  # images, for int8
    validation: tuple[Path, ...]  # sample images to compare engine and source on
    tolerances: Tolerances
    classes: tuple[str, ...] = ()  # class names the role needs from a detector
    streams: int = 1  # inferences a CPU engine runs at once (`run_many`); not in the build

    @property
    def kind(self) -> Kind:
        return KIND[self.role]


class Engine(Protocol):
    """A loaded engine: float32 NCHW batch in, the model's outputs out."""

    backend: str
    precision: str

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]: ...

    def close(self) -> None: ...


T = TypeVar("T")
U = TypeVar("U")

#: A computation that pauses (yields) where it would wait for a device, so that
#: another can use the host meanwhile (`alprd.pipeline.lanes.Lanes`); `drive`
#: runs one straight through.
Steps = Generator[None, None, T]


def drive(steps: Steps[T]) -> T:
    """Run `steps` to its end and return its result (no other work between)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class Pending(Generic[T]):
    """Work handed to a device whose result is collected later (`result` waits
    for it); on a host engine the result is already there."""

    def __init__(self, collect: Callable[[], T]) -> None:
        self._collect: Callable[[], T] | None = collect
        self._value: T | None = None

    @staticmethod
    def done(value: T) -> Pending[T]:
        return Pending(lambda: value)

    def result(self) -> T:
        if self._collect is not None:
            self._value, self._collect = self._collect(), None
        return self._value  # type: ignore[return-value]

    def then(self, f: Callable[[T], U]) -> Pending[U]:
        """A pending `f(result)`."""
        return Pending(lambda: f(self.result()))


def run_all(
    engine: Engine, batches: Sequence[npt.NDArray[np.float32]]
) -> list[list[npt.NDArray[np.float32]]]:
    """`engine.run` on each batch: at once where the engine can (`run_many`: CPU
    engines with `engines.streams` > 1), else one after another."""
    run_many = getattr(engine, "run_many", None)
    if run_many is not None and len(batches) > 1:
        outputs: list[list[npt.NDArray[np.float32]]] = run_many(batches)
        return outputs
    return [engine.run(b) for b in batches]


class Backend(Protocol):
    """One runtime. Implementations live in backends/<name>.py."""

    name: ClassVar[str]
    extension: ClassVar[str]  # engine file suffix, e.g. ".engine"
    precisions: ClassVar[tuple[str, ...]]

    def runtime_version(self) -> str: ...

    def device_identity(self) -> dict[str, str]: ...

    def build(self, onnx: Path, request: BuildRequest, out: Path, progress: Progress) -> None:
        """Write the engine for `onnx` (an fp32 ONNX of the source) to `out`."""
        ...

    def load(self, path: Path, request: BuildRequest) -> Engine: ...


def effective_precision(backend: Backend, requested: str) -> str:
    """The precision a backend will really use: the requested one when supported,
    else the nearest higher one (int8 -> fp16 -> fp32)."""
    order = ["int8", "fp16", "fp32"]
    for p in order[order.index(requested) :]:
        if p in backend.precisions:
            return p
    return backend.precisions[-1]
