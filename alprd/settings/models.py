"""``[engines]`` and ``[models]``: how engines are built, and each role's model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, PrivateAttr, field_validator

from alprd import plates
from alprd.settings.base import Backend, Precision, Section

# --------------------------------------------------------------------------- engines


class ValidationConfig(Section):
    images: Path | None = None
    conf: float = Field(0.25, gt=0.0, lt=1.0)
    iou_min: float = Field(0.8, gt=0.0, le=1.0)
    score_tol: float = Field(0.1, ge=0.0, le=1.0)
    min_match: float = Field(0.9, ge=0.0, le=1.0)


class EnginesConfig(Section):
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


class _Detector(Section):
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


class OcrModel(Section):
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


class ModelsConfig(Section):
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
