"""The gate: a called pass of a gate camera (`PassCall`) -> its decision by the
plate lists -> the actions that decision fires -> an audit record of each.

`plan` (pure) says which of the ``[[gate.actions]]`` a decision fires and which of
them wait out their rate limit. `Gate.submit` is called by the daemon's loop: it
decides (the lists are an immutable snapshot, `alprd.pipeline.lists.PlateLists`),
logs the decision and hands each action to its own worker thread through a
bounded queue, so the frames never wait for an action and a stuck HTTP relay does
not delay the GPIO line. A worker runs its action (HTTP request, MQTT message,
command without a shell, GPIO pulse) with a timeout and retries; every outcome is
a record in the events' store (`AuditLog`, table ``gate_actions``) and a journal
line, a failure at error priority with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from alprd.log import get_logger
from alprd.pipeline.lists import Decision, PlateLists
from alprd.pipeline.types import PassCall
from alprd.settings import Config
from alprd.settings.gate import GateAction, GateConfig
from alprd.settings.outputs import MqttOutput
from alprd.sinks.sqlite import MIGRATIONS, migrate, open_db
from alprd.sinks.webhook import send

log = get_logger("alprd.gate")

#: How each outcome of an action is recorded (`Firing.result`).
OK, FAILED, RATE_LIMITED, DROPPED, NOT_ARRIVING = (
    "ok", "failed", "rate-limited", "dropped", "not-arriving",
)  # fmt: skip


@dataclass(frozen=True)
class Firing:
    """One audit record: what a decision did with one action."""

    time: float  # wall clock, when the outcome was known
    camera: str
    plate: str  # hashed like the events' when privacy.hash_plates and on no list
    track_id: int
    decision: str  # allow, deny, unknown
    list: str | None
    list_plate: str | None
    label: str | None
    distance: float | None
    direction: str
    action: str
    result: str  # OK, FAILED, RATE_LIMITED, DROPPED, NOT_ARRIVING
    detail: str  # the failure's reason, the answer's status
    tries: int
    #: from the capture of the first frame on which the plate was read as decided to
    #: the action's outcome, ms (a camera's frame times are wall-clock), and its
    #: parts: waiting for the frames whose reads agree (that frame -> the deciding
    #: frame; with gate.arriving_only also for the direction), inference (the deciding
    #: frame's capture -> its decision: the frame's wait for the loop, the
    #: detectors, the recogniser, the vote), the decision (the lists), the action
    #: (its wait in the queue, its run)
    latency_ms: float
    frames_ms: float = 0.0
    inference_ms: float = 0.0
    decision_ms: float = 0.0
    action_ms: float = 0.0


def fields(call: PassCall, decision: Decision, action: str = "") -> dict[str, str]:
    """The values an action's text fields may name (`TEMPLATE_FIELDS`)."""
    e = decision.entry
    return {
        "plate": call.plate,
        "camera": call.camera,
        "decision": decision.verdict,
        "list": e.list if e else "",
        "label": e.label if e else "",
        "direction": call.direction,
        "confidence": f"{call.confidence:.3f}",
        "time": f"{call.time:.3f}",
        "action": action,
    }


_CREDENTIAL = re.compile(r"{credential:([A-Za-z0-9_.-]+)}")


def fill(template: str, values: Mapping[str, str], env: Mapping[str, str] | None = None) -> str:
    """`template` with each ``{field}`` replaced (other braces left as written, so
    a JSON body needs no escaping), and each ``{credential:NAME}`` by the secret
    systemd hands the unit (``LoadCredential=NAME:/path``: the file NAME in
    ``$CREDENTIALS_DIRECTORY``), so no password need be in the config file."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return _CREDENTIAL.sub(lambda m: credential(m.group(1), env), out)


def credential(name: str, env: Mapping[str, str] | None = None) -> str:
    """The secret ``name`` of the unit's credentials (trailing newline stripped)."""
    directory = (os.environ if env is None else env).get("CREDENTIALS_DIRECTORY", "")
    path = Path(directory) / name
    if not directory:
        raise ActionError(
            f"credential {name!r} not found (no $CREDENTIALS_DIRECTORY): give the unit "
            f"LoadCredential={name}:/path/to/secret (systemctl edit alprd)"
        )
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError:
        raise ActionError(
            f"credential {name!r} not found ({path}): give the unit "
            f"LoadCredential={name}:/path/to/secret (systemctl edit alprd)"
        ) from None
    except OSError as exc:
        raise ActionError(f"credential {name!r}: {path}: {exc.strerror or exc}") from None


