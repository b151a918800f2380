"""The configuration's schema: every section and setting, with its default and
its check (pydantic). Every threshold lives here; `alprd.config` reads a file
into it.

Relative paths (one rule): ``paths.root`` is resolved against the directory of the
config file; ``paths.models_dir``, ``paths.state_dir`` and ``paths.cache_dir`` against
``paths.root``; model files (``models.<role>.source``, ``models.ocr.dictionary``)
against ``paths.models_dir``; output files against ``paths.state_dir``. Absolute
paths are taken as written.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alprd import plates

Backend = Literal["auto", "tensorrt", "openvino", "onnxruntime", "torch"]
Precision = Literal["fp32", "fp16", "int8"]


class _Section(BaseModel):
    """Base of every table: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------- paths


class PathsConfig(_Section):
    root: Path = Path(".")
    models_dir: Path = Path("models")
    state_dir: Path = Path("state")
    cache_dir: Path = Path("cache")


# --------------------------------------------------------------------------- engines


class ValidationConfig(_Section):
    images: Path | None = None
    conf: float = Field(0.25, gt=0.0, lt=1.0)
    iou_min: float = Field(0.8, gt=0.0, le=1.0)
    score_tol: float = Field(0.1, ge=0.0, le=1.0)
    min_match: float = Field(0.9, ge=0.0, le=1.0)


class EnginesConfig(_Section):
    backend: Backend = "auto"
    precision: Precision = "fp16"
    workspace_gb: float = Field(2.0, gt=0, le=1024)
    batch_size: int = Field(1, ge=1, le=64)
    #: inferences a CPU engine (OpenVINO, ONNX Runtime) runs at once, the cores
    #: shared between them; "auto": see `alprd.engines.manager.cpu_streams`
    streams: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    #: batches in flight at once: with 2 on a GPU, the host decodes one batch's
    #: results and sets up its next stage while the GPU runs the other's; host
    #: engines (OpenVINO, ONNX Runtime) gain nothing from more than 1; "auto": 2
    #: when the first stage runs on a GPU (torch backend), else 1
    lanes: Annotated[int, Field(ge=1, le=8)] | Literal["auto"] = "auto"
    calibration: Path | None = None
    build_timeout_s: float = Field(3600.0, gt=0)
    build_nice: int = Field(10, ge=0, le=19)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)


# --------------------------------------------------------------------------- models


def _input_size(value: object) -> int | tuple[int, int]:
    """640 (640x640) or [height, width]; each a multiple of 32 in 32..4096."""
    sides = list(value) if isinstance(value, (list, tuple)) else [value]
    ints = [v for v in sides if isinstance(v, int) and not isinstance(v, bool)]
    if len(sides) not in (1, 2) or len(ints) != len(sides):
        raise ValueError("must be a size in pixels (640) or [height, width] ([384, 640])")
    for v in ints:
        if not 32 <= v <= 4096 or v % 32:
            raise ValueError(f"must be a multiple of 32 between 32 and 4096; got {v}")
    return ints[0] if not isinstance(value, (list, tuple)) else (ints[0], ints[-1])


#: A detector's input: 640 (640x640) or [height, width], e.g. [384, 640] for 16:9.
InputSize = Annotated[int | tuple[int, int], PlainValidator(_input_size)]
Probability = Annotated[float, Field(gt=0.0, le=1.0)]


class _Detector(_Section):
    source: Path
    input_size: InputSize
    confidence: Probability = 0.25
    iou: Probability = 0.45
    max_detections: int = Field(100, ge=1, le=1000)
    backend: Backend | None = None
    precision: Precision | None = None
    batch_size: int | None = Field(None, ge=1, le=64)

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        size = self.input_size
        return (size, size) if isinstance(size, int) else (size[0], size[1])


