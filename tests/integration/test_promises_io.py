"""README promises about MQTT over TLS with a password, the build child's lifetime
and precision fallback, checked with real parts: a mosquitto broker with its own
TLS listener and password file, certificates made with openssl, real engine builds
in real child processes, and the real `alprd build` / `alprd run` commands."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from conftest import REPO, copy_models
from paho.mqtt.enums import CallbackAPIVersion
from structlog.testing import capture_logs
from support.servers import Broker, wait_until
from test_sinks import event, needs_broker

from alprd import config as cfgmod
from alprd.engines import cache, manager
from alprd.exitcodes import ExitCode
from alprd.sinks.outputs import Outputs

USER, PASSWORD = "alprd", "gate-s3cret"

# --------------------------------------------------------------------------- helpers


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    """A self-signed CA: `name`.crt and `name`.key."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=alprd test {name}",
            cwd=directory)  # fmt: skip


def make_server_cert(directory: Path, ca: str) -> None:
    """server.crt (for 127.0.0.1 and localhost) and server.key, signed by `ca`."""
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt",
            cwd=directory)  # fmt: skip


def write_password_file(path: Path, user: str, password: str) -> None:
    """A mosquitto password file: by `mosquitto_passwd` where installed, else in its
    format (PBKDF2-SHA512, 101 rounds, `$7$`)."""
    tool = shutil.which("mosquitto_passwd")
    if tool:
        subprocess.run([tool, "-b", "-c", str(path), user, password], check=True)
        return
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    b64 = base64.b64encode
    path.write_text(f"{user}:$7$101${b64(salt).decode()}${b64(digest).decode()}\n")