def plan(
    call: PassCall,
    decision: Decision,
    actions: Sequence[GateAction],
    now: float,
    last_fired: Mapping[str, float],
    arriving_only: bool,
) -> list[tuple[GateAction, str]]:
    """The actions `decision` of `call` concerns, each with what happens to it: ""
    (fire), `RATE_LIMITED` (fired less than its ``min_interval_s`` before `now`,
    monotonic) or `NOT_ARRIVING` (``arriving_only`` and the vehicle is not arriving)."""
    out = []
    for a in actions:
        if decision.verdict not in a.on or (a.cameras and call.camera not in a.cameras):
            continue
        if arriving_only and call.direction != "arriving":
            out.append((a, NOT_ARRIVING))
        elif a.name in last_fired and now - last_fired[a.name] < a.min_interval_s:
            out.append((a, RATE_LIMITED))
        else:
            out.append((a, ""))
    return out


# --------------------------------------------------------------------------- runners


class ActionError(Exception):
    """An action that did not succeed; the message says why."""


class Runner(Protocol):
    def __call__(self, action: GateAction, values: Mapping[str, str]) -> str: ...


def run_http(action: GateAction, values: Mapping[str, str]) -> str:
    url = fill(action.url, values)
    data = fill(action.body, values).encode() if action.method != "GET" else None
    headers = {k: fill(v, values) for k, v in action.headers.items()}
    request = urllib.request.Request(url, data=data, headers=headers, method=action.method)
    try:
        return f"HTTP {send(request, action.timeout_s)}"
    except ConnectionError as exc:
        raise ActionError(str(exc)) from exc


def run_command(action: GateAction, values: Mapping[str, str]) -> str:
    argv = [fill(arg, values) for arg in action.command]
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=action.timeout_s,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise ActionError(f"{argv[0]}: no exit within {action.timeout_s:g} s (killed)") from exc
    except OSError as exc:
        raise ActionError(f"{argv[0]}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ActionError(
            f"{argv[0]}: exit status {done.returncode}" + (f": {said[-1][:200]}" if said else "")
        )
    return "exit status 0"


def run_gpio(action: GateAction, values: Mapping[str, str]) -> str:
    """A pulse on one GPIO line through libgpiod's Python binding (v2 API): the line
    is requested as an output, made active for ``pulse_s``, then inactive and
    released."""
    try:
        import gpiod  # type: ignore[import-not-found,unused-ignore]
        from gpiod.line import Direction, Value  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ActionError(
            "a gpio action needs libgpiod's Python binding: pip install 'gpiod==2.3.0' in "
            "alprd's environment (make install does)"
        ) from exc
    settings = gpiod.LineSettings(
        direction=Direction.OUTPUT, active_low=action.active_low, output_value=Value.INACTIVE
    )
    try:
        with gpiod.request_lines(
            action.chip, consumer="alprd", config={action.line: settings}
        ) as lines:
            lines.set_value(action.line, Value.ACTIVE)
            time.sleep(action.pulse_s)
            lines.set_value(action.line, Value.INACTIVE)
    except (OSError, ValueError) as exc:  # no such chip or line, busy, not permitted
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ActionError(f"{action.chip} line {action.line}: {reason}") from exc
    return f"pulse {action.pulse_s:g} s on {action.chip} line {action.line}"


