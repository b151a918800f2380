"""What every section of the configuration shares."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Backend = Literal["auto", "tensorrt", "openvino", "onnxruntime", "torch"]
Precision = Literal["fp32", "fp16", "int8"]


class Section(BaseModel):
    """Base of every table: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
