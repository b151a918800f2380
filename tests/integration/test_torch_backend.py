"""The torch backend on the CPU build of torch: real builds through the engine
cache, real detections compared with ONNX Runtime on real frames. Its CUDA path
(fp16, CUDA graphs, pinned buffers, letterbox on the GPU) needs a GPU: it is
exercised and measured on an NVIDIA H100 by `make bench-gpu` (BENCHMARKS.md),
not in CI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, copy_models, needs_data

from alprd import config as cfgmod
from alprd.engines import manager
from alprd.engines.base import is_device

pytest.importorskip("ultralytics")
RO_FRAMES = SHARED_DATA / "plate-boxes-ro" / "images"
OCR_CROPS = SHARED_DATA / "ocr-train"


@pytest.fixture
def site(tmp_path: Path):
    copy_models(tmp_path / "models")

    def write(backend: str, extra: str = "") -> cfgmod.Config:
        path = tmp_path / f"{backend}.toml"
        path.write_text(f'[paths]\nroot = "."\n[engines]\nbackend = "{backend}"\n{extra}')
        return cfgmod.load(path)

    return write


def detector(config: cfgmod.Config, role: str):
    from alprd.pipeline.detect import Detector

    target = manager.plan(config, role)  # type: ignore[arg-type]
    outcome = manager.ensure(target)
    assert outcome.status in ("built", "current"), outcome.message
    engine, _ = manager.load(target)
    rc = getattr(config.models, role)
    keep = [2, 3, 5, 7] if role == "vehicle" else None
    return engine, Detector(engine, size=rc.input_hw, batch=target.request.shape.batch,
                            conf=0.3, iou=0.45, max_det=50, keep=keep)  # fmt: skip


@needs_data(RO_FRAMES, "frames")
@pytest.mark.parametrize("role", ["vehicle", "plate"])
def test_torch_engines_find_what_onnxruntime_finds(site, role: str) -> None:
    frames = [cv2.imread(str(p)) for p in sorted(RO_FRAMES.glob("*.jpg"))[:6]]
    extra = "[models.vehicle]\ninput_size = [384, 640]\n"
    torch_engine, ours = detector(site("torch", extra), role)
    assert torch_engine.backend == "torch"
    assert is_device(torch_engine) and ours.on_device  # letterbox in torch, not cv2
    ort_engine, theirs = detector(site("onnxruntime", extra), role)
    assert not is_device(ort_engine) and not theirs.on_device
    matched = total = 0
    for frame in frames:
        a, b = ours([frame])[0], theirs([frame])[0]
        for box, conf in zip(b.xyxy, b.confidence, strict=True):
            if conf < 0.5:
                continue
            total += 1
            if len(a):
                iou = _ious(box, a.xyxy).max()
                matched += iou > 0.9
    assert total >= 3
    assert matched / total >= 0.9, (matched, total)
    torch_engine.close()
    ort_engine.close()


def test_the_torch_backend_refuses_a_recogniser_it_cannot_rebuild_with_the_way_out(
    site,
) -> None:
    copy_models(
        Path(site("torch").paths.models_dir), ("ocr-ppocrv5-rec.onnx", "ocr-ppocrv5-dict.txt")
    )
    config = site("torch", '[models.ocr]\nsource = "ocr-ppocrv5-rec.onnx"\n'
                  'dictionary = "ocr-ppocrv5-dict.txt"\ninput_height = 48\n')  # fmt: skip
    outcome = manager.ensure(manager.plan(config, "ocr"))
    assert outcome.status == "failed"
    assert "not an alprd plate recogniser" in outcome.message
    assert "models.ocr.backend" in outcome.message


@needs_data(OCR_CROPS, "crops")
def test_alprds_recogniser_on_torch_reads_what_onnxruntime_reads(site) -> None:
    """The trained recogniser rebuilt as a torch module (BN folded, as in its ONNX)
    through a real build (validated against the ONNX like every engine): the same
    probabilities and the same texts as ONNX Runtime on real plate crops."""
    from alprd.pipeline import ocr

    engines = {}
    for backend in ("torch", "onnxruntime"):
        target = manager.plan(site(backend), "ocr")
        outcome = manager.ensure(target)
        assert outcome.status in ("built", "current"), outcome.message
        engines[backend] = manager.load(target)[0]
        batch = target.request.shape.batch
    assert engines["torch"].backend == "torch"
    images = sorted(OCR_CROPS.rglob("*.jpg"))[:batch]
    x = ocr.batch([ocr.crop(cv2.imread(str(p)), (0, 0, 10**4, 10**4), margin=0.0, trim_y=0.0,
                            stretch=1.0, height=32, max_width=128, width=128)
                   for p in images], fixed=True)  # fmt: skip
    ours, theirs = engines["torch"].run(x)[0], engines["onnxruntime"].run(x)[0]
    assert ours.shape == theirs.shape == (len(images), 32, 38)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()
    for engine in engines.values():
        engine.close()


def run_frames(engine, frames, height, width, **kw):
    """`launch_frames`, its candidates collected."""
    found, boxes = engine.launch_frames(frames, height, width, **kw)
    return found.result(), boxes


def test_a_torch_engine_batches_and_matches_single_runs(site) -> None:
    engine, _ = detector(site("torch", "[models.vehicle]\nbatch_size = 3\n"), "vehicle")
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (360, 640, 3), np.uint8) for _ in range(3)]
    batched, boxes = run_frames(engine, frames, 640, 640)  # min_score 0: every anchor
    assert len(boxes) == 3 and len(batched) == 3 * 8400
    for i, frame in enumerate(frames):
        single, _ = run_frames(engine, [frame], 640, 640)
        mine = batched.take(np.flatnonzero(batched.image == i))
        np.testing.assert_array_equal(single.image, 0)
        np.testing.assert_allclose(mine.xyxy, single.xyxy, rtol=1e-3, atol=1e-2)
        np.testing.assert_allclose(mine.confidence, single.confidence, rtol=1e-3, atol=1e-3)
    engine.close()


@needs_data(RO_FRAMES, "frames")
def test_the_score_filter_on_the_device_keeps_exactly_what_decoding_keeps(site) -> None:
    """launch_frames(min_score=...) sends back only the anchors decoding would keep
    (the filter runs on the device): the detections are the same as from the
    whole output."""
    from alprd import ops

    engine, _ = detector(site("torch"), "vehicle")
    frames = [cv2.imread(str(p)) for p in sorted(RO_FRAMES.glob("*.jpg"))[:3]]
    whole, _ = run_frames(engine, frames, 640, 640)
    picked, _ = run_frames(engine, frames, 640, 640, min_score=0.25)
    assert len(picked) < len(whole) / 50
    on_host = whole.take(np.flatnonzero(whole.confidence >= 0.25))
    np.testing.assert_array_equal(picked.image, on_host.image)
    np.testing.assert_array_equal(picked.class_id, on_host.class_id)
    kept = [ops.suppress(c, 0.45).split(3) for c in (on_host, picked)]
    for a, b in zip(*kept, strict=True):
        assert len(a) >= 1
        np.testing.assert_array_equal(a.class_id, b.class_id)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-4)
    cars, _ = run_frames(engine, frames, 640, 640, min_score=0.25, keep=[2])  # class filter
    assert len(cars) > 0
    absent = min(set(range(80)) - set(picked.class_id.tolist()))
    assert len(run_frames(engine, frames, 640, 640, min_score=0.25, keep=[absent])[0]) == 0
    np.testing.assert_array_equal(cars.class_id, 2)
    np.testing.assert_array_equal(cars.xyxy, picked.take(np.flatnonzero(picked.class_id == 2)).xyxy)
    engine.close()


@needs_data(RO_FRAMES, "frames")
def test_regions_sampled_on_the_device_find_what_their_crops_find(site) -> None:
    """Plate search on vehicle regions sampled from the frames already uploaded
    (one grid_sample per frame shape, the GPU path's crops) gives the detections
    of the same crops cut on the host and letterboxed one by one."""
    engine, plates = detector(site("torch", "[models.plate]\nbatch_size = 4\n"), "plate")
    frames = [cv2.imread(str(p)) for p in sorted(RO_FRAMES.glob("*.jpg"))[:3]]
    frames.append(cv2.resize(frames[0], (640, 360)))  # a second frame shape
    regions = []
    for i, f in enumerate(frames):
        h, w = f.shape[:2]
        regions += [(i, 0, h // 3, w // 2, h), (i, w // 3, h // 2, w, h - 1),
                    (i, w // 4, h // 4, 3 * w // 4, 3 * h // 4)]  # fmt: skip
    sampled = plates.regions(engine.upload(frames), regions)
    cut = plates([frames[i][y1:y2, x1:x2] for i, x1, y1, x2, y2 in regions])
    assert sum(len(d) for d in cut) >= 3
    for a, b in zip(sampled, cut, strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1.0)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=0.02)
    engine.close()


@needs_data(RO_FRAMES, "frames")
def test_plate_crops_sampled_on_the_device_are_the_host_crops(site) -> None:
    """The recogniser's crops sampled from the frames already uploaded (bicubic
    grid_sample, two-line cuts unfolded, uint8 levels) are the crops `ocr.crop`
    cuts and resizes with OpenCV on the host: one-line, two-line, at the frame's
    edge, empty."""
    from alprd.pipeline import ocr

    config = site("torch")
    target = manager.plan(config, "ocr")
    assert manager.ensure(target).status in ("built", "current")
    engine, _ = manager.load(target)
    frames = [cv2.imread(str(p)) for p in sorted(RO_FRAMES.glob("*.jpg"))[:2]]
    frames.append(cv2.resize(frames[0], (640, 360)))  # a second frame shape
    boxes = [(0, (300.0, 200.0, 420.0, 230.0)), (1, (50.5, 80.2, 92.7, 118.9)),  # two lines
             (2, (600.0, 340.0, 700.0, 370.0)), (2, (10.0, 10.0, 100.0, 60.0)),
             (0, (5000.0, 10.0, 5100.0, 40.0))]  # fmt: skip  # edge; empty
    o = config.models.ocr
    kw = {"margin": o.crop_margin, "trim_y": o.crop_trim, "two_line_aspect": 1.3}
    cuts = [(i, ocr.cut(frames[i].shape[:2], box, **kw)) for i, box in boxes]
    assert [c[4] for _, c in cuts] == [False, True, False, False, False]
    ours = engine.cut_batch(engine.upload(frames), cuts, 32, 128).numpy()
    host = ocr.batch([ocr.crop(frames[i], box, stretch=1.0, height=32, max_width=128, width=128,
                               **kw) for i, box in boxes], fixed=True)  # fmt: skip
    levels = np.abs(ours - host) * 127.5  # in uint8 levels
    assert ours.shape == host.shape == (5, 3, 32, 128)
    assert levels.mean() < 0.1 and levels.max() <= 4.01, (levels.mean(), levels.max())
    np.testing.assert_array_equal(ours[4], 0.0)
    engine.close()


@needs_data(RO_FRAMES, "frames")
def test_all_stages_on_torch_read_what_onnxruntime_reads(site) -> None:
    """The whole recogniser on the torch backend (frames uploaded once, vehicles,
    plates sampled from the frames there, OCR), several frames in one batch: the
    plates and texts ONNX Runtime gives on the same frames; and on both, the same
    frames as device frames give the same."""
    import torch

    from alprd.pipeline.nvdec import TorchImage
    from alprd.pipeline.recognizer import Recognizer

    frames = [cv2.imread(str(p)) for p in sorted(RO_FRAMES.glob("*.jpg"))[:8]]
    extra = "[models.vehicle]\ninput_size = [384, 640]\nbatch_size = 4\n"
    results = {}
    for backend in ("torch", "onnxruntime"):
        recognizer = Recognizer.load(site(backend, extra))
        results[backend] = [
            sorted(t.text for _, t in r.plates if t.text) for r in recognizer.many(frames)
        ]
        if backend == "torch":
            assert recognizer.upload(frames) is not None  # the GPU path's shape, on CPU torch
            assert {e.backend for e in recognizer.engines.values()} == {"torch"}
        # frames decoded on the device (an NVDEC camera's) read as the host frames:
        # taken as they are by torch, downloaded once for ONNX Runtime
        on_device = [TorchImage(torch.from_numpy(f.copy())) for f in frames]
        assert [sorted(t.text for _, t in r.plates if t.text)
                for r in recognizer.many(on_device)] == results[backend]  # fmt: skip
        recognizer.close()
    ours, theirs = results["torch"], results["onnxruntime"]
    assert sum(map(len, theirs)) >= 4
    same = sum(len(set(a) & set(b)) for a, b in zip(ours, theirs, strict=True))
    assert same >= 0.9 * sum(map(len, theirs)), (ours, theirs)


def _ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)
