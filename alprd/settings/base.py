"""What every section of the configuration shares."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict

Backend = Literal["auto", "tensorrt", "openvino", "onnxruntime", "torch"]
Precision = Literal["fp32", "fp16", "int8"]


def _zone_name(value: str) -> str:
    if value:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not a time zone name: {value!r} (e.g. Europe/Lisbon)") from None
    return value


#: An IANA time zone name ("Europe/Lisbon"), or "" for the system's.
TimeZone = Annotated[str, AfterValidator(_zone_name)]


def zone_of(name: str) -> tzinfo:
    """The zone a `TimeZone` setting names (the system's for "")."""
    return ZoneInfo(name) if name else (datetime.now(UTC).astimezone().tzinfo or UTC)


class Section(BaseModel):
    """Base of every table: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
