"""The configuration's schema: every section and setting, with its default and
its check (pydantic). Every threshold lives here (engines and models in `models`,
outputs in `outputs`, the rest beside the root `Config`); `alprd.config` reads a file
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
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from alprd import plates
from alprd.settings.base import Backend as Backend
from alprd.settings.base import Precision as Precision
from alprd.settings.base import Section, TimeZone
from alprd.settings.gate import GateAction as GateAction
from alprd.settings.gate import GateConfig
from alprd.settings.models import OCR_DEFAULT as OCR_DEFAULT
from alprd.settings.models import OCR_PRESETS as OCR_PRESETS
from alprd.settings.models import EnginesConfig, ModelsConfig
from alprd.settings.models import OcrModel as OcrModel
from alprd.settings.models import PlateModel as PlateModel
from alprd.settings.models import RoleModel as RoleModel
from alprd.settings.models import ValidationConfig as ValidationConfig
from alprd.settings.models import VehicleModel as VehicleModel
from alprd.settings.outputs import ListsConfig, OutputsConfig, PrivacyConfig, StorageConfig

# --------------------------------------------------------------------------- paths


class PathsConfig(Section):
    root: Path = Path(".")
    models_dir: Path = Path("models")
    state_dir: Path = Path("state")
    cache_dir: Path = Path("cache")


# --------------------------------------------------------------------------- cameras


class CameraConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    url: str = Field(min_length=1)
    fps: float = Field(5.0, gt=0, le=120)
    enabled: bool = True
    loop: bool = False
    #: where its video is decoded: "cpu" (OpenCV), "nvdec" (the GPU's decoder),
    #: "auto" (NVDEC where the torch backend serves on a GPU and it loads)
    decoder: Literal["auto", "cpu", "nvdec"] = "auto"
    zone: list[tuple[float, float]] | None = None
    regions: list[str] | None = None
    motion: bool | None = None  # motion gating for this camera; None = [motion] enabled
    #: the way an arriving vehicle moves in the picture (down, up, left, right,
    #: towards, away); "": every event's direction is "unknown"
    arriving: Literal["", "down", "up", "left", "right", "towards", "away"] = ""
    #: "gate": a pass is decided as soon as its plate is read consistently enough
    #: (``[gate]``) and its decision fires the gate's actions; its event still
    #: goes out when the pass ends
    role: Literal["", "gate"] = ""

    @field_validator("zone")
    @classmethod
    def _zone_is_polygon(
        cls, value: list[tuple[float, float]] | None
    ) -> list[tuple[float, float]] | None:
        if value is not None and len(value) < 3:
            raise ValueError("a zone needs at least 3 points [[x, y], ...]")
        return value


# --------------------------------------------------------------------------- reading


class SourcesConfig(Section):
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    open_timeout_s: float = Field(10.0, gt=0)


class MotionConfig(Section):
    enabled: bool = True
    pixel_threshold: int = Field(12, ge=0, le=255)
    min_area: float = Field(0.003, ge=0.0, le=1.0)
    max_skip_s: float = Field(2.0, ge=0.0)


class TrackingConfig(Section):
    iou_min: float = Field(0.3, gt=0.0, le=1.0)
    max_shift: float = Field(0.5, ge=0.0)
    max_age_s: float = Field(1.5, gt=0)
    min_misses: int = Field(2, ge=1)
    decided_after: int = Field(5, ge=1)
    recheck_every: int = Field(10, ge=0)
    #: a pass moved along the picture once its box's centre went this many box
    #: sizes (cameras[].arriving down/up/left/right)
    direction_min_shift: float = Field(0.5, gt=0)
    #: a pass came towards or went away once its box's area grew or shrank by
    #: this share (cameras[].arriving towards/away)
    direction_min_growth: float = Field(0.25, gt=0)


class VotingConfig(Section):
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


class PlatesConfig(Section):
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


# --------------------------------------------------------------------------- service


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host(value: str) -> str:
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


#: An address to listen on: an IP address or a host name.
Host = Annotated[str, AfterValidator(_host)]


class MetricsConfig(Section):
    enabled: bool = True
    address: Host = "127.0.0.1"
    port: int = Field(9108, ge=1, le=65535)


class WebConfig(Section):
    """`alprd web`, the search pages and REST API over the stored events (a process
    of its own, reading the state directory)."""

    #: where it listens; an address other than loopback is refused until
    #: authentication is configured
    address: Host = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    #: events on a page unless a request asks for fewer or more (up to max_page_size)
    page_size: int = Field(50, ge=1, le=1000)
    max_page_size: int = Field(500, ge=1, le=10_000)
    #: the largest edit distance a fuzzy plate search may ask for (1 is served by
    #: the trigram index; more reads every stored plate)
    max_fuzzy: int = Field(1, ge=0, le=4)
    #: the time zone pages show times in (IANA name, e.g. "Europe/Lisbon"); "" for
    #: the system's
    time_zone: TimeZone = ""
    #: users and API tokens (`alprd web passwd`, `alprd web token`); unset: systemd's
    #: credential "web-users" where there is one, else "web-users" in state_dir
    users_file: Path | None = None
    #: how long a login lasts, in hours
    session_hours: float = Field(12.0, gt=0, le=24 * 365)
    #: serve HTTPS with this certificate and key (PEM); both or neither
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: set both or neither")
        return self


class ServiceConfig(Section):
    startup: Literal["block", "background"] = "block"
    stop_timeout_s: float = Field(10.0, gt=0)
    health_interval_s: float = Field(60.0, gt=0)
    extend_timeout_s: float = Field(30.0, gt=1)
    #: blocks this large or larger (KiB; decoded frames) get pages of their own,
    #: returned to the system when freed (`alprd.heap.configure`); 0: glibc's own
    #: threshold; "auto" (default): `heap.HOST_THRESHOLD_KB` where the engines run on
    #: the host, 0 where they run on a GPU (frames there are not on the C heap)
    heap_mmap_threshold_kb: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    #: with a batch in flight (two lanes, a GPU), a free lane waits up to this many
    #: ms for more cameras' frames before it takes those waiting (all of them
    #: there: at once); 0: at once (`alprd.pipeline.lanes.BatchWindow`)
    batch_window_ms: float = Field(0.0, ge=0.0, le=1000.0)


# --------------------------------------------------------------------------- root


class Config(Section):
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
    storage: StorageConfig = Field(default_factory=StorageConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    lists: ListsConfig = Field(default_factory=ListsConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    web: WebConfig = Field(default_factory=WebConfig)

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
    def _gate_cameras_known(self) -> Config:
        gates = {c.name for c in self.cameras if c.role == "gate"}
        for i, camera in enumerate(self.cameras):
            if camera.role == "gate" and self.gate.arriving_only and not camera.arriving:
                raise ValueError(
                    f'cameras[{i}] ({camera.name}): role = "gate" with gate.arriving_only '
                    "needs arriving (the way an arriving vehicle moves in the picture: down, "
                    "up, left, right, towards, away), or set gate.arriving_only = false"
                )
        for i, action in enumerate(self.gate.actions):
            unknown = sorted(set(action.cameras) - gates)
            if unknown:
                raise ValueError(
                    f"gate.actions[{i}].cameras: {', '.join(unknown)} is not a camera with "
                    'role = "gate"'
                )
        return self

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
        self.privacy.key_file = _under(p.state_dir, self.privacy.key_file)
        self.lists.path = _under(p.state_dir, self.lists.path)
        mqtt = self.outputs.mqtt
        if mqtt.tls_ca_file is not None:
            mqtt.tls_ca_file = _under(p.root, mqtt.tls_ca_file)
        w = self.web
        w.users_file, w.tls_cert_file, w.tls_key_file = (
            None if f is None else _under(p.root, f)
            for f in (w.users_file, w.tls_cert_file, w.tls_key_file)
        )
        return self


def _under(base: Path, path: Path) -> Path:
    """`path` made absolute against `base` (normalised, symlinks left alone)."""
    path = path.expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))