class MqttRunner:
    """MQTT messages on the broker of ``[outputs.mqtt]``: one connection, opened at the
    first message and kept; each message waits for the broker's PUBACK (QoS 1)."""

    def __init__(self, broker: MqttOutput) -> None:
        self.broker = broker
        self._client: Any = None

    def _connect(self, timeout: float) -> Any:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        b = self.broker
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="")
        if b.username:
            client.username_pw_set(b.username, b.password or None)
        if b.tls:
            cafile = str(b.tls_ca_file) if b.tls_ca_file else None
            client.tls_set_context(ssl.create_default_context(cafile=cafile))
        client.connect_timeout = timeout
        client.connect(b.host, b.port, keepalive=b.keepalive_s)
        client.loop_start()
        return client

    def __call__(self, action: GateAction, values: Mapping[str, str]) -> str:
        where = f"{self.broker.host}:{self.broker.port}"
        try:
            if self._client is None:
                self._client = self._connect(action.timeout_s)
            info = self._client.publish(
                fill(action.topic, values), fill(action.payload, values), qos=1,
                retain=action.retain,
            )  # fmt: skip
            info.wait_for_publish(action.timeout_s)
        except (OSError, ValueError, RuntimeError) as exc:
            self.close()
            raise ActionError(f"{where}: {exc}") from exc
        if not info.is_published():
            self.close()
            raise ActionError(f"{where}: no PUBACK within {action.timeout_s:g} s")
        return f"published to {fill(action.topic, values)}"

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop_stop()


# --------------------------------------------------------------------------- audit


