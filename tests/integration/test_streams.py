"""CPU engines running several inferences at once (`engines.streams`): real
OpenVINO and ONNX Runtime engines built through the cache, real threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_models

from alprd import config as cfgmod
from alprd.engines import manager
from alprd.engines.backends._cpu import cpu_threads


def _config(tmp_path: Path, text: str) -> cfgmod.Config:
    path = tmp_path / "alprd.toml"
    path.write_text(f'[paths]\nroot = "."\n{text}')
    return cfgmod.load(path)


def _cameras(n: int) -> str:
    return "".join(f'[[cameras]]\nname = "c{i}"\nurl = "/dev/null{i}.mp4"\n' for i in range(n))


def test_auto_streams_follow_the_cameras_up_to_the_cores_where_that_pays(
    tmp_path: Path,
) -> None:
    ort = "onnxruntime"
    assert manager.cpu_streams(_config(tmp_path, ""), ort) == 1
    assert manager.cpu_streams(_config(tmp_path, _cameras(1)), ort) == 1
    assert manager.cpu_streams(_config(tmp_path, _cameras(3)), ort) == min(3, cpu_threads())
    assert manager.cpu_streams(_config(tmp_path, _cameras(200)), ort) == cpu_threads()
    # OpenVINO's one stream already uses every core (measured: 2 streams slower)
    assert manager.cpu_streams(_config(tmp_path, _cameras(3)), "openvino") == 1
    fixed = _config(tmp_path, "[engines]\nstreams = 3\n" + _cameras(1))
    assert manager.cpu_streams(fixed, "openvino") == manager.cpu_streams(fixed, ort) == 3
    with pytest.raises(cfgmod.ConfigError, match="streams"):
        _config(tmp_path, "[engines]\nstreams = 0\n")


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("role", ["vehicle", "ocr"])
def test_inferences_at_once_give_what_one_after_another_gives(
    tmp_path: Path, backend: str, role: str
) -> None:
    copy_models(tmp_path / "models")
    config = _config(tmp_path, f'[engines]\nbackend = "{backend}"\nstreams = 2\n')
    target = manager.plan(config, role)  # type: ignore[arg-type]
    assert target.request.streams == 2
    outcome = manager.ensure(target)
    assert outcome.status in ("built", "current"), outcome.message
    engine, _ = manager.load(target)
    assert engine.streams == 2
    shape = target.request.shape.dims()
    rng = np.random.default_rng(7)
    batches = [rng.random(shape, dtype=np.float32) for _ in range(5)]
    together = engine.run_many(batches)
    assert len(together) == 5
    for batch, outputs in zip(batches, together, strict=True):
        alone = engine.run(batch)
        assert len(outputs) == len(alone)
        for a, b in zip(outputs, alone, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # and each result is its own batch's, not a neighbour's
    assert not np.allclose(together[0][0], together[1][0])
    assert_at_once(engine, batches)
    engine.close()


def assert_at_once(engine, batches) -> None:
    """Two inferences really are in flight together."""
    if engine.backend == "onnxruntime":
        # each run waits for the other to have started too: one after another,
        # they would never meet and the barrier would break after its timeout
        meet = threading.Barrier(2, timeout=30)
        run = engine.run

        def run_meeting(batch):
            meet.wait()
            return run(batch)

        engine.run = run_meeting
        try:
            assert len(engine.run_many(batches[:2])) == 2
        finally:
            engine.run = run
    else:  # OpenVINO runs them in its own threads, one per compiled stream
        assert engine._compiled.get_property("NUM_STREAMS") == 2
        assert len(engine._queue) == 2