class TlsBroker(Broker):
    """A real mosquitto whose only listener speaks TLS (a server certificate signed by
    our own CA) and lets in only USER with PASSWORD (no anonymous clients)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        make_ca(self.dir, "ca")
        make_ca(self.dir, "rogue-ca")  # a CA the server certificate does not come from
        make_server_cert(self.dir, "ca")
        self.ca, self.rogue_ca = self.dir / "ca.crt", self.dir / "rogue-ca.crt"
        write_password_file(self.dir / "passwd", USER, PASSWORD)
        self.log = self.dir / "broker.log"
        self.conf.write_text(
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "allow_anonymous false\n"
            f"password_file {self.dir / 'passwd'}\n"
            "log_dest stderr\n"
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {self.ca}\n"
            f"certfile {self.dir / 'server.crt'}\n"
            f"keyfile {self.dir / 'server.key'}\n",
            encoding="utf-8",
        )

    def log_count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    b = TlsBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class TlsSubscriber:
    """A real MQTT client over TLS with the broker's credentials, collecting messages."""

    def __init__(self, broker: TlsBroker, topic: str) -> None:
        self.messages: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-tls-sub")
        self.client.username_pw_set(USER, PASSWORD)
        self.client.tls_set_context(ssl.create_default_context(cafile=str(broker.ca)))
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("the TLS subscriber did not subscribe")

    def _on_message(self, _: Any, __: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode()))

    def on(self, topic: str) -> list[str]:
        with self.lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_config(tmp_path: Path, broker: TlsBroker, *, password: str, ca: Path) -> cfgmod.Config:
    """A config whose only output is MQTT over TLS with a password (the outbox in
    tmp_path/state), as an operator writes it."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    path = etc / "alprd.toml"
    path.write_text(
        f'[paths]\nroot = "{tmp_path}"\n'
        "[outputs.sqlite]\nenabled = false\n"
        "[outputs.snapshots]\nenabled = false\n"
        "[outputs.outbox]\nretry_initial_s = 0.05\nretry_max_s = 0.2\n"
        "[outputs.mqtt]\nenabled = true\n"
        f'host = "127.0.0.1"\nport = {broker.port}\nclient_id = "alprd-gate"\n'
        f'username = "{USER}"\npassword = "{password}"\n'
        f'tls = true\ntls_ca_file = "{ca}"\n'
        "publish_timeout_s = 5\nreconnect_max_s = 1\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return cfgmod.load(path)


def outbox_rows(tmp_path: Path) -> list[str]:
    """The ids of the events the outbox file holds, oldest first."""
    raw = sqlite3.connect(tmp_path / "state" / "outbox.db")
    try:
        rows = raw.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
    finally:
        raw.close()
    return [json.loads(p)["id"] for (p,) in rows]


# --------------------------------------------------------------------------- MQTT over TLS


@needs_broker
def test_mqtt_over_tls_with_username_and_password_delivers_events(
    tmp_path: Path, tls_broker: TlsBroker
) -> None:
    """README, Outputs: MQTT "TLS and username/password": an event emitted through
    the configured outputs arrives on `<prefix>/<camera>/plate` of a broker that
    accepts only TLS and that user, and `<prefix>/status` says online."""
    sub = TlsSubscriber(tls_broker, "alprd/#")
    with capture_logs() as logs:
        outputs = Outputs.open(
            mqtt_config(tmp_path, tls_broker, password=PASSWORD, ca=tls_broker.ca)
        )
        record = outputs.emit(event(1))  # at once, the TLS handshake still under way
        wait_until(lambda: bool(sub.on("alprd/gate/plate")), what="the event at the subscriber")
    # the first write waits for the first connection's outcome: no false alarm
    assert not [e for e in logs if e["event"] == "sink_unavailable"], logs
    try:
        assert [json.loads(p) for p in sub.on("alprd/gate/plate")] == [record]
        wait_until(lambda: sub.on("alprd/status")[-1:] == ["online"], what="online")
        assert outputs.outbox is not None
        wait_until(lambda: outputs.outbox.pending("mqtt") == 0, what="an empty outbox")
    finally:
        outputs.close()
        sub.close()
    assert f"as alprd-gate (p2, c1, k30, u'{USER}')" in tls_broker.log.read_text()


@needs_broker
@pytest.mark.parametrize(
    ("fault", "said", "reason", "broker_says"),
    [
        ("wrong password", "mqtt_refused", "Not authorized", "not authorised"),
        ("untrusted CA", "mqtt_connect_failed", "certificate verify failed", "unknown ca"),
    ],
)
def test_mqtt_refused_by_credentials_or_tls_keeps_the_event_until_delivered(
    tmp_path: Path, tls_broker: TlsBroker, fault: str, said: str, reason: str, broker_says: str
) -> None:
    """README, Outputs: nothing is lost while the broker cannot be reached: with a
    wrong password, or a CA that did not sign the broker's certificate, the reason
    is logged once (not per attempt), `sink_unavailable` names it, the event waits
    in the durable outbox (also across a restart), and once the configuration is
    right it is delivered."""
    sub = TlsSubscriber(tls_broker, "alprd/#")
    bad = mqtt_config(
        tmp_path, tls_broker,
        password="wrong-" + PASSWORD if fault == "wrong password" else PASSWORD,
        ca=tls_broker.rogue_ca if fault == "untrusted CA" else tls_broker.ca,
    )  # fmt: skip
    try:
        with capture_logs() as logs:
            outputs = Outputs.open(bad)
            try:
                wait_until(lambda: any(e["event"] == said for e in logs), what=said)
                record = outputs.emit(event(1))
                wait_until(
                    lambda: any(e["event"] == "sink_unavailable" for e in logs),
                    what="sink_unavailable",
                )
                # two more connection attempts and several retries: still said once
                seen = tls_broker.log_count(broker_says)
                wait_until(
                    lambda: tls_broker.log_count(broker_says) >= seen + 2, what="2 more attempts"
                )
                assert outputs.outbox is not None and outputs.outbox.pending("mqtt") == 1
            finally:
                outputs.close()  # alprd stops with the event undelivered
        assert reason in next(e for e in logs if e["event"] == said)["reason"], logs
        assert [e["event"] for e in logs].count(said) == 1
        unavailable = [e for e in logs if e["event"] == "sink_unavailable"]
        assert len(unavailable) == 1 and unavailable[0]["log_level"] == "warning"
        assert reason in unavailable[0]["reason"]
        assert sub.on("alprd/gate/plate") == []
        assert outbox_rows(tmp_path) == [record["id"]]  # kept on disk after the stop

        good = mqtt_config(tmp_path, tls_broker, password=PASSWORD, ca=tls_broker.ca)
        outputs = Outputs.open(good)
        try:
            wait_until(lambda: bool(sub.on("alprd/gate/plate")), what="the kept event delivered")
            assert outputs.outbox is not None
            wait_until(lambda: outputs.outbox.pending("mqtt") == 0, what="an empty outbox")
        finally:
            outputs.close()
        assert [json.loads(p) for p in sub.on("alprd/gate/plate")] == [record]
    finally:
        sub.close()


# --------------------------------------------------------------------------- build child

PLATE_AND_OCR = ("plate-yolov8n.pt", "trained/ocr-alprd-plate.onnx",
                 "trained/ocr-alprd-plate-dict.txt")  # fmt: skip


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Copies of the plate and recogniser models and a config (ONNX Runtime) rooted
    in tmp_path; the temporary directory of this process and its children is
    tmp_path/tmp, so what a build leaves there can be seen."""
    copy_models(tmp_path / "models", PLATE_AND_OCR)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    (tmp_path / "etc").mkdir()

    def write(extra: str = "", engines: str = "") -> Path:
        path = tmp_path / "etc" / "alprd.toml"
        path.write_text(
            f'[paths]\nroot = ".."\n[engines]\nbackend = "onnxruntime"\n{engines}'
            "[metrics]\nenabled = false\n" + extra
        )
        return path

    return write


