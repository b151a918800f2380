"""``[gate]``: cameras with ``role = "gate"`` decide a pass as soon as its plate is
read consistently enough, and the decision fires actions (an HTTP request, an MQTT
message, a command, a GPIO pulse) that open a barrier."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from alprd.settings.base import Section

#: The fields an action's body, payload, URL, headers or command arguments may
#: name, as ``{plate}``: what `alprd.sinks.gate` fills in; ``{credential:NAME}``
#: names a secret systemd hands the unit (``LoadCredential=``).
TEMPLATE_FIELDS = (
    "plate", "camera", "decision", "list", "label", "direction", "confidence", "time",
    "action",
)  # fmt: skip
_FIELD = re.compile(r"{(\w*)}")


Verdict = Literal["allow", "deny", "unknown"]


def _allow() -> list[Verdict]:
    return ["allow"]


def _unknown_fields(text: str) -> list[str]:
    return sorted({f for f in _FIELD.findall(text) if f not in TEMPLATE_FIELDS})


class GateAction(Section):
    """One action of ``[[gate.actions]]``."""

    #: its name in the audit records and the journal
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    type: Literal["http", "mqtt", "command", "gpio"]
    #: the decisions that fire it
    on: list[Verdict] = Field(default_factory=_allow)
    #: the gate cameras it serves; empty: every camera with ``role = "gate"``
    cameras: list[str] = Field(default_factory=list)
    #: how long one try may take, in seconds
    timeout_s: float = Field(2.0, gt=0, le=60)
    #: tries after a failed one (an error answer, a refused connection, a timeout)
    retries: int = Field(1, ge=0, le=5)
    #: at most one firing of this action per this many seconds (a second car
    #: decided within it is recorded as ``rate-limited``)
    min_interval_s: float = Field(2.0, ge=0)
    # http: a request; a 2xx answer is success
    url: str = ""
    method: Literal["GET", "POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""
    # mqtt: one message to the broker of [outputs.mqtt] (host, port, credentials, TLS)
    topic: str = ""
    payload: str = ""
    retain: bool = False
    # command: a program and its arguments, run without a shell; exit status 0 is success
    command: list[str] = Field(default_factory=list)
    # gpio: a pulse on one line of a GPIO chip (libgpiod, the kernel's character device)
    chip: str = "/dev/gpiochip0"
    line: int = Field(0, ge=0)
    pulse_s: float = Field(1.0, gt=0, le=60)
    active_low: bool = False

    @model_validator(mode="after")
    def _complete(self) -> GateAction:
        need = {"http": "url", "mqtt": "topic", "command": "command", "gpio": "chip"}[self.type]
        if not getattr(self, need):
            raise ValueError(f"a {self.type} action needs {need}")
        if self.type == "http" and not re.match(r"^https?://", self.url):
            raise ValueError(f"url must be an http:// or https:// URL; got {self.url!r}")
        if self.type == "mqtt" and re.search(r"[#+]", self.topic):
            raise ValueError(f"topic must not hold MQTT wildcards (# +); got {self.topic!r}")
        for where in (self.url, self.body, self.payload, self.topic, *self.command,
                      *self.headers.values()):  # fmt: skip
            unknown = _unknown_fields(where)
            if unknown:
                raise ValueError(
                    f"unknown field(s) {', '.join('{' + u + '}' for u in unknown)} in "
                    f"{where!r}; known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
                )
        return self


class GateConfig(Section):
    """Early decisions and the actions they fire (cameras with ``role = "gate"``)."""

    #: reads of a pass that must agree with its vote before it is decided
    min_reads: int = Field(2, ge=1, le=50)
    #: the least mean character confidence of the voted plate for a decision
    min_confidence: float = Field(0.7, ge=0.0, le=1.0)
    #: decide only a pass whose direction is known, and act only on arriving ones
    #: (a pass that ends before its direction shows gets its event, no action);
    #: the decision then waits for the vehicle to move (tracking.direction_min_*)
    arriving_only: bool = False
    #: decisions waiting for the action worker at most; one more is dropped and
    #: logged (the frames never wait for an action)
    queue_max: int = Field(64, ge=1, le=10_000)
    actions: list[GateAction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_unique(self) -> GateConfig:
        names = [a.name for a in self.actions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gate action names must be unique; repeated: {', '.join(dupes)}")
        return self