class AuditLog:
    """`Firing` records in the events' store (SQLite, table ``gate_actions``), safe
    to call from the action threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = open_db(path)
        migrate(self._conn, MIGRATIONS, path)

    def write(self, firing: Firing) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO gate_actions (time, camera, plate, decision, action, result, "
                "payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (firing.time, firing.camera, firing.plate, firing.decision, firing.action,
                 firing.result, json.dumps(asdict(firing), separators=(",", ":"))),
            )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def read_audit(path: Path, limit: int = 50, camera: str | None = None) -> list[Firing]:
    """The newest audit records of the store at `path` (of one camera), newest
    first (none where the store has no gate records yet)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error:
        return []
    where, args = ("WHERE camera = ? ", [camera]) if camera else ("", [])
    try:
        rows = conn.execute(
            f"SELECT payload FROM gate_actions {where}ORDER BY time DESC, rowid DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
    except sqlite3.Error:
        rows = []
    finally:
        conn.close()
    return [Firing(**json.loads(p)) for (p,) in rows]


# --------------------------------------------------------------------------- the gate


class _Worker:
    """One action's thread and bounded queue."""

    def __init__(self, action: GateAction, runner: Runner, queue_max: int) -> None:
        self.action, self.runner = action, runner
        #: (call, decision, when submitted, when decided): wall-clock times
        self.jobs: queue.Queue[tuple[PassCall, Decision, float, float] | None] = queue.Queue(
            queue_max
        )
        self.thread: threading.Thread | None = None


class Gate:
    """The daemon's gate (one per configuration; `close` before the next)."""

    def __init__(
        self,
        config: GateConfig,
        broker: MqttOutput,
        lists: Callable[[], PlateLists],
        audit: AuditLog | None,
        conceal: Callable[[str], str] | None = None,
        runners: Mapping[str, Runner] | None = None,
    ) -> None:
        """`lists`: the lists now (asked at each decision); `audit`: where the
        records go (None: the journal only); `conceal`: the plate as stored of a
        plate on no list (privacy.hash_plates); `runners`: by action type."""
        self.config = config
        self.lists = lists
        self.audit = audit
        self.conceal = conceal
        self._mqtt = MqttRunner(broker)
        by_type: dict[str, Runner] = {
            "http": run_http, "command": run_command, "gpio": run_gpio, "mqtt": self._mqtt,
        }  # fmt: skip
        by_type.update(runners or {})
        self.last_fired: dict[str, float] = {}  # action -> monotonic time of its last firing
        self.decided = 0
        self._workers = {
            a.name: _Worker(a, by_type[a.type], config.queue_max) for a in config.actions
        }
        for w in self._workers.values():
            w.thread = threading.Thread(
                target=self._work, args=(w,), name=f"alprd-gate-{w.action.name}", daemon=True
            )
            w.thread.start()

    @classmethod
    def of(cls, config: Config, lists: Callable[[], PlateLists],
           conceal: Callable[[str], str] | None = None) -> Gate | None:  # fmt: skip
        """The daemon's gate for `config`: None without a gate camera."""
        if not any(c.role == "gate" for c in config.cameras):
            return None
        sqlite = config.outputs.sqlite
        audit = AuditLog(sqlite.path) if sqlite.enabled else None
        return cls(config.gate, config.outputs.mqtt, lists, audit, conceal)

    def submit(self, call: PassCall) -> Decision:
        """Decide `call` by the lists now, log it, and queue the actions it fires
        (never waits: a full queue drops the job, recorded as `DROPPED`)."""
        submitted = time.time()
        decision = self.lists().decide(call.plate, call.time)
        decided = time.time()
        self.decided += 1
        e = decision.entry
        log.info(
            "gate_decision", camera=call.camera, plate=self._plate(call, decision),
            decision=decision.verdict, list=e.list if e else None,
            label=(e.label or None) if e else None, direction=call.direction,
            reads=call.reads, confidence=call.confidence,
        )  # fmt: skip
        now = time.monotonic()
        for action, fate in plan(call, decision, self.config.actions, now, self.last_fired,
                                 self.config.arriving_only):  # fmt: skip
            times = (submitted, decided)
            if fate:
                self._record(call, decision, action, fate, "", 0, times)
                continue
            self.last_fired[action.name] = now
            try:
                self._workers[action.name].jobs.put_nowait((call, decision, *times))
            except queue.Full:
                self._record(call, decision, action, DROPPED,
                             f"{self.config.queue_max} firings waiting already", 0,
                             times)  # fmt: skip
        return decision

    def _work(self, w: _Worker) -> None:
        while True:
            job = w.jobs.get()
            if job is None:
                return
            call, decision, submitted, decided = job
            values = fields(call, decision, w.action.name)
            detail, result, tries = "", FAILED, 0
            while tries <= w.action.retries:
                tries += 1
                try:
                    detail, result = w.runner(w.action, values), OK
                    break
                except ActionError as exc:
                    detail = str(exc)
                except Exception as exc:  # a runner's bug must not end the gate
                    detail = f"{type(exc).__name__}: {exc}"
            self._record(call, decision, w.action, result, detail, tries, (submitted, decided))

    def _plate(self, call: PassCall, decision: Decision) -> str:
        if self.conceal is not None and decision.entry is None:
            return self.conceal(call.plate)
        return call.plate

    def _record(self, call: PassCall, decision: Decision, action: GateAction, result: str,
                detail: str, tries: int, times: tuple[float, float]) -> None:  # fmt: skip
        e = decision.entry
        now = time.time()
        submitted, decided = times
        first = call.readable_time or call.time

        def ms(a: float, b: float) -> float:
            return round(max(0.0, b - a) * 1000, 1)

        firing = Firing(
            time=now, camera=call.camera, plate=self._plate(call, decision),
            track_id=call.track_id, decision=decision.verdict, list=e.list if e else None,
            list_plate=e.plate if e else None, label=(e.label or None) if e else None,
            distance=decision.distance if e else None, direction=call.direction,
            action=action.name, result=result, detail=detail, tries=tries,
            latency_ms=ms(first, now), frames_ms=ms(first, call.time),
            inference_ms=ms(call.time, submitted), decision_ms=ms(submitted, decided),
            action_ms=ms(decided, now),
        )  # fmt: skip
        if result == FAILED:
            log.error("gate_action_failed", action=action.name, camera=call.camera,
                      plate=firing.plate, tries=tries, reason=detail)  # fmt: skip
        else:
            log.info("gate_action", action=action.name, camera=call.camera, plate=firing.plate,
                     result=result, detail=detail, latency_ms=firing.latency_ms)  # fmt: skip
        if self.audit is not None:
            try:
                self.audit.write(firing)
            except sqlite3.Error as exc:
                log.error("gate_audit_failed", path=str(self.audit.path), reason=str(exc))

    def close(self, timeout: float = 5.0) -> None:
        """Let the queued firings run (up to `timeout` in all), then stop."""
        deadline = time.monotonic() + timeout
        for w in self._workers.values():
            with contextlib.suppress(queue.Full):
                w.jobs.put(None, timeout=max(0.0, deadline - time.monotonic()))
        for w in self._workers.values():
            if w.thread is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))
        self._mqtt.close()
        if self.audit is not None:
            self.audit.close()
