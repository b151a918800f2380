"""Gate cameras with the real daemon on the rear-view video in a loop (a pass every
few seconds): a real HTTP relay, a real mosquitto and a real command receive
exactly one opening per pass of an allowed, arriving plate; none for a denied
plate, none for a leaving vehicle; a stuck endpoint fails on its own thread
without holding the frames or the other actions; each firing is an audit record
in the store, shown by `alprd reads --actions`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import needs_data
from support.daemon import DaemonProcess
from support.servers import MOSQUITTO, Broker, wait_until
from test_plate_lists import lists
from test_service import NL_VIDEO, site, sock, write_config  # noqa: F401
from test_sinks import Subscriber

from alprd.settings.gate import GateAction
from alprd.sinks.gate import ActionError, read_audit, run_gpio


class Relay:
    """A real HTTP endpoint that records each request (path, body), answering 200
    (or, `stuck`, only after a minute)."""

    def __init__(self, stuck: bool = False) -> None:
        self.requests: list[tuple[str, str]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                relay.requests.append((self.path, body))
                if stuck:
                    time.sleep(60)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relays() -> Iterator[tuple[Relay, Relay]]:
    good, stuck = Relay(), Relay(stuck=True)
    yield good, stuck
    good.close()
    stuck.close()


@needs_data(NL_VIDEO, "video")
@pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto not installed (Debian package 'mosquitto')"
)
def test_a_gate_opens_once_per_allowed_arriving_pass_and_never_for_others(
    site: Path,  # noqa: F811
    sock,  # noqa: F811
    relays: tuple[Relay, Relay],
    tmp_path: Path,
) -> None:
    good, stuck = relays
    broker = Broker(tmp_path / "broker")
    broker.start()
    opened = tmp_path / "opened.txt"
    # the car drives away from the camera behind it: "in" takes that as arriving,
    # "out" as leaving
    cameras = "".join(
        f'[[cameras]]\nname = "{name}"\nurl = "{NL_VIDEO}"\nfps = 5\nloop = true\n'
        f'role = "gate"\narriving = "{way}"\n'
        for name, way in (("in", "away"), ("out", "towards"))
    )
    gate = (
        "[gate]\narriving_only = true\n"
        '[outputs.mqtt]\nenabled = false\nhost = "127.0.0.1"\n'
        f"port = {broker.port}\n"
        '[[gate.actions]]\nname = "relay"\ntype = "http"\n'
        f'url = "{good.url}/open/{{camera}}"\n'
        'body = \'{"plate": "{plate}", "who": "{label}"}\'\n'
        "min_interval_s = 0\n"
        '[[gate.actions]]\nname = "stuck"\ntype = "http"\n'
        f'url = "{stuck.url}/open"\ntimeout_s = 0.5\nretries = 1\nmin_interval_s = 0\n'
        '[[gate.actions]]\nname = "bus"\ntype = "mqtt"\ntopic = "gate/{camera}/open"\n'
        'payload = "{plate} {decision}"\nmin_interval_s = 0\n'
        '[[gate.actions]]\nname = "script"\ntype = "command"\nmin_interval_s = 0\n'
        f'command = ["{sys.executable}", "-c", '
        "\"import sys; open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))\", "
        f'"{opened}", "{{plate}} {{camera}}"]\n'
    )
    config = write_config(site, cameras, "[voting]\ndedupe_window_s = 0\n" + gate)
    assert lists(config, "add", "residents", "L417VS", "--label", "Ann").returncode == 0
    sub = Subscriber(broker.port, "gate/#", "gate-test")
    d = DaemonProcess(config, sock)
    try:
        sock.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
        # Two passes allowed as arriving. Mostly on "in" (the car drives away); but at
        # the video's loop one track can hold the car far ahead and then the car
        # close by again, which "out" takes as arriving and "in" as leaving, and at
        # a fixed frame rate every loop falls alike: so on either camera.

        def allowed_arriving() -> list[dict]:
            return [e for e in d.events() if e["event"] == "gate_decision"
                    and e["decision"] == "allow" and e["direction"] == "arriving"]  # fmt: skip

        wait_until(lambda: len(allowed_arriving()) >= 2, 240, "two allowed arriving passes")
        d.wait_event("plate_event", timeout=120, decision="allow")
        # a deny entry: the next passes are denied and open nothing
        assert lists(config, "add", "blocked", "L417VS", "--kind", "deny").returncode == 0
        d.wait_event("gate_decision", timeout=120, decision="deny")
        d.wait_event("plate_event", timeout=120, decision="deny")
        sent = len(allowed_arriving())  # each opened the gate through every action
        wait_until(lambda: len(good.requests) >= sent
                   and len(sub.on("gate/in/open") + sub.on("gate/out/open")) >= sent
                   and opened.is_file() and len(opened.read_text().splitlines()) >= sent,
                   10, "the relay's requests, the MQTT messages and the command")  # fmt: skip
    finally:
        code, logs = d.stop()
        sub.close()
        broker.stop()
    assert code == 0
    decisions = [e for e in logs if e["event"] == "gate_decision"]
    lines = opened.read_text().splitlines()
    for cam in ("in", "out"):
        # exactly one opening per pass allowed as arriving, through each action; none
        # for a leaving car (decided and recorded all the same) nor for a deny
        allowed = [e for e in decisions if e["camera"] == cam and e["decision"] == "allow"
                   and e["direction"] == "arriving"]  # fmt: skip
        assert opened_for(cam, good) == ['{"plate": "L417VS", "who": "Ann"}'] * len(allowed)
        assert sub.on(f"gate/{cam}/open") == ["L417VS allow"] * len(allowed)
        assert [ln for ln in lines if ln.endswith(f" {cam}")] == [f"L417VS {cam}"] * len(allowed)
    assert len([e for e in decisions if e["decision"] == "allow"
                and e["direction"] == "arriving"]) >= 2  # fmt: skip
    assert [e for e in decisions if e["direction"] == "leaving"], decisions
    assert [e for e in decisions if e["decision"] == "deny"], decisions
    # the stuck endpoint failed on its own thread, at error priority, with the reason
    failed = [e for e in logs if e["event"] == "gate_action_failed"]
    assert failed and all(e["action"] == "stuck" and "timed out" in e["reason"] for e in failed)
    assert all(e["tries"] == 2 for e in failed)
    # one audit record per action and decision, in the events' store
    audit = read_audit(site / "state" / "reads.db", limit=1000)
    ok = [(f.camera, f.action) for f in audit if f.result == "ok"]
    for cam in ("in", "out"):
        allowed = [e for e in decisions if e["camera"] == cam and e["decision"] == "allow"
                   and e["direction"] == "arriving"]  # fmt: skip
        assert ok.count((cam, "relay")) == ok.count((cam, "bus")) == ok.count((cam, "script"))
        assert ok.count((cam, "relay")) == len(allowed)
    not_arriving = [f for f in audit if f.result == "not-arriving"]
    assert len(not_arriving) == 4 * len([e for e in decisions if e["direction"] == "leaving"
                                         and e["decision"] == "allow"])  # fmt: skip
    assert not_arriving
    relay = next(f for f in audit if f.action == "relay" and f.result == "ok")
    assert (relay.plate, relay.list, relay.label, relay.direction) == (
        "L417VS", "residents", "Ann", "arriving",
    )  # fmt: skip
    assert 0 < relay.latency_ms < 10_000 and relay.frames_ms + relay.inference_ms > 0
    shown = subprocess.run(
        [sys.executable, "-m", "alprd", "reads", "--actions", "--config", str(config)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "relay" in shown.stdout and "not-arriving" in shown.stdout


def opened_for(camera: str, relay: Relay) -> list[str]:
    """The bodies of the relay's requests for `camera`'s gate."""
    return [body for path, body in relay.requests if path == f"/open/{camera}"]


def gpio_action(**kw: object) -> GateAction:
    return GateAction.model_validate({"name": "barrier", "type": "gpio", "line": 17,
                                      "pulse_s": 0.01, **kw})  # fmt: skip


def test_a_gpio_pulse_is_libgpiods_request_then_active_then_inactive(monkeypatch) -> None:
    """Behind a seam: no GPIO chip (nor the kernel's gpio-sim) exists here, so a
    stand-in for the `gpiod` module records the calls; their names and arguments
    are those of the real gpiod 2.3 (the next test reaches the real one)."""
    calls: list[tuple] = []

    class Lines:
        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            calls.append(("released",))

        def set_value(self, line: int, value: str) -> None:
            calls.append(("set", line, value))

    line_mod = types.SimpleNamespace(
        Direction=types.SimpleNamespace(OUTPUT="output"),
        Value=types.SimpleNamespace(ACTIVE="active", INACTIVE="inactive"),
    )

    def request_lines(path: str, config: dict, consumer: str) -> Lines:
        calls.append(("request", path, consumer, {k: vars(v) for k, v in config.items()}))
        return Lines()

    fake = types.SimpleNamespace(
        LineSettings=lambda **kw: types.SimpleNamespace(**kw), request_lines=request_lines,
        line=line_mod,
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "gpiod", fake)
    monkeypatch.setitem(sys.modules, "gpiod.line", line_mod)
    said = run_gpio(gpio_action(active_low=True, chip="/dev/gpiochip1"), {})
    assert said == "pulse 0.01 s on /dev/gpiochip1 line 17"
    assert calls == [
        ("request", "/dev/gpiochip1", "alprd",
         {17: {"direction": "output", "active_low": True, "output_value": "inactive"}}),
        ("set", 17, "active"), ("set", 17, "inactive"), ("released",),
    ]  # fmt: skip


def test_a_gpio_action_on_a_chip_that_is_not_there_says_which_and_why() -> None:
    """The real libgpiod binding (installed with alprd) on a chip this host lacks."""
    pytest.importorskip("gpiod")
    with pytest.raises(ActionError, match=r"/dev/gpiochip-none line 17: No such file"):
        run_gpio(gpio_action(chip="/dev/gpiochip-none"), {})


def test_submit_never_waits_for_an_action(tmp_path: Path) -> None:
    """The loop hands a decision over and goes on while the action is stuck; the
    other action fires meanwhile."""
    from zoneinfo import ZoneInfo

    from alprd.pipeline.lists import ListEntry, PlateLists
    from alprd.pipeline.types import PassCall
    from alprd.settings.gate import GateConfig
    from alprd.settings.outputs import MqttOutput
    from alprd.sinks.gate import AuditLog, Gate

    release, started, fired = threading.Event(), threading.Event(), threading.Event()

    def stuck(action: GateAction, values: dict) -> str:
        started.set()
        release.wait(30)
        return "late"

    def quick(action: GateAction, values: dict) -> str:
        fired.set()
        return "done"

    lists = PlateLists([ListEntry("r", "allow", "AB123")], ZoneInfo("UTC"))
    config = GateConfig.model_validate({"actions": [
        {"name": "stuck", "type": "http", "url": "http://127.0.0.1:9/"},
        {"name": "quick", "type": "command", "command": ["true"]},
    ]})  # fmt: skip
    gate = Gate(config, MqttOutput(), lambda: lists, AuditLog(tmp_path / "reads.db"),
                runners={"http": stuck, "command": quick})  # fmt: skip
    now = time.time()
    gate.submit(PassCall("gate", 1, "AB123", 0.9, 2, now, 3, "arriving", now))
    assert started.wait(10) and fired.wait(10)  # both running: the quick one done
    assert not release.is_set()  # ... while the stuck one still is, and submit returned
    release.set()
    gate.close()
    got = {f.action: f.result for f in read_audit(tmp_path / "reads.db")}
    assert got == {"stuck": "ok", "quick": "ok"}
