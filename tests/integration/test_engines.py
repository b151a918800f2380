"""Engine cache on real artefacts: the default models (fetched by `make install`),
real ONNX Runtime and OpenVINO builds in real child processes, real files and locks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import pytest
from conftest import SHARED_DATA, copy_models, needs_data, run_alprd

from alprd import config as cfgmod
from alprd.engines import cache, child, manager, worker
from alprd.engines.base import EngineError
from alprd.exitcodes import ExitCode

BR_PHOTOS = SHARED_DATA / "plates-br"


@pytest.fixture
def site(tmp_path: Path):
    """A config rooted in tmp_path with copies of the default models."""
    copy_models(tmp_path / "models")
    etc = tmp_path / "etc"
    etc.mkdir()

    def write(extra: str = "", backend: str = "onnxruntime") -> Path:
        path = etc / "alprd.toml"
        path.write_text(f'[paths]\nroot = ".."\n[engines]\nbackend = "{backend}"\n{extra}')
        return path

    write()
    return write


def load(path: Path) -> cfgmod.Config:
    return cfgmod.load(path)


def ensure_all(config: cfgmod.Config, **overrides: object) -> dict[str, manager.Outcome]:
    ov = manager.Overrides(**overrides)  # type: ignore[arg-type]
    return {
        role: manager.ensure(manager.plan(config, role, ov)) for role in ("vehicle", "plate", "ocr")
    }


def statuses(outcomes: dict[str, manager.Outcome]) -> dict[str, str]:
    return {role: o.status for role, o in outcomes.items()}


def json_events(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


# --------------------------------------------------------------------------- warm-up


def test_warmup_builds_every_engine_once_then_only_loads(site):
    path = site(backend="auto")  # OpenVINO here: installed, no TensorRT
    first = run_alprd("warmup", "--config", str(path), "--log-format", "json")
    assert first.returncode == 0, first.stderr
    events = json_events(first.stderr)
    built = [e for e in events if e["event"] == "engine_built"]
    assert sorted(e["model"] for e in built) == ["ocr", "plate", "vehicle"]
    assert {e["backend"] for e in built} == {"openvino"}
    models = path.parent.parent / "models"
    assert sorted(p.name for p in models.rglob("*.openvino.blob")) == [
        "ocr-alprd-plate.openvino.blob",
        "plate-yolov8n.openvino.blob",
        "vehicle-yolov8n-coco.openvino.blob",
    ]
    mtimes = {p: p.stat().st_mtime_ns for p in models.iterdir() if p.is_file()}

    second = run_alprd("warmup", "--config", str(path), "--log-format", "json")
    assert second.returncode == 0, second.stderr
    events = json_events(second.stderr)
    assert [e for e in events if e["event"] in ("engine_built", "engine_build_started")] == []
    loaded = {e["model"]: e for e in events if e["event"] == "engine_loaded"}
    assert sorted(loaded) == ["ocr", "plate", "vehicle"]
    assert {p: p.stat().st_mtime_ns for p in models.iterdir() if p.is_file()} == mtimes
    assert "torch" not in second.stderr  # nothing was exported


def test_serving_path_imports_neither_torch_nor_ultralytics(site):
    path = site(backend="openvino")
    ensure_all(load(path))
    code = (
        "import sys\n"
        "from alprd import config\n"
        "from alprd.engines import manager\n"
        f"c = config.load({str(path)!r})\n"
        "for role in ('vehicle', 'plate', 'ocr'):\n"
        "    manager.load(manager.plan(c, role))\n"
        "print(sorted(m for m in ('torch', 'ultralytics', 'torchvision') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ----------------------------------------------------------------------- what triggers a rebuild


def test_each_fingerprint_input_rebuilds_exactly_the_affected_model(site):
    path = site(backend="openvino")
    config = load(path)
    assert set(statuses(ensure_all(config)).values()) == {"built"}
    assert set(statuses(ensure_all(config)).values()) == {"current"}

    # source bytes: the vehicle ONNX gains a metadata entry (same network, new bytes)
    src = config.models.vehicle.source
    model = onnx.load(src)
    model.metadata_props.add(key="retrained", value="yes")
    onnx.save(model, src)
    out = ensure_all(config)
    assert statuses(out) == {"vehicle": "built", "plate": "current", "ocr": "current"}
    assert out["vehicle"].reasons == ["source_changed"]

    # precision (per role in the config)
    config = load(site('[models.ocr]\nprecision = "fp32"\n', backend="openvino"))
    out = ensure_all(config)
    assert statuses(out) == {"vehicle": "current", "plate": "current", "ocr": "built"}
    assert out["ocr"].reasons == ["precision_changed"]

    # input size: the plate .pt is exported again at 320
    config = load(
        site(
            '[models.ocr]\nprecision = "fp32"\n[models.plate]\ninput_size = 320\n',
            backend="openvino",
        )
    )
    out = ensure_all(config)
    assert statuses(out) == {"vehicle": "current", "plate": "built", "ocr": "current"}
    assert out["plate"].reasons == ["input_shape_changed"]

    # batch (for the plate role only)
    text = '[models.ocr]\nprecision = "fp32"\n[models.plate]\ninput_size = 320\nbatch_size = 2\n'
    config = load(site(text, backend="openvino"))
    out = ensure_all(config)
    assert statuses(out) == {"vehicle": "current", "plate": "built", "ocr": "current"}
    assert out["plate"].reasons == ["input_shape_changed"]

    # engines built by another runtime version, then on another CPU: what their
    # sidecars say after an upgrade or a disk moved to new hardware
    def built_elsewhere(change) -> None:
        for role in ("vehicle", "plate", "ocr"):
            side = cache.sidecar_path(manager.plan(config, role).engine)
            record = json.loads(side.read_text())
            change(record["inputs"])
            side.write_text(json.dumps(record))

    built_elsewhere(lambda inputs: inputs.update(runtime_version="2099.1.0"))
    out = ensure_all(config)
    assert set(statuses(out).values()) == {"built"}
    assert {tuple(o.reasons) for o in out.values()} == {("runtime_changed",)}
    built_elsewhere(lambda inputs: inputs["device"].update(cpu="Other CPU"))
    out = ensure_all(config)
    assert {tuple(o.reasons) for o in out.values()} == {("device_changed",)}
    assert set(statuses(ensure_all(config)).values()) == {"current"}


def test_backend_choice_keeps_separate_engines(site):
    config = load(site(backend="onnxruntime"))
    assert set(statuses(ensure_all(config)).values()) == {"built"}
    config = load(site(backend="openvino"))
    assert set(statuses(ensure_all(config)).values()) == {"built"}
    config = load(site(backend="onnxruntime"))
    assert set(statuses(ensure_all(config)).values()) == {"current"}


# --------------------------------------------------------------------------- damaged engines


# faults: Scenario 2: truncated, garbage and mismatched engines and sidecars
@pytest.mark.faults
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", "engine_truncated"),
        ("garbage", "engine_corrupt"),
        ("sidecar_mismatch", "source_changed"),
        ("sidecar_garbage", "sidecar_corrupt"),
        ("sidecar_removed", "sidecar_missing"),
        ("engine_removed", "missing"),
    ],
)
def test_damaged_engines_are_detected_and_rebuilt(site, damage, reason):
    config = load(site())
    target = manager.plan(config, "vehicle")
    assert manager.ensure(target).status == "built"
    engine, side = target.engine, cache.sidecar_path(target.engine)
    if damage == "truncate":
        engine.write_bytes(engine.read_bytes()[: engine.stat().st_size // 2])
    elif damage == "garbage":
        engine.write_bytes(os.urandom(engine.stat().st_size))
    elif damage == "sidecar_mismatch":
        data = json.loads(side.read_text())
        data["inputs"]["source_sha256"] = "0" * 64
        side.write_text(json.dumps(data))
    elif damage == "sidecar_garbage":
        side.write_text("{not json")
    elif damage == "sidecar_removed":
        side.unlink()
    else:
        engine.unlink()
    assert cache.check(engine, target.inputs) == [reason]
    with pytest.raises(EngineError, match=reason):
        manager.load(target)
    outcome = manager.ensure(target)
    assert (outcome.status, outcome.reasons) == ("built", [reason])
    engine_, _ = manager.load(target)
    engine_.close()


def _children() -> list[int]:
    me = os.getpid()
    pids = []
    for task in Path(f"/proc/{me}/task").iterdir():
        try:
            text = (task / "children").read_text().split()
        except FileNotFoundError:  # that thread ended meanwhile
            continue
        pids += [int(p) for p in text]
    return pids


# faults: Scenario 1: kill -9 of the build child at random points
@pytest.mark.faults
def test_kill9_of_the_build_child_never_leaves_a_wrong_or_partial_engine(site):
    """SIGKILL the build child at random points of several builds (export, build,
    validation): the final path holds either nothing or a complete, current engine
    with its sidecar; the next build succeeds and leaves no temporaries."""
    config = load(site(backend="openvino"))
    target = manager.plan(config, "plate")
    rng = random.Random(1234)
    landed = 0
    for delay in sorted(rng.uniform(0.05, 2.5) for _ in range(5)):
        result: dict[str, manager.Outcome] = {}

        def build(out: dict[str, manager.Outcome] = result) -> None:
            out["o"] = manager.ensure(target, force=True)

        t = threading.Thread(target=build)
        t.start()
        started = time.monotonic()
        while not _children() and t.is_alive():  # the child is running: now wait
            assert time.monotonic() - started < 30, "no build child started"
            time.sleep(0.005)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and t.is_alive():
            time.sleep(0.01)
        killed = _children()
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        t.join(timeout=120)
        assert not t.is_alive()
        if target.engine.exists():  # the one from before: whole, with its sidecar
            assert cache.check(target.engine, target.inputs) == []
        status = result["o"].status
        assert status in ("built", "failed"), status
        if status == "failed":
            assert killed and "killed by signal 9" in result["o"].message
            landed += 1
    assert landed >= 4, f"only {landed} of 5 kills landed on a live build child"
    final = manager.ensure(target)
    assert final.status in ("built", "current")
    assert cache.check(target.engine, target.inputs) == []
    assert list(target.engine.parent.glob(".*.tmp")) == []


def test_two_concurrent_builds_produce_one_build(site):
    path = site()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alprd",
                "build",
                "--models",
                "plate",
                "--config",
                str(path),
                "--log-format",
                "json",
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    events = [e for _, err in results for e in json_events(err)]
    assert len([e for e in events if e["event"] == "engine_build_started"]) == 1
    assert len([e for e in events if e["event"] == "engine_built"]) == 1
    assert len([e for e in events if e["event"] == "engine_build_waiting"]) == 1


# --------------------------------------------------------------------------- bad models


def test_a_garbage_source_fails_with_a_clear_error_and_keeps_the_old_engine(site):
    path = site()
    config = load(path)
    target = manager.plan(config, "vehicle")
    assert manager.ensure(target).status == "built"
    before = target.engine.read_bytes()
    target.request.source.write_bytes(b"this is not a model")
    target = manager.plan(config, "vehicle")
    outcome = manager.ensure(target)
    assert outcome.status == "failed"
    assert "not a loadable ONNX model" in outcome.message
    assert target.engine.read_bytes() == before  # the old engine keeps serving


def test_a_detector_without_the_configured_classes_is_refused(site):
    path = site('[models.vehicle]\nclasses = ["car", "tractor"]\n')
    outcome = manager.ensure(manager.plan(load(path), "vehicle"))
    assert outcome.status == "failed"
    assert "has no class 'tractor' (models.vehicle.classes)" in outcome.message


def test_a_recogniser_given_as_plate_detector_is_refused(site):
    path = site('[models.plate]\nsource = "trained/ocr-alprd-plate.onnx"\n')
    outcome = manager.ensure(manager.plan(load(path), "plate"))
    assert outcome.status == "failed"
    assert outcome.message.endswith(
        "ocr-alprd-plate.onnx: output ('batch', 32, 38) is not a YOLO detection head; "
        "the plate role needs a detector"
    ), outcome.message


def test_build_cli_summary_and_exit_code(site):
    path = site('[models.vehicle]\nclasses = ["tractor"]\n')
    proc = run_alprd("build", "--config", str(path))
    assert proc.returncode == ExitCode.ENGINE
    assert "alprd build: models=vehicle,plate,ocr backend=onnxruntime" in proc.stderr
    assert "build summary" in proc.stderr
    assert "vehicle: failed:" in proc.stderr and "tractor" in proc.stderr
    summary = proc.stderr[proc.stderr.index("build summary") :]
    assert "plate" in summary and "built" in summary and "total" in summary


def test_int8_without_calibration_is_a_clear_error(site):
    path = site(backend="openvino")
    proc = run_alprd("build", "--config", str(path), "--models", "plate", "--precision", "int8")
    assert proc.returncode == ExitCode.ENGINE
    assert "int8 needs calibration images: pass --calibration PATH" in proc.stderr


# --------------------------------------------------------------------------- INT8 and real photos

needs_photos = needs_data(BR_PHOTOS, "real photos")


@needs_photos
def test_fp16_openvino_agrees_with_the_source_on_real_photos(site):
    path = site(f'[engines.validation]\nimages = "{BR_PHOTOS}"\n', backend="openvino")
    outcome = manager.ensure(manager.plan(load(path), "plate"))
    assert outcome.status == "built", outcome.message
    assert outcome.validation is not None
    metrics = outcome.validation.metrics
    assert metrics["source_detections"] >= 10  # real plates were found and compared
    assert metrics["matched_source"] >= 0.9 and metrics["mean_iou"] >= 0.9


# faults: Scenario 4: an INT8 engine that disagrees with its source
@pytest.mark.faults
@needs_photos
def test_int8_openvino_is_validated_honestly(site):
    path = site(backend="openvino")
    plate_fp16 = manager.ensure(manager.plan(load(path), "plate"))
    assert plate_fp16.status == "built"
    before = plate_fp16.engine.read_bytes() if plate_fp16.engine else b""

    proc = run_alprd(
        "build", "--config", str(path), "--models", "plate", "--precision", "int8",
        "--calibration", str(BR_PHOTOS), "--log-format", "json",
    )  # fmt: skip
    events = json_events(proc.stderr)
    done = [e for e in events if e["event"] in ("engine_built", "engine_rejected")]
    assert len(done) == 1
    assert "build summary" in proc.stderr
    # Whatever the verdict, it follows from what was measured on the real photos
    # (detections found, both ways matched against the tolerances), and it matches
    # the exit code and what is installed.
    target = manager.plan(
        load(path), "plate", manager.Overrides(precision="int8", calibration=BR_PHOTOS)
    )
    if done[0]["event"] == "engine_built":
        metrics = cache.read_sidecar(target.engine).validation["metrics"]
    else:
        metrics = done[0]
    assert metrics["source_detections"] > 0  # the gate saw plates, not empty images
    fits = metrics["matched_source"] >= 0.9 and metrics["matched_engine"] >= 0.9
    assert fits == (done[0]["event"] == "engine_built"), metrics
    if done[0]["event"] == "engine_built":
        assert proc.returncode == 0
        assert cache.check(target.engine, target.inputs) == []
    else:
        assert proc.returncode == ExitCode.ENGINE
        assert plate_fp16.engine is not None and plate_fp16.engine.read_bytes() == before

    # A gate with no tolerance at all must reject int8 (it differs from fp32), and the
    # fp16 engine installed before stays.
    strict = site(
        "[engines.validation]\nscore_tol = 0.0001\niou_min = 0.9999\n", backend="openvino"
    )
    target = manager.plan(
        load(strict), "plate", manager.Overrides(precision="int8", calibration=BR_PHOTOS)
    )
    installed = target.engine.read_bytes()
    outcome = manager.ensure(target, force=True)
    assert outcome.status == "rejected"
    assert "validation failed" in outcome.message
    assert target.engine.read_bytes() == installed  # what served before still serves


# faults: Scenario 3: garbage and truncated .pt
@pytest.mark.faults
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_broken_pt_is_refused_with_the_reason(site, damage):
    path = site()
    config = load(path)
    pt = config.models.plate.source
    data = pt.read_bytes()
    pt.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    outcome = manager.ensure(manager.plan(config, "plate"))
    assert outcome.status == "failed"
    assert "not a loadable Ultralytics model" in outcome.message
    assert not list(pt.parent.glob("*.onnxruntime.onnx"))  # nothing installed


# --------------------------------------------------------------------------- non-square input


RO_FRAMES = SHARED_DATA / "plate-boxes-ro" / "images"


@needs_data(RO_FRAMES, "frames")
def test_a_fixed_640_onnx_is_rebuilt_non_square_and_finds_the_same_cars(site):
    """The default vehicle ONNX is fixed at 640x640; asked for [384, 640] (16:9
    cameras: 40% fewer pixels) it is rebuilt from its own weights at that size,
    and finds the same vehicles as the 640x640 engine on real 16:9 dash-cam frames."""
    import cv2

    from alprd.pipeline.detect import Detector

    photos = [cv2.imread(str(p)) for p in sorted(RO_FRAMES.glob("*.jpg"))[:12]]
    results = []
    for extra, size in (("", 640), ("[models.vehicle]\ninput_size = [384, 640]\n", (384, 640))):
        target = manager.plan(load(site(extra)), "vehicle")  # one engine path: built in turn
        outcome = manager.ensure(target)
        assert outcome.status == "built", outcome.message
        engine, _ = manager.load(target)
        detect = Detector(engine, size=size, batch=1, conf=0.4, iou=0.45, max_det=50,
                          keep=[2, 3, 5, 7])  # fmt: skip
        results.append([detect([image])[0] for image in photos])
        engine.close()
    assert target.request.shape.dims() == (1, 3, 384, 640)
    found = both = 0
    for a, b in zip(*results, strict=True):
        for box in a.xyxy[a.confidence > 0.6]:  # the cars the square engine is sure of
            found += 1
            ious = [_iou(box, other) for other in b.xyxy]
            both += bool(ious) and max(ious) > 0.7
    assert found >= 8
    assert both / found >= 0.9, (both, found)


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def test_a_fixed_onnx_that_is_not_an_ultralytics_export_says_what_to_do(site, tmp_path):
    """An ONNX with a fixed input and no Ultralytics metadata cannot be rebuilt at
    another size: the error names the key and the way out."""
    proto = onnx.load(str(tmp_path / "models" / "vehicle-yolov8n-coco.onnx"))
    kept = [p for p in proto.metadata_props if p.key not in ("author", "description")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)  # its classes stay: only its origin is unknown
    onnx.save(proto, str(tmp_path / "models" / "bare.onnx"))
    path = site('[models.vehicle]\nsource = "bare.onnx"\ninput_size = [384, 640]\n')
    outcome = manager.ensure(manager.plan(load(path), "vehicle"))
    assert outcome.status == "failed"
    assert "not an Ultralytics YOLO export" in outcome.message
    assert "input_size" in outcome.message


def test_a_build_cancelled_before_the_child_reads_its_job_is_just_cancelled(
    site, tmp_path, monkeypatch
):
    """Stop during a build (scenario 9) can kill the build child before it has read
    its job: the job's write then meets a closed pipe. That is a cancelled build,
    not a crash of the daemon. (A job larger than the pipe buffer makes the write
    outlast the child for sure.)"""
    target = manager.plan(load(site()), "vehicle")
    job = worker.encode_job(target.request, tmp_path / "out")
    monkeypatch.setattr(worker, "encode_job", lambda *_: job + " " * 4_000_000)
    result = child.run(
        target.request, target.engine, tmp_path / "out", timeout_s=60, cancel=lambda: True
    )
    assert result.cancelled


@needs_photos
def test_a_camera_sample_that_cannot_be_read_is_skipped_not_held_against_the_model(site, tmp_path):
    """Validation on recent camera frames: one of them cut short (a full disk) is
    skipped and said; the model is judged on the others and built."""
    path = site(backend="openvino")
    cut = tmp_path / "cam0-6.jpg"
    cut.write_bytes(b"")
    photos = tuple(sorted(BR_PHOTOS.glob("*.jpg"))[:3])
    target = manager.plan(load(path), "plate", manager.Overrides(validation=(*photos, cut)))
    outcome = manager.ensure(target)
    assert outcome.status == "built", outcome.message
    assert outcome.validation is not None
    assert outcome.validation.metrics["source_detections"] > 0  # judged on the photos
