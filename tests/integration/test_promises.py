"""README promises checked end to end on the real daemon (`alprd run` in a child
process, real OpenVINO engines, real camera threads reading real video files, real
outputs, the metrics endpoint over real HTTP) and the real command line: camera
zones, the per-camera frame-rate cap, events lost at stop, the metrics endpoint,
`alprd status --json`, exit code 70, and replacement rules checked by
`alprd check-config`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import DEFAULT_MODELS, REPO, SHARED_DATA, copy_models, needs_data, run_alprd
from support.daemon import DaemonProcess
from support.notify_socket import NotifySocket
from support.servers import free_port
from test_service import camera, write_config

from alprd.exitcodes import ExitCode

NL_VIDEO = SHARED_DATA / "videos" / "rear-nl-L417VS.mp4"

# The plate of NL_VIDEO (1280x720): its centre moves within x 600..941, y 263..337
# (every 10th frame measured), inside the car's box (about x 0..1076, y 30..710).
ZONE_AROUND_PLATE = [[540, 150], [1000, 150], [1000, 400], [770, 450], [540, 400]]
# The whole frame but a notch cut from the top edge around the plate's path: it
# covers most of the car (and its bounding box is the whole frame), never a plate's
# centre.
ZONE_BUT_PLATE = [[0, 0], [540, 0], [540, 400], [1000, 400], [1000, 0], [1280, 0], [1280, 720],
                  [0, 720]]  # fmt: skip


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def built_models(tmp_path_factory) -> Path:
    """The default models with current OpenVINO engines beside them, made once per
    module (`alprd warmup`: engines already built in the checkout are reused when
    their fingerprint matches, others are built)."""
    root = tmp_path_factory.mktemp("built")
    models = root / "models"
    copy_models(models)
    for name in DEFAULT_MODELS:
        source = REPO / "models" / name
        for engine in source.parent.glob(f"{source.stem}.openvino.blob*"):
            shutil.copyfile(engine, (models / name).parent / engine.name)
    (root / "etc").mkdir()
    config = root / "etc" / "alprd.toml"
    config.write_text('[paths]\nroot = ".."\n[engines]\nbackend = "openvino"\n')
    warm = run_alprd("warmup", "--config", str(config), "--log-format", "json")
    assert warm.returncode == 0, warm.stderr[-3000:]
    return models


def make_site(root: Path, built_models: Path) -> Path:
    shutil.copytree(built_models, root / "models", ignore=shutil.ignore_patterns(".locks"))
    (root / "etc").mkdir(parents=True)
    return root


@pytest.fixture
def site(tmp_path, built_models) -> Path:
    """A root with models and current engines (no build at start) and etc/."""
    return make_site(tmp_path, built_models)


@pytest.fixture
def sock(tmp_path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def synthetic_clip(path: Path, fps: float = 25, seconds: float = 15) -> Path:
    """A video file of moving grey bars (no vehicle), at `fps` frames per second."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for i in range(round(fps * seconds)):
        image = np.full((240, 320, 3), 40, np.uint8)
        image[:, (i * 7) % 300 : (i * 7) % 300 + 20] = 200
        out.write(image)
    out.release()
    return path


def metrics_port_table() -> str:
    return f"[metrics]\nport = {free_port()}\n"