class VehicleModel(_Detector):
    enabled: bool = True
    source: Path = Path("vehicle-yolov8n-coco.onnx")
    input_size: InputSize = 640
    classes: list[str] = Field(default_factory=lambda: ["car", "motorcycle", "bus", "truck"])

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one class")
        dupes = sorted({c for c in value if value.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate class names: {', '.join(dupes)}")
        return value


class PlateModel(_Detector):
    source: Path = Path("plate-yolov8n.pt")
    input_size: InputSize = 416
    search_margin: float = Field(0.05, ge=0.0, le=1.0)
    full_frame_fallback: bool = True


#: The recognisers alprd ships settings for: the model files and input size each
#: needs in [models.ocr] (relative to models_dir). OCR_DEFAULT names the defaults.
OCR_PRESETS: dict[str, dict[str, Any]] = {
    "ppocrv5": {
        "source": "ocr-ppocrv5-rec.onnx",
        "dictionary": "ocr-ppocrv5-dict.txt",
        "input_height": 48,
        "input_width": None,
    },
    "alprd": {
        "source": "trained/ocr-alprd-plate.onnx",
        "dictionary": "trained/ocr-alprd-plate-dict.txt",
        "input_height": 32,
        "input_width": 128,
    },
}
OCR_DEFAULT = "alprd"
_OCR = OCR_PRESETS[OCR_DEFAULT]


class OcrModel(_Section):
    source: Path = Path(_OCR["source"])
    dictionary: Path = Path(_OCR["dictionary"])
    input_height: int = Field(_OCR["input_height"], ge=16, le=256)
    charset: str = Field(plates.CHARSET, min_length=1)
    min_char_confidence: float = Field(0.5, ge=0.0, le=1.0)
    crop_margin: float = Field(0.0, ge=-0.4, le=1.0)
    crop_trim: float = Field(0.0, ge=0.0, le=0.4)
    stretch: float = Field(1.5, ge=0.5, le=4.0)
    max_width: int = Field(480, ge=32, le=4096)
    input_width: int | None = Field(_OCR["input_width"], ge=16, le=4096)
    two_line_aspect: float = Field(1.3, ge=0.0, le=4.0)
    view_check: bool | None = None  # None: on for a fixed-width recogniser (alprd's own)
    backend: Backend | None = None
    precision: Precision | None = None
    batch_size: int | None = Field(None, ge=1, le=64)

    @field_validator("charset")
    @classmethod
    def _charset_unique(cls, value: str) -> str:
        if len(set(value)) != len(value):
            raise ValueError("characters must not repeat")
        return value


#: One role's model settings.
RoleModel = VehicleModel | PlateModel | OcrModel


class ModelsConfig(_Section):
    watch: Literal["inotify", "poll", "off"] = "inotify"
    watch_quiet_s: float = Field(2.0, gt=0)
    watch_poll_s: float = Field(2.0, gt=0)
    route: bool = True
    keep: int = Field(3, ge=0, le=20)
    keep_max_mb: float = Field(2048.0, gt=0)
    allow_unsafe_permissions: bool = False
    vehicle: VehicleModel = Field(default_factory=VehicleModel)
    plate: PlateModel = Field(default_factory=PlateModel)
    ocr: OcrModel = Field(default_factory=OcrModel)
    _pinned: frozenset[str] = PrivateAttr(default_factory=frozenset)

    def pinned(self, role: str) -> bool:
        """Whether the config file itself names `role`'s source (it then wins over a
        model routed there by a drop)."""
        return role in self._pinned


# --------------------------------------------------------------------------- cameras


class CameraConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    url: str = Field(min_length=1)
    fps: float = Field(5.0, gt=0, le=120)
    enabled: bool = True
    loop: bool = False
    zone: list[tuple[float, float]] | None = None
    regions: list[str] | None = None
    motion: bool | None = None  # motion gating for this camera; None = [motion] enabled

    @field_validator("zone")
    @classmethod
    def _zone_is_polygon(
        cls, value: list[tuple[float, float]] | None
    ) -> list[tuple[float, float]] | None:
        if value is not None and len(value) < 3:
            raise ValueError("a zone needs at least 3 points [[x, y], ...]")
        return value


# --------------------------------------------------------------------------- reading


class SourcesConfig(_Section):
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    open_timeout_s: float = Field(10.0, gt=0)


class MotionConfig(_Section):
    enabled: bool = True
    pixel_threshold: int = Field(12, ge=0, le=255)
    min_area: float = Field(0.003, ge=0.0, le=1.0)
    max_skip_s: float = Field(2.0, ge=0.0)


class TrackingConfig(_Section):
    iou_min: float = Field(0.3, gt=0.0, le=1.0)
    max_shift: float = Field(0.5, ge=0.0)
    max_age_s: float = Field(1.5, gt=0)
    min_misses: int = Field(2, ge=1)
    decided_after: int = Field(5, ge=1)
    recheck_every: int = Field(10, ge=0)


class VotingConfig(_Section):
    min_agreeing: int = Field(10, ge=0)
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    dedupe_window_s: float = Field(60.0, ge=0)
    dedupe_max_distance: int = Field(1, ge=0)
    max_reads: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _room_to_agree(self) -> VotingConfig:
        if self.max_reads < self.min_agreeing:
            raise ValueError(
                f"max_reads ({self.max_reads}) must be at least min_agreeing "
                f"({self.min_agreeing}): a pass could never agree"
            )
        return self


class PlatesConfig(_Section):
    regions: list[str] = Field(default_factory=lambda: ["world"])
    require_format: bool = False
    format_margin: float = Field(3.0, ge=0.0)
    min_length: int = Field(4, ge=1)
    formats: dict[str, list[str]] = Field(default_factory=dict)
    replace: list[tuple[str, str]] = Field(default_factory=list)
    known: dict[str, str] = Field(default_factory=dict)
    known_max_distance: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _rules_compile(self) -> PlatesConfig:
        for region, patterns in self.formats.items():
            for i, pattern in enumerate(patterns):
                try:
                    plates.parse_format(pattern)
                except ValueError as exc:
                    raise ValueError(f"formats: {region}[{i}]: {exc}") from None
        problem = plates.unknown(self.regions, self.formats)
        if problem:
            raise ValueError(f"regions: {problem}")
        for i, (pattern, repl) in enumerate(self.replace):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"replace: [{i}]: not a regular expression: {exc}") from None
            try:
                compiled.sub(repl, "")  # parses the replacement (its group references)
            except (re.error, IndexError) as exc:
                raise ValueError(f"replace: [{i}]: not a valid replacement: {exc}") from None
        return self


# --------------------------------------------------------------------------- outputs


class SqliteOutput(_Section):
    enabled: bool = True
    path: Path = Path("reads.db")


class JsonlOutput(_Section):
    enabled: bool = False
    path: Path = Path("reads.jsonl")
    max_mb: float = Field(100.0, gt=0)
    keep: int = Field(5, ge=0)


class MqttOutput(_Section):
    enabled: bool = False
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = ""
    username: str = ""
    password: str = ""
    tls: bool = False
    tls_ca_file: Path | None = None
    topic_prefix: str = Field("alprd", pattern=r"^[^#+\s]+$")
    keepalive_s: int = Field(30, ge=5)
    publish_timeout_s: float = Field(10.0, gt=0)
    reconnect_max_s: int = Field(30, ge=1)
    homeassistant: bool = False
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+\s]+$")
    node_id: str = Field("", pattern=r"^[A-Za-z0-9_-]*$")


