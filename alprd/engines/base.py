"""The engine interface every backend implements, and the typed build request."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Literal, Protocol, TypeGuard, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from alprd import ops

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
    """A loaded engine: float32 NCHW batch in, the model's outputs out. What an
    engine can do beyond `run` is declared by every backend, never probed for:
    `on_device` says whether it is a `DeviceEngine` (`is_device`)."""

    backend: str
    precision: str
    #: works on frames where they already are (a torch device): a `DeviceEngine`
    on_device: bool
    #: runs any batch size (callers pad to few sizes, `alprd.pipeline.detect.bucket`);
    #: False: exactly the batch it was built for
    any_batch: bool
    #: inferences `run_many` runs at once (CPU engines: `engines.streams`)
    streams: int

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]: ...

    def run_many(
        self, batches: Sequence[npt.NDArray[np.float32]]
    ) -> list[list[npt.NDArray[np.float32]]]:
        """`run` on each batch: at once where the engine can (CPU engines with
        `engines.streams` > 1), else one after another."""
        ...

    def warm(self, shape: tuple[int, int, int], batch: int) -> None:
        """Ready for inputs of `shape` (C x H x W) at every batch size up to
        `batch` that callers will use (a no-op where nothing is prepared per shape)."""
        ...

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


#: class ids a detector keeps; None = all
Keep = Sequence[int] | npt.NDArray[np.int64] | None
#: (frame index, x1, y1, x2, y2): a region of a frame to search, whole pixels
Region = tuple[int, int, int, int, int]
#: Where a plate is cut from its frame: x1, y1, x2, y2 (whole pixels, may be
#: empty), and whether the cut is a two-line plate to unfold into one line
Cut = tuple[int, int, int, int, bool]
#: candidates above the score filter and the letterbox of each input
Launched = tuple[Pending[ops.Candidates], list[ops.Letterbox]]


@runtime_checkable
class DeviceFrames(Protocol):
    """A batch's frames uploaded once (`DeviceEngine.upload`) and shared by the
    stages of that batch."""

    @property
    def arrays(self) -> Sequence[ops.AnyImage]:
        """The frames as given (on the host, or decoded on the device), in order."""
        ...

    def __len__(self) -> int: ...

    def take(self, indices: Sequence[int]) -> DeviceFrames:
        """These frames (repeats allowed), sharing the uploaded data."""
        ...


class DeviceEngine(Engine, Protocol):
    """An engine that takes frames on its device and does its pre-processing there
    (letterbox, region sampling, plate cuts): only candidates come back. Its
    `launch_*` calls queue the work and return a `Pending` collected later."""

    #: the device is a GPU: batches in flight at once pay off (`engines.lanes`)
    gpu: bool
    #: what cameras should decode frames into (page-locked buffers); None: plain arrays
    allocate_frame: Callable[[tuple[int, ...]], ops.Image] | None

    def upload(self, images: Sequence[ops.AnyImage]) -> DeviceFrames: ...

    def launch_frames(
        self, frames: Sequence[ops.Image] | DeviceFrames, height: int, width: int,
        fill: int = 114, min_score: float = 0.0, keep: Keep = None,
    ) -> Launched:  # fmt: skip
        """Each frame letterboxed to height x width and detected on."""
        ...

    def launch_regions(
        self, frames: DeviceFrames, regions: Sequence[Region], height: int, width: int,
        fill: int = 114, min_score: float = 0.0, keep: Keep = None,
    ) -> Launched:  # fmt: skip
        """Each region letterboxed (relative to the region) and detected on."""
        ...

    def launch_cuts(
        self, frames: DeviceFrames, cuts: Sequence[tuple[int, Cut]], height: int, width: int
    ) -> Pending[npt.NDArray[np.float32]]:
        """The recogniser on plates cut from the frames (frame index, `Cut`),
        resized to height x width: its output, len(cuts) x ..."""
        ...

    def stream(self) -> AbstractContextManager[object]:
        """A context in which this engine's work goes to a queue of its own (a lane
        of `alprd.pipeline.lanes.Lanes`)."""
        ...


def is_device(engine: Engine) -> TypeGuard[DeviceEngine]:
    """Whether `engine` works on frames on its device (its declared `on_device`)."""
    return engine.on_device


class HostEngine:
    """What an engine that takes host arrays only declares: no device, the built
    batch only, nothing to warm, `run_many` one batch after another (a backend
    that runs several at once overrides it)."""

    on_device = False
    any_batch = False
    streams = 1

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        raise NotImplementedError

    def run_many(
        self, batches: Sequence[npt.NDArray[np.float32]]
    ) -> list[list[npt.NDArray[np.float32]]]:
        return [self.run(b) for b in batches]

    def warm(self, shape: tuple[int, int, int], batch: int) -> None:
        return None


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