def log_events(d: DaemonProcess) -> list[dict[str, Any]]:
    events = []
    for line in list(d.lines):
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def wait_until(what: str, check: Callable[[], Any], d: DaemonProcess, timeout: float = 60) -> Any:
    """Poll `check` until it returns something true (that is returned); fail at
    `timeout` or when the daemon exits, with its last log lines."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        tail = "".join(d.lines[-30:])
        assert d.proc.poll() is None, (
            f"alprd exited ({d.proc.returncode}) waiting for {what}:\n{tail}"
        )
        assert time.monotonic() < deadline, f"no {what} in {timeout}s:\n{tail}"
        time.sleep(0.05)


def logged(d: DaemonProcess, event: str, **fields: Any) -> Callable[[], dict[str, Any] | None]:
    """A check for wait_until: the first log line `event` with these fields."""

    def check() -> dict[str, Any] | None:
        for e in log_events(d):
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                return e
        return None

    return check


def status_file(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "state" / "status.json").read_text())
    except (OSError, ValueError):
        return None


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition -> {(name, labels): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, line
        labels = frozenset(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def labelled(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


# --------------------------------------------------------------------------- zone


@needs_data(NL_VIDEO, "video")
def test_a_camera_zone_keeps_only_plates_whose_centre_lies_inside(site, sock):
    """README: `cameras[].zone` (a polygon) keeps only plates whose centre lies
    inside. Two cameras replay the same car pass: one zone around the plate's path
    gives the event; a concave zone covering the car and part of every plate box,
    but no plate centre, gives no read and no event."""
    config = write_config(
        site,
        camera("inside", NL_VIDEO, fps=5) + f"zone = {ZONE_AROUND_PLATE}\n"
        + camera("outside", NL_VIDEO, fps=5) + f"zone = {ZONE_BUT_PLATE}\n",
        metrics_port_table(),
    )  # fmt: skip
    d = DaemonProcess(config, sock)
    try:
        for name in ("inside", "outside"):
            wait_until(f"the end of {name}'s clip", logged(d, "camera_ended", camera=name), d, 90)
        wait_until("the inside event", logged(d, "plate_event", camera="inside"), d, 30)

        def both_done() -> dict[str, Any] | None:
            s = status_file(site)
            cams = s["cameras"] if s else {}
            done = cams and all(c["state"] == "ended" for c in cams.values())
            return cams if done and cams["inside"]["events"] == 1 else None

        cams = wait_until("the final camera counts", both_done, d, 30)
    finally:
        code, events = d.stop()
    assert code == ExitCode.OK
    # Both cameras replayed the same pass; only their zones differ.
    # (how many frames a busy 2-core machine processes varies: 9 of 24 were seen)
    assert cams["outside"]["processed"] >= 3 and cams["inside"]["processed"] >= 3, cams
    assert cams["inside"]["reads"] >= 3, cams
    assert cams["outside"]["reads"] == 0, cams
    plates = [(e["camera"], e["plate"]) for e in events if e["event"] == "plate_event"]
    assert plates == [("inside", "L417VS")]  # and none for outside, not even at stop


# --------------------------------------------------------------------------- fps cap


def test_a_camera_publishes_at_most_its_fps(site, sock):
    """README (Sources): at most `cameras[].fps` frames per second are published
    (a video file replayed at its own rate, 25 fps here). Frames published =
    processed + dropped (status.json, written at one instant), over 8 s: ~5 with
    fps = 5, ~2 with fps = 2, and ~25 (the file's own rate) with fps = 120."""
    clip = synthetic_clip(site / "clip25.avi", fps=25, seconds=15)
    cams = (
        camera("five", clip, fps=5) + "loop = true\n"
        + camera("two", clip, fps=2) + "loop = true\n"
        + camera("free", clip, fps=120) + "loop = true\n"
    )  # fmt: skip
    d = DaemonProcess(write_config(site, cams, metrics_port_table()), sock)
    try:

        def published() -> tuple[float, dict[str, int]] | None:
            s = status_file(site)
            if not s or set(s["cameras"]) != {"five", "two", "free"}:
                return None
            if any(c["state"] != "streaming" or not c["processed"] for c in s["cameras"].values()):
                return None
            return s["updated_at"], {
                n: c["processed"] + c["dropped"] for n, c in s["cameras"].items()
            }

        t0, first = wait_until("all cameras streaming", published, d, 60)
        t1, last = wait_until(
            "a status 8 s later", lambda: (p := published()) and p[0] >= t0 + 8 and p, d, 30
        )
    finally:
        code, _ = d.stop()
    assert code == ExitCode.OK
    rate = {n: (last[n] - first[n]) / (t1 - t0) for n in first}
    # +-1 frame at each end of the window (one may be in flight): +-0.25 fps
    assert 3.5 <= rate["five"] <= 5.75, rate
    assert 1.25 <= rate["two"] <= 2.5, rate
    assert rate["free"] >= 12, rate  # the source is faster than the caps: they did cap it


# ------------------------------------------------ passes with outputs down (shared run)

PASSES = ("rear", "rear2")  # two cameras replay the car pass: one event each


@pytest.fixture(scope="module")
def passes_with_outputs_down(tmp_path_factory, built_models):
    """One real daemon run: two cameras replay the car pass (NL_VIDEO: one event
    each), a third is dead; a JSONL output cannot open (its directory is a file:
    events wait in memory), a webhook nobody answers (events wait in the durable
    outbox), the metrics endpoint on a free port. Once everything is counted: the
    metrics text, `alprd status --json`, then SIGTERM: the exit code and the log."""
    root = make_site(tmp_path_factory.mktemp("passes"), built_models)
    (root / "state").mkdir()
    (root / "state" / "blocked").write_text("a file where a directory should be\n")
    port = free_port()
    config = write_config(
        root,
        "".join(camera(name, NL_VIDEO, fps=5) for name in PASSES)
        + camera("dead", "rtsp://127.0.0.1:9/none", fps=5),
        "[sources]\nreconnect_initial_s = 0.5\nreconnect_max_s = 1\nopen_timeout_s = 1\n"
        '[outputs.jsonl]\nenabled = true\npath = "blocked/reads.jsonl"\n'
        f'[outputs.webhook]\nenabled = true\nurl = "http://127.0.0.1:{free_port()}/hook"\n'
        f"timeout_s = 1\n[metrics]\nport = {port}\n",
    )
    sock = NotifySocket(root / "notify.sock")
    d = DaemonProcess(config, sock)
    try:
        for name in PASSES:
            wait_until(f"{name}'s event", logged(d, "plate_event", camera=name), d, 90)
            wait_until(f"the end of {name}'s clip", logged(d, "camera_ended", camera=name), d, 60)

        def settled() -> bool:
            try:
                s = samples(scrape(port))
            except OSError:
                return False
            want = {
                ("alprd_output_backlog", labelled(output="jsonl")): 2.0,
                ("alprd_outbox_pending", labelled(output="webhook")): 2.0,
            }
            for name in PASSES:
                want[("alprd_events_total", labelled(camera=name))] = 1.0
                want[("alprd_camera_up", labelled(camera=name))] = 0.0
                # its pass ends max_age_s after the clip (its event may come earlier)
                want[("alprd_passes_open", labelled(camera=name))] = 0.0
                want[("alprd_pass_reads_held", labelled(camera=name))] = 0.0
            return all(s.get(k) == v for k, v in want.items())

        wait_until("the metrics of the passes", settled, d, 30)
        metrics_text = scrape(port)

        def status_json() -> subprocess.CompletedProcess[str] | None:
            r = run_alprd("status", "--json", "--config", str(config))
            s = json.loads(r.stdout) if r.returncode == 0 else {}
            ended = s and all(s["cameras"][n]["state"] == "ended" for n in PASSES)
            return r if ended and len(s["last_events"]) == 2 and s["backlog"] else None

        status = wait_until("the status of the passes", status_json, d, 30)
        pid = d.proc.pid
    finally:
        code, events = d.stop()
        sock.close()
    return {
        "root": root, "config": config, "metrics": metrics_text, "status": status,
        "pid": pid, "code": code, "events": events,
    }  # fmt: skip


@needs_data(NL_VIDEO, "video")
def test_events_still_held_at_stop_are_logged_as_lost(passes_with_outputs_down):
    """README (Outputs): events an output cannot take wait in memory; those still
    held when alprd stops are logged (`output_backlog_lost`), with their number.
    Events for the webhook are in the durable outbox, not in memory: not lost."""
    run = passes_with_outputs_down
    assert run["code"] == ExitCode.OK
    events = run["events"]
    plate_events = sorted((e["camera"], e["plate"]) for e in events if e["event"] == "plate_event")
    assert plate_events == [("rear", "L417VS"), ("rear2", "L417VS")]
    lost = [e for e in events if e["event"] == "output_backlog_lost"]
    assert [(e["output"], e["events"], e["level"]) for e in lost] == [("jsonl", 2, "error")]
    names = [e["event"] for e in events]
    assert names.index("alprd_stopping") < names.index("output_backlog_lost")
    assert names.index("output_backlog_lost") < names.index("alprd_stopped")
    failed = [e for e in events if e["event"] == "output_failed" and e["output"] == "jsonl"]
    assert len(failed) == 1 and "blocked" in failed[0]["reason"], failed
    # The working output has both; the blocked one never wrote anything.
    stored = run_alprd("reads", "--json", "--config", str(run["config"]))
    stored_events = sorted(
        (r["camera"], r["plate"]) for r in map(json.loads, stored.stdout.splitlines())
    )
    assert stored_events == plate_events
    assert (run["root"] / "state" / "blocked").is_file()


# --------------------------------------------------------------------------- metrics


@needs_data(NL_VIDEO, "video")
def test_the_metrics_endpoint_serves_every_documented_metric(passes_with_outputs_down):
    """README (Observability, Outputs, Hot model swap): every `alprd_*` metric it
    names is served over HTTP by a running daemon on the configured port, with its
    labels (camera, stage, output, model) and the values of this run."""
    text = passes_with_outputs_down["metrics"]
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`(alprd_[a-z_]+)(?:\{[a-z_,]*\})?`", readme))
    assert documented >= {
        "alprd_frames_total", "alprd_frames_dropped", "alprd_stage_seconds", "alprd_reads",
        "alprd_events_total", "alprd_outbox_pending", "alprd_engine_generation",
        "alprd_engine_builds", "alprd_camera_up", "alprd_output_backlog",
        "alprd_model_last_good", "alprd_passes_open", "alprd_pass_reads_held",
    }, documented  # fmt: skip
    s = samples(text)
    served = {name for name, _ in s}
    for name in documented:
        assert name in served or f"{name}_count" in served, f"{name} not served:\n{text}"

    def value(name: str, **labels: str) -> float:
        assert (name, labelled(**labels)) in s, f"{name}{labels} not served:\n{text}"
        return s[(name, labelled(**labels))]

    for name in PASSES:
        assert value("alprd_frames_total", camera=name) >= 3  # 9 of 24 seen under load
        assert value("alprd_frames_dropped", camera=name) >= 0
        assert value("alprd_reads", camera=name) >= 1
        assert value("alprd_events_total", camera=name) == 1
        assert value("alprd_camera_up", camera=name) == 0  # its clip has ended
        assert value("alprd_passes_open", camera=name) == 0  # and its pass with it
        assert value("alprd_pass_reads_held", camera=name) == 0
    assert value("alprd_frames_dropped", camera="dead") == 0
    assert value("alprd_reads", camera="dead") == 0
    assert value("alprd_camera_up", camera="dead") == 0
    assert value("alprd_outbox_pending", output="webhook") == 2
    assert value("alprd_output_backlog", output="jsonl") == 2
    assert value("alprd_engine_builds") == 0
    # the process's own, to watch a long run from outside
    assert 50e6 < value("process_resident_memory_bytes") < 4e9
    assert value("process_open_fds") > 3
    assert value("python_gc_collections_total", generation="0") > 0
    for model in ("vehicle", "plate", "ocr"):
        assert value("alprd_engine_generation", model=model) == 1
        assert value("alprd_model_last_good", model=model) == 0
    # a histogram per stage: one observation per batch of cameras in each stage
    for stage in ("vehicle", "plate", "ocr"):
        n = value("alprd_stage_seconds_count", stage=stage)
        assert n >= 1 and value("alprd_stage_seconds_sum", stage=stage) > 0
        assert value("alprd_stage_seconds_bucket", stage=stage, le="+Inf") == n
    frames = sum(value("alprd_frames_total", camera=name) for name in PASSES)
    assert value("alprd_stage_seconds_count", stage="vehicle") <= frames


# --------------------------------------------------------------------------- status


@needs_data(NL_VIDEO, "video")
def test_status_json_of_a_running_daemon(passes_with_outputs_down):
    """README (Commands, Observability): `alprd status --json` prints the running
    daemon's state as JSON (exit 0): engines (model file, sha256, since), cameras,
    outbox, last events."""
    run = passes_with_outputs_down
    status = run["status"]
    assert status.returncode == 0, status.stderr
    s = json.loads(status.stdout)
    assert s["running"] is True and s["pid"] == run["pid"]
    assert s["status"] == "running: 3 cameras, engines vehicle=openvino plate=openvino ocr=openvino"
    assert s["updated_at"] >= s["started_at"] > 0
    models = run["root"] / "models"
    assert set(s["engines"]) == {"vehicle", "plate", "ocr"}
    for role, name in zip(("vehicle", "plate", "ocr"), DEFAULT_MODELS[:3], strict=True):
        e = s["engines"][role]
        assert Path(e["source"]) == models / name, e
        digest = hashlib.sha256((models / name).read_bytes()).hexdigest()
        assert e["sha256"] == digest[:12], e
        assert e["since"] and e["since"].endswith("Z"), e  # ISO 8601 UTC
        assert (e["backend"], e["generation"]) == ("openvino", 1), e
        assert e["last_good"] is None, e
    for name in PASSES:
        cam = s["cameras"][name]
        assert cam["state"] == "ended" and cam["processed"] >= 3 and cam["events"] == 1, cam
        assert cam["reads"] >= 1 and cam["dropped"] >= 0, cam
    dead = s["cameras"]["dead"]
    assert dead["state"] == "reconnecting" and dead["processed"] == 0, dead
    assert dead["reconnects"] >= 1, dead
    assert s["outbox"] == {"webhook": 2}
    assert s["backlog"] == {"jsonl": 2}
    last = sorted(s["last_events"], key=lambda e: e["camera"])
    assert [(e["camera"], e["plate"]) for e in last] == [("rear", "L417VS"), ("rear2", "L417VS")]
    for event in last:
        assert event["id"] and event["first_seen"].endswith("Z") and event["reads"] >= 1, event
    # The same events as the log's.
    logged_events = sorted(
        (e for e in run["events"] if e["event"] == "plate_event"), key=lambda e: e["camera"]
    )
    for event, logged_event in zip(last, logged_events, strict=True):
        assert event["confidence"] == pytest.approx(logged_event["confidence"], abs=1e-3)
        assert event["reads"] == logged_event["reads"], (event, logged_event)


# --------------------------------------------------------------------------- exit 70


def test_an_unexpected_error_at_start_up_exits_70_and_is_logged(site, sock, monkeypatch):
    """README (Exit codes): 70 when the daemon hits an unexpected fatal error, "see
    the log". This test injects the fault: a `sitecustomize.py` on the daemon's
    PYTHONPATH makes opening the outputs raise at start-up: exit 70, one
    `alprd_crashed` error line with the exception; no READY=1. README (Logging):
    the traceback carries no secret of the config (credentials masked in every
    line)."""
    inject = site / "inject-start"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "from alprd.sinks import outputs\n"
        "def fail(*args, **kwargs):\n"
        "    raise RuntimeError('fault injected into Outputs.open')\n"
        "outputs.Outputs.open = staticmethod(fail)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(inject))
    config = write_config(
        site,
        camera("yard", synthetic_clip(site / "clip.avi")),
        f"[metrics]\nport = {free_port()}\n"
        '[outputs.mqtt]\nenabled = true\nport = 9\nusername = "alprd"\n'
        'password = "mqtt-pass-5e1d"\n'
        "[outputs.webhook]\nenabled = true\n"
        'url = "http://hook:hook-pass-77aa@127.0.0.1:9/x?token=hook-token-03c9"\n',
    )
    config.chmod(0o600)
    d = DaemonProcess(config, sock)
    d.proc.wait(timeout=60)
    code, events = d.stop()
    assert code == ExitCode.FATAL == 70
    [crash] = [e for e in events if e["event"] == "alprd_crashed"]
    assert crash["level"] == "error"
    exc = crash["exception"][0]  # what was raised (then its cause)
    assert exc["exc_type"] == "RuntimeError" and "Outputs.open" in exc["exc_value"], exc
    assert not any(m.startswith("READY=1") for m in sock.messages)
    everything = "".join(d.lines)
    for secret in ("mqtt-pass-5e1d", "hook-pass-77aa", "hook-token-03c9"):
        assert secret not in everything


def test_an_unexpected_error_in_the_main_loop_exits_70_and_is_logged(site, sock, monkeypatch):
    """README (Exit codes): 70 when the daemon hits an unexpected fatal error, "see
    the log". This test injects the fault: a `sitecustomize.py` on the daemon's
    PYTHONPATH makes the main loop's first processed frame raise RuntimeError
    (in `CameraPipeline.feed`). After READY=1: exit 70, an `alprd_crashed` error line with the
    exception, and the daemon still stops in order (STOPPING=1, `alprd_stopped`)."""
    inject = site / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "from alprd.pipeline import stream\n"
        "_feed = stream.CameraPipeline.feed\n"
        "_raised = []\n"
        "def feed(self, frame, *args, **kwargs):\n"
        "    if not _raised:\n"
        "        _raised.append(frame)\n"
        "        raise RuntimeError('fault injected into CameraPipeline.feed')\n"
        "    return _feed(self, frame, *args, **kwargs)\n"
        "stream.CameraPipeline.feed = feed\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(inject))
    config = write_config(
        site, camera("yard", synthetic_clip(site / "clip.avi")), metrics_port_table()
    )
    d = DaemonProcess(config, sock)
    d.proc.wait(timeout=90)
    code, events = d.stop()
    assert code == ExitCode.FATAL == 70
    names = [e["event"] for e in events]
    assert names.index("alprd_ready") < names.index("alprd_crashed") < names.index("alprd_stopped")
    [crash] = [e for e in events if e["event"] == "alprd_crashed"]
    assert crash["level"] == "error"
    exc = crash["exception"][0]
    assert exc["exc_type"] == "RuntimeError", exc
    assert exc["exc_value"] == "fault injected into CameraPipeline.feed", exc
    sock.pump()
    ready = [i for i, m in enumerate(sock.messages) if m.startswith("READY=1")]
    assert ready and sock.messages[-1] == "STOPPING=1\nSTATUS=stopping", sock.messages


# --------------------------------------------------------------------------- check-config


def test_check_config_rejects_a_replacement_that_refers_to_a_missing_group(tmp_path):
    """README (Configuration, Exit codes): `alprd check-config` reports a key that
    fails validation with file:line (exit 78). A `plates.replace` rule whose
    replacement names a group its pattern lacks is such a key: accepted, it would
    raise at the first plate the rule is applied to."""
    config = tmp_path / "alprd.toml"
    config.write_text('[plates]\nreplace = [["O", "0"], ["(L)", "\\\\2"]]\n')
    r = run_alprd("check-config", str(config))
    assert r.returncode == ExitCode.CONFIG == 78, r.stdout + r.stderr
    assert r.stderr.splitlines() == [
        f"error: {config}:2: plates.replace: [1]: not a valid replacement: "
        "invalid group reference 2 at position 1"
    ]
    config.write_text('[plates]\nreplace = [["O", "0"], ["(L)", "\\\\1"]]\n')
    ok = run_alprd("check-config", str(config))
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stdout + ok.stderr