class WebhookOutput(_Section):
    enabled: bool = False
    url: str = ""
    timeout_s: float = Field(5.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookOutput:
        if self.enabled and not re.match(r"^https?://", self.url):
            raise ValueError("url: must be an http:// or https:// URL when enabled = true")
        return self


class OutboxConfig(_Section):
    path: Path = Path("outbox.db")
    max_rows: int = Field(10_000, ge=1)
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)


class SnapshotsOutput(_Section):
    enabled: bool = True
    path: Path = Path("snapshots")
    quota_mb: float = Field(500.0, gt=0)
    jpeg_quality: int = Field(90, ge=10, le=100)


class OutputsConfig(_Section):
    backlog_max: int = Field(10_000, ge=1)
    backlog_retry_s: float = Field(2.0, gt=0)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    snapshots: SnapshotsOutput = Field(default_factory=SnapshotsOutput)
    sqlite: SqliteOutput = Field(default_factory=SqliteOutput)
    jsonl: JsonlOutput = Field(default_factory=JsonlOutput)
    mqtt: MqttOutput = Field(default_factory=MqttOutput)
    webhook: WebhookOutput = Field(default_factory=WebhookOutput)


# --------------------------------------------------------------------------- service


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class MetricsConfig(_Section):
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = Field(9108, ge=1, le=65535)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        """An IP address or a host name (labels of 1-63 letters, digits, hyphens)."""
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        labels = value.rstrip(".").split(".")
        if not value or len(value) > 253 or not all(_HOST_LABEL.fullmatch(x) for x in labels):
            raise ValueError(f"not an IP address or host name: {value!r}")
        return value


