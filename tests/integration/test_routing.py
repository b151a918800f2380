"""Drop a model and walk away: a dropped file is identified and routed to the role
it fits with no config edit, recorded as served (kept with its engine) so the
choice survives a restart, and a file gone bad never stops a restart (the last
good model serves). Real model files, real builds (ONNX Runtime), real watcher."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from conftest import REPO, copy_models, run_alprd
from structlog.testing import capture_logs
from support.daemon import running
from test_faults import cam, clip

from alprd import config as cfgmod
from alprd.engines import identify, manager
from alprd.engines.identify import Identity, route
from alprd.engines.served import Served, ServedModels, now
from alprd.hashing import sha256_file
from alprd.rebuild import Rebuilder

COCO = REPO / "models" / "vehicle-yolov8n-coco.onnx"
VEHICLES = ["car", "motorcycle", "bus", "truck"]


# --------------------------------------------------------------------------- identify


def ident(path: str, task: str, names: tuple[str, ...], out: tuple) -> Identity:
    return Identity(Path(path), task, names, (1, 3, 640, 640), out)


@pytest.mark.parametrize(
    ("identity", "role", "why"),
    [
        (ident("best.pt", "detect", ("license_plate",), (None, 5, None)), "plate", "one class"),
        (ident("best.pt", "detect", ("Placa",), (None, 5, None)), "plate", "'Placa'"),
        (ident("x.onnx", "detect", (), (1, 5, 8400)), "plate", "one unnamed class"),
        (ident("best.pt", "detect", ("bus", "car", "motorcycle", "truck", "van"), (None, 9, None)),
         "vehicle", "classes include car"),
        (ident("best.pt", "detect", ("dog",), (None, 5, None)), None, "without car, motorcycle"),
        (ident("best.pt", "detect", ("car", "bus"), (None, 6, None)), None, "without motorcycle"),
        (ident("best.pt", "classify", ("a", "b"), (None, 2)), None, "'classify' model"),
        (ident("best.pt", "segment", ("plate",), (None, 37, None)), None, "'segment' model"),
        (ident("r.onnx", "", (), (None, 32, 38)), None, "r-dict.txt is not beside it"),
        (ident("r.onnx", "", (), (None, 84, 8400)), None, "r-dict.txt is not beside it"),
    ],
)  # fmt: skip
def test_a_model_is_routed_by_what_it_is(identity, role, why):
    routing = route(identity, VEHICLES)
    assert routing.role == role and why in routing.why, routing


def test_a_recogniser_with_its_dictionary_beside_it_goes_to_ocr(tmp_path):
    model = tmp_path / "mine.onnx"
    (tmp_path / "mine-dict.txt").write_text("A\nB\n")
    routing = route(Identity(model, "", (), (None, 3, 32, 128), (None, 32, 38)), VEHICLES)
    assert routing.role == "ocr"
    assert routing.dictionary == tmp_path / "mine-dict.txt"
    assert (routing.input_height, routing.input_width) == (32, 128)


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("best.pt", os.urandom(5000), "not a PyTorch checkpoint"),
        ("best.pt", b"PK\x03\x04" + os.urandom(5000), "truncated or damaged"),
        ("best.onnx", b"<html>not found</html>" * 10, "not an ONNX model"),
        ("best.onnx", b"", "not an ONNX model"),
        ("best.tflite", b"x" * 100, "unsupported model format .tflite"),
    ],
)
def test_precheck_refuses_bytes_that_are_no_model_in_milliseconds(tmp_path, name, data, problem):
    path = tmp_path / name
    path.write_bytes(data)
    started = time.perf_counter()
    found = identify.precheck(path)
    assert found is not None and problem in found
    assert time.perf_counter() - started < 0.5
    with pytest.raises(Exception, match=problem):
        identify.identify(path)


def test_the_real_default_models_identify_as_their_roles():
    plate = identify.identify(REPO / "models" / "plate-yolov8n.pt")
    assert (plate.task, plate.names) == ("detect", ("license_plate",))
    assert route(plate, VEHICLES).role == "plate"
    assert route(identify.identify(COCO), VEHICLES).role == "vehicle"
    ocr = route(identify.identify(REPO / "models/trained/ocr-alprd-plate.onnx"), VEHICLES)
    assert ocr.role == "ocr" and ocr.input_width == 128


def test_a_classifier_checkpoint_is_identified_and_not_used(tmp_path):
    cls = tmp_path / "cls.pt"
    subprocess.run(
        [sys.executable, "-c", f"from ultralytics import YOLO; YOLO('yolov8n-cls.yaml').save({str(cls)!r})"],  # noqa: E501
        check=True, capture_output=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    found = identify.identify(cls)
    assert found.task == "classify"
    routing = route(found, VEHICLES)
    assert routing.role is None and "'classify' model" in routing.why


# --------------------------------------------------------------------------- served record


def entry(tmp_path: Path, name: str, data: bytes, role="plate") -> Served:
    path = tmp_path / "models" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Served(role, path, sha256_file(path), now())


def test_the_record_keeps_copies_bounded_and_survives_a_restart(tmp_path):
    store = ServedModels(tmp_path / "served", keep=2)
    entries = [entry(tmp_path, f"m{i}.onnx", bytes([8, i]) * 100) for i in range(5)]
    for e in entries:
        store.record(e)
    again = ServedModels(tmp_path / "served", keep=2)  # as after a restart
    cur = again.current("plate")
    assert cur is not None and cur.source == entries[-1].source and cur.generation == 5
    assert [h.source.name for h in again.history("plate")] == ["m3.onnx", "m2.onnx"]
    kept = sorted(p.name for p in (tmp_path / "served" / "plate").iterdir())
    assert kept == sorted(e.sha256[:16] for e in entries[2:])  # older copies removed
    assert again.kept(cur).read_bytes() == entries[-1].source.read_bytes()


def test_the_kept_copies_of_a_role_stay_under_their_size_cap(tmp_path):
    store = ServedModels(tmp_path / "served", keep=3, max_bytes=2500)
    for i in range(4):
        store.record(entry(tmp_path, f"m{i}.onnx", bytes([8, i]) * 500))  # 1,000 bytes each
    assert store.current("plate").source.name == "m3.onnx"  # type: ignore[union-attr]
    assert [h.source.name for h in store.history("plate")] == ["m2.onnx"]
    assert len(list((tmp_path / "served" / "plate").iterdir())) == 2


def test_choose_serves_the_file_its_kept_copy_or_what_the_config_pins(tmp_path):
    (tmp_path / "etc").mkdir()
    conf = tmp_path / "etc" / "alprd.toml"
    conf.write_text('[paths]\nroot = ".."\n')
    store = ServedModels(tmp_path / "state" / "served")
    good = entry(tmp_path, "best.onnx", b"\x08good" * 50)
    store.record(good)
    config = cfgmod.load(conf)
    assert store.choose(config, "plate").source == good.source  # the routed file
    assert store.choose(config, "vehicle").entry is None  # nothing recorded: the config
    good.source.write_bytes(b"\x08bad!" * 50)
    assert not store.choose(config, "plate").last_good  # new bytes, not judged yet
    store.reject("plate", sha256_file(good.source), "a plate detector has one class")
    choice = store.choose(config, "plate")
    assert choice.last_good and choice.source == store.kept(good)
    assert "rejected: a plate detector has one class" in choice.why
    good.source.unlink()
    choice = store.choose(config, "plate")
    assert choice.last_good and "is gone" in choice.why
    conf.write_text('[paths]\nroot = ".."\n[models.plate]\nsource = "mine.pt"\n')
    pinned = cfgmod.load(conf)
    assert store.choose(pinned, "plate").source == tmp_path / "models" / "mine.pt"


def test_a_damaged_record_is_set_aside(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "served.json").write_text("{not json")
    with capture_logs() as logs:
        store = ServedModels(root)
    assert store.current("plate") is None
    assert (root / "served.json.damaged").is_file()
    assert [e["event"] for e in logs] == ["served_record_unreadable"]


# --------------------------------------------------------------------------- rebuilder


@pytest.fixture(scope="module")
def plate_onnx(tmp_path_factory) -> Path:
    """The default plate detector as a plain ONNX with its class names (exported once)."""
    d = tmp_path_factory.mktemp("export")
    shutil.copyfile(REPO / "models" / "plate-yolov8n.pt", d / "plate-yolov8n.pt")
    (d / "alprd.toml").write_text('[engines]\nbackend = "onnxruntime"\n[paths]\nmodels_dir = "."\n')
    target = manager.plan(cfgmod.load(d / "alprd.toml"), "plate")
    assert manager.ensure(target).status == "built"
    return target.engine


def variant(src: Path, dest: Path, rev: str) -> None:
    """Same network, other bytes: what a retrained model looks like to alprd."""
    model = onnx.load(src)
    model.metadata_props.add(key="revision", value=rev)
    tmp = dest.with_name(f".{dest.name}.tmp")
    onnx.save(model, tmp)
    os.replace(tmp, dest)


def settle(rebuilder: Rebuilder, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    time.sleep(0.1)
    while not rebuilder.idle():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_drop_is_not_used_where_the_config_pins_the_role(tmp_path, plate_onnx):
    copy_models(tmp_path / "models")
    (tmp_path / "alprd.toml").write_text(
        '[engines]\nbackend = "onnxruntime"\n[models.plate]\nsource = "plate-yolov8n.pt"\n'
    )
    config = cfgmod.load(tmp_path / "alprd.toml")
    built = []
    rebuilder = Rebuilder(lambda: config, lambda role: None, built.append)
    variant(plate_onnx, tmp_path / "models" / "best.onnx", "2")
    (tmp_path / "models" / "notes.onnx").write_text("my notes")
    try:
        with capture_logs() as logs:
            rebuilder.request_file(tmp_path / "models" / "best.onnx")
            rebuilder.request_file(tmp_path / "models" / "notes.onnx")
            settle(rebuilder)
    finally:
        rebuilder.stop()
    assert built == []
    [pinned] = [e for e in logs if e["event"] == "model_not_used"]
    assert pinned["model"] == "plate" and "models.plate.source is set" in pinned["reason"]
    assert 'set it to "best.onnx"' in pinned["hint"]
    [bad] = [e for e in logs if e["event"] == "model_rejected"]
    assert bad["file"].endswith("notes.onnx") and "not an ONNX model" in bad["reason"]
    assert not [e for e in logs if e["event"] == "engine_build_started"]


# --------------------------------------------------------------------------- the daemon


def site_config(site: Path, extra: str = "") -> Path:
    (site / "etc").mkdir(exist_ok=True)
    path = site / "etc" / "alprd.toml"
    path.write_text(
        '[paths]\nroot = ".."\n[engines]\nbackend = "onnxruntime"\n'
        f"[models]\nwatch_quiet_s = 0.5\n{extra}" + cam("yard", clip(site / "c.avi"), fps=10)
    )
    return path


@pytest.mark.faults
def test_drop_restart_bad_drop_restart(tmp_path, plate_onnx):
    """Dropped with no config edit -> routed to plate, swapped while frames flow; a
    restart serves it without a build; a bad file over it is rejected, and the
    restart after that serves the last good model (kept copy) with a warning."""
    copy_models(tmp_path / "models")
    config = site_config(tmp_path)
    best = tmp_path / "models" / "best.onnx"
    with running(config) as daemon:
        service, logs = daemon.service, daemon.logs
        assert service.recognizer is not None
        limit = daemon.measure_gap_limit("yard")
        started = time.monotonic()
        variant(plate_onnx, best, "retrained")
        [swapped] = daemon.wait_log("engine_swapped", model="plate", timeout=120)
        routed = [e for e in logs if e["event"] == "model_routed"]
        assert [(e["model"], Path(e["file"]).name) for e in routed] == [("plate", "best.onnx")]
        assert swapped["source"] == "best.onnx"
        assert daemon.max_gap(started, "yard") < limit
        serving = service.recognizer.engines["plate"].fingerprint
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        time.sleep(2.5)  # the status file is refreshed every 2 s
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        plate = status["engines"]["plate"]
        assert plate["source"] == str(best) and plate["served"] == 2 and not plate["last_good"]
        # the model no longer served is deleted: its engine goes too; the served one stays
        default = tmp_path / "models" / "plate-yolov8n.pt"
        engine = default.with_name("plate-yolov8n.onnxruntime.onnx")
        assert engine.is_file()
        default.unlink()
        removed = daemon.wait_log("engine_removed", n=2, timeout=120)
        assert {e["file"] for e in removed} == {str(engine), f"{engine}.json"}
        assert not engine.exists() and not engine.with_name(engine.name + ".json").exists()
        assert best.with_name("best.onnxruntime.onnx").is_file()

    with running(config) as daemon:  # restart: the choice survives
        service, logs = daemon.service, daemon.logs
        assert service.recognizer is not None
        assert service.recognizer.engines["plate"].fingerprint == serving
        assert not [e for e in logs if e["event"] == "engine_build_started"]
        shutil.copyfile(COCO, tmp_path / "models" / ".x.tmp")  # 80 classes over best.onnx
        os.replace(tmp_path / "models" / ".x.tmp", best)
        [rejected] = daemon.wait_log("model_rejected", model="plate", timeout=120)
        assert "a plate detector has one class" in rejected["reason"]
        assert service.recognizer.engines["plate"].fingerprint == serving

    with running(config) as daemon:  # restart after the bad drop
        service, logs = daemon.service, daemon.logs
        assert service.recognizer is not None
        assert service.recognizer.engines["plate"].fingerprint == serving
        [warned] = [e for e in logs if e["event"] == "model_last_good"]
        assert warned["model"] == "plate" and "rejected" in warned["reason"]
        assert "kept copy" in warned["serving"]
        assert not [e for e in logs if e["event"] == "engine_build_started"]  # judged before
        time.sleep(2.5)
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        assert "rejected" in status["engines"]["plate"]["last_good"]
        # a good model dropped again replaces the kept copy
        variant(plate_onnx, best, "retrained-2")
        daemon.wait_log("engine_swapped", model="plate", timeout=120)
        assert service.last_good == {}


@pytest.mark.faults
def test_a_reload_that_needs_a_new_engine_never_stops_the_frames(tmp_path):
    copy_models(tmp_path / "models")
    config = site_config(tmp_path)
    with running(config) as daemon:
        service = daemon.service
        assert service.recognizer is not None
        before = service.recognizer.engines["plate"].fingerprint
        daemon.wait_log("camera_connected", timeout=120)
        limit = daemon.measure_gap_limit("yard")
        started = time.monotonic()
        text = config.read_text()
        config.write_text(text + "[models.plate]\ninput_size = 320\n")
        service.request_reload()
        [applied] = daemon.wait_log("config_applied", timeout=120)
        assert applied["engines_building"] == "plate"
        ready = [m for m in service.notifier.sent if m.startswith("READY=1")][-1]
        assert ready.endswith(", building plate"), ready  # STATUS says a build is pending
        assert (service.recognizer.plate.height, service.recognizer.plate.width) == (416, 416)
        daemon.wait_log("engine_swapped", model="plate", timeout=180)
        assert service.recognizer.engines["plate"].fingerprint != before
        time.sleep(0.5)
        assert (service.recognizer.plate.height, service.recognizer.plate.width) == (320, 320)
        assert service.config is not None and service.config.models.plate.input_size == 320
        gap = daemon.max_gap(started, "yard")
        assert gap < limit, (gap, limit)  # a 10 fps camera served throughout the build


@pytest.mark.faults
def test_a_dropped_recogniser_brings_its_dictionary(tmp_path):
    """A recogniser dropped with its -dict.txt (dictionary first) is routed to the
    ocr role: its dictionary and input size serve with it, and after a restart."""
    copy_models(tmp_path / "models")
    config = site_config(tmp_path)
    src = tmp_path / "models" / "trained" / "ocr-alprd-plate.onnx"
    mine = tmp_path / "models" / "mine.onnx"
    dictionary = tmp_path / "models" / "mine-dict.txt"
    shutil.copyfile(src.with_name("ocr-alprd-plate-dict.txt"), dictionary)
    with running(config) as daemon:
        service = daemon.service
        assert service.recognizer is not None
        variant(src, mine, "site-tuned")
        [swapped] = daemon.wait_log("engine_swapped", model="ocr", timeout=120)
        assert swapped["source"] == "mine.onnx"
        assert service.config is not None
        assert service.config.models.ocr.dictionary == dictionary
        assert service.recognizer.config.models.ocr.source == mine
        served = service.recognizer.engines["ocr"].fingerprint
    with running(config) as daemon:
        service = daemon.service
        assert service.recognizer is not None and service.config is not None
        assert service.recognizer.engines["ocr"].fingerprint == served
        assert service.config.models.ocr.dictionary == dictionary


def test_the_warmup_serves_the_last_good_model_of_a_role_whose_file_went_bad(tmp_path, plate_onnx):
    """A bad file over the served model while the daemon was stopped: `alprd warmup`
    (the warm-up unit) remembers it as rejected and warms the kept copy, so the
    daemon then starts on it without trying the bad file."""
    copy_models(tmp_path / "models")
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "alprd.toml"
    config.write_text('[paths]\nroot = ".."\n[engines]\nbackend = "onnxruntime"\n')
    best = tmp_path / "models" / "best.onnx"
    variant(plate_onnx, best, "good")
    store = ServedModels(tmp_path / "state" / "served")
    store.record(Served("plate", best, sha256_file(best), now()))
    shutil.copyfile(COCO, best)  # 80 classes: no plate detector
    proc = run_alprd("warmup", "--config", str(config), "--log-format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warmup_last_good" in proc.stderr
    again = ServedModels(tmp_path / "state" / "served")
    reason = again.rejection("plate", sha256_file(best))
    assert reason is not None and "a plate detector has one class" in reason
    choice = again.choose(cfgmod.load(config), "plate")
    assert choice.last_good and choice.source == again.kept(again.current("plate"))