def leftovers(tmp_path: Path) -> list[str]:
    """Temporaries of builds: beside the engines, and in the temporary directory
    (where ONNX Runtime also keeps a file of its own, `.ses`)."""
    beside = [p.name for p in (tmp_path / "models").rglob(".*.tmp")]
    return sorted(beside + [p.name for p in (tmp_path / "tmp").glob("alprd-build-*")])


def installed(tmp_path: Path) -> list[str]:
    """Engines and sidecars at their final paths."""
    found = (tmp_path / "models").rglob("*.onnxruntime.onnx*")
    return sorted(p.name for p in found if not p.name.startswith(".") and p.parent.name != ".locks")


def proc_state(pid: int) -> str:
    """The state letter of process `pid` ("" when it no longer exists)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def gone(pid: int) -> bool:
    """No longer runs: reaped, or dead and waiting to be reaped (a zombie)."""
    return proc_state(pid) in ("", "Z", "X")


def build_children(parent: int) -> list[int]:
    """The build children (``python -m alprd.engines.worker``) of process `parent`."""
    pids: list[int] = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    out = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"alprd.engines.worker" in cmdline:
            out.append(pid)
    return out


class LogLines:
    """The JSON log lines of a child's stderr, read as they come."""

    def __init__(self, stream: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._lock:
                self.text.append(line)
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_for(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        wait_until(lambda: bool(self.named(name)), timeout=timeout, what=f"{name} in the log")
        return self.named(name)[0]


PARENT = """
import sys
from alprd import config
from alprd.engines import manager
from alprd.log import configure
configure("json", "info")
outcome = manager.ensure(manager.plan(config.load(sys.argv[1]), "plate"))
print(outcome.status, flush=True)
"""


def test_the_build_child_dies_with_alprd(site: Callable[..., Path], tmp_path: Path) -> None:
    """README, Faults #9 and "How a build runs": a build child also dies with alprd
    (PR_SET_PDEATHSIG). alprd is killed with -9 in the middle of a build (the child
    held still, so only that signal can end it): the child goes at once, nothing
    is installed, and the next build succeeds and leaves no temporary."""
    path = site()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    child = 0
    try:
        log = LogLines(parent.stderr)
        log.wait_for("engine_build_progress")  # the child runs its job
        children = build_children(parent.pid)
        assert len(children) == 1, children
        child = children[0]
        os.kill(child, signal.SIGSTOP)  # it cannot finish on its own now
        wait_until(lambda: proc_state(child) == "T", what="the build child stopped")
        os.kill(parent.pid, signal.SIGKILL)
        assert parent.wait(10) == -signal.SIGKILL
        wait_until(lambda: gone(child), timeout=10, what="the build child gone with alprd")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and not gone(child):
            os.kill(child, signal.SIGKILL)
    assert installed(tmp_path) == []  # neither an engine nor a sidecar

    config = cfgmod.load(path)
    target = manager.plan(config, "plate")
    outcome = manager.ensure(target)
    assert outcome.status == "built", outcome.message
    assert cache.check(target.engine, target.inputs) == []
    assert leftovers(tmp_path) == []


def freeze_the_build_child(_step: str) -> None:
    """Hold the build child still (a hung runtime) at its first progress line."""
    for pid in build_children(os.getpid()):
        if proc_state(pid) != "T":
            os.kill(pid, signal.SIGSTOP)


def test_the_smallest_build_timeout_stops_the_build(
    site: Callable[..., Path], tmp_path: Path
) -> None:
    """README, "How a build runs": the child is stopped after
    `engines.build_timeout_s`. With the smallest timeout the config allows,
    `alprd build` reports `engine_build_failed` with the timeout as the reason and
    exits 73; nothing is installed and no temporary is left."""
    path = site(engines="build_timeout_s = 0.001\n")
    assert cfgmod.load(path).engines.build_timeout_s == 0.001
    proc = subprocess.run(
        [sys.executable, "-m", "alprd", "build", "--models", "ocr", "--config", str(path),
         "--log-format", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == ExitCode.ENGINE, proc.stderr
    events = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    failed = [e for e in events if e["event"] == "engine_build_failed"]
    assert len(failed) == 1 and failed[0]["model"] == "ocr", events
    assert failed[0]["reason"].startswith(
        "build took longer than engines.build_timeout_s (0.001 s)"
    )
    assert "ocr: failed: build took longer than engines.build_timeout_s" in proc.stderr
    assert installed(tmp_path) == []
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_build_stopped_midway_leaves_nothing(
    site: Callable[..., Path], tmp_path: Path, how: str
) -> None:
    """README, "How a build runs" and Faults #9: a build that hangs is stopped
    after `engines.build_timeout_s`, and a cancelled build's child is killed
    (`engine_build_cancelled`); either way nothing is installed and no temporary
    is left, in the models directory or in the temporary directory."""
    config = cfgmod.load(site(engines="build_timeout_s = 3\n" if how == "timeout" else ""))
    target = manager.plan(config, "plate")
    started = threading.Event()
    with capture_logs() as logs:
        t0 = time.monotonic()
        outcome = manager.ensure(
            target,
            timeout_s=config.engines.build_timeout_s,
            on_progress=freeze_the_build_child if how == "timeout" else lambda _: started.set(),
            cancel=started.is_set,
        )
        took = time.monotonic() - t0
    if how == "timeout":
        assert outcome.status == "failed"
        assert outcome.message.startswith("build took longer than engines.build_timeout_s (3 s)")
        assert took >= 3
        assert [e["event"] for e in logs].count("engine_build_failed") == 1
    else:
        assert outcome.status == "cancelled"
        assert [e["event"] for e in logs].count("engine_build_cancelled") == 1
    assert build_children(os.getpid()) == []
    assert installed(tmp_path) == []
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- precision


def test_an_unsupported_precision_falls_back_with_a_warning(
    site: Callable[..., Path], tmp_path: Path
) -> None:
    """README, Engines: "A precision a backend lacks falls back to the next higher
    one with a `precision_unsupported` warning". ONNX Runtime has fp32 only: asked
    for fp16, `alprd build` and the daemon (`alprd run`) warn, build fp32 engines
    (the sidecar says fp32) and serve them at fp32."""
    path = site('[[cameras]]\nname = "gate"\nurl = "absent.mp4"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "alprd", "build", "--models", "ocr", "--precision", "fp16",
         "--config", str(path), "--log-format", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    warned = [e for e in events if e["event"] == "precision_unsupported"]
    assert [(e["level"], e["model"], e["backend"], e["requested"], e["using"]) for e in warned] == [
        ("warning", "ocr", "onnxruntime", "fp16", "fp32")
    ]
    built = [e for e in events if e["event"] == "engine_built"]
    assert [(e["model"], e["precision"]) for e in built] == [("ocr", "fp32")]

    config = cfgmod.load(path)
    assert config.engines.precision == "fp16"  # the default, which the daemon asks for
    target = manager.plan(config, "ocr")
    assert target.request.precision == "fp32"
    assert cache.check(target.engine, target.inputs) == []  # what was built serves it
    assert cache.read_sidecar(target.engine).inputs["precision"] == "fp32"
    engine, _ = manager.load(target)
    try:
        assert engine.precision == "fp32"
        out = engine.run(np.zeros((1, 3, 32, 128), np.float32))[0]
        assert out.shape == (1, 32, 38)
    finally:
        engine.close()

    path.write_text(path.read_text() + "[models.vehicle]\nenabled = false\n")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "alprd", "run", "--config", str(path), "--log-format", "json"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        log = LogLines(daemon.stderr)
        log.wait_for("alprd_ready", timeout=90)
        warned = log.named("precision_unsupported")
        assert sorted((e["model"], e["requested"], e["using"]) for e in warned) == [
            ("ocr", "fp16", "fp32"), ("plate", "fp16", "fp32"),
        ], "".join(log.text)  # fmt: skip
        assert [(e["model"], e["precision"]) for e in log.named("engine_built")] == [
            ("plate", "fp32")
        ]
        status_file = tmp_path / "state" / "status.json"
        wait_until(lambda: status_file.exists(), what="status.json")
        status = subprocess.run(
            [sys.executable, "-m", "alprd", "status", "--json", "--config", str(path)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        engines = json.loads(status.stdout)["engines"]
        assert {role: e["precision"] for role, e in engines.items()} == {
            "plate": "fp32", "ocr": "fp32",
        }  # fmt: skip
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    assert daemon.returncode == 0