class ServiceConfig(_Section):
    startup: Literal["block", "background"] = "block"
    stop_timeout_s: float = Field(10.0, gt=0)
    health_interval_s: float = Field(60.0, gt=0)
    extend_timeout_s: float = Field(30.0, gt=1)
    #: blocks this large or larger (KiB; decoded frames) get pages of their own,
    #: returned to the system when freed (`alprd.heap.configure`): a smaller daemon,
    #: each frame a little slower; 0 (default): glibc's own threshold
    heap_mmap_threshold_kb: int = Field(0, ge=0)


# --------------------------------------------------------------------------- root


class Config(_Section):
    """The whole file. After `load`, every path in it is absolute."""

    paths: PathsConfig = Field(default_factory=PathsConfig)
    engines: EnginesConfig = Field(default_factory=EnginesConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    cameras: list[CameraConfig] = Field(default_factory=list)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    voting: VotingConfig = Field(default_factory=VotingConfig)
    plates: PlatesConfig = Field(default_factory=PlatesConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    def with_model(self, role: str, section: RoleModel) -> Config:
        """A copy with `role`'s model settings (``[models.<role>]``) replaced by
        `section`."""
        return self.model_copy(update={"models": self.models.model_copy(update={role: section})})

    @field_validator("cameras")
    @classmethod
    def _camera_names_unique(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        names = [c.name for c in cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(dupes)}")
        return cameras

    @model_validator(mode="after")
    def _camera_regions_known(self) -> Config:
        for i, camera in enumerate(self.cameras):
            problem = plates.unknown(camera.regions or [], self.plates.formats)
            if problem:
                raise ValueError(f"cameras[{i}].regions: {problem}")
        return self

    @model_validator(mode="after")
    def _resolve_paths(self, info: ValidationInfo) -> Config:
        context = info.context if isinstance(info.context, Mapping) else {}
        base = Path(context.get("base_dir", Path.cwd()))
        p = self.paths
        p.root = _under(base, p.root)
        p.models_dir = _under(p.root, p.models_dir)
        p.state_dir = _under(p.root, p.state_dir)
        p.cache_dir = _under(p.root, p.cache_dir)
        if self.engines.calibration is not None:
            self.engines.calibration = _under(p.root, self.engines.calibration)
        if self.engines.validation.images is not None:
            self.engines.validation.images = _under(p.root, self.engines.validation.images)
        roles: dict[str, RoleModel] = {
            "vehicle": self.models.vehicle, "plate": self.models.plate, "ocr": self.models.ocr,
        }  # fmt: skip
        self.models._pinned = frozenset(
            name for name, role in roles.items() if "source" in role.model_fields_set
        )
        for role in roles.values():
            role.source = _under(p.models_dir, role.source)
        self.models.ocr.dictionary = _under(p.models_dir, self.models.ocr.dictionary)
        o = self.outputs
        for out in (o.sqlite, o.jsonl, o.outbox, o.snapshots):
            out.path = _under(p.state_dir, out.path)
        mqtt = self.outputs.mqtt
        if mqtt.tls_ca_file is not None:
            mqtt.tls_ca_file = _under(p.root, mqtt.tls_ca_file)
        return self


def _under(base: Path, path: Path) -> Path:
    """`path` made absolute against `base` (normalised, symlinks left alone)."""
    path = path.expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))
