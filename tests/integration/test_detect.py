"""`alprd detect` end to end: real engines (built on first use), real files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, needs_data, run_alprd

from alprd.exitcodes import ExitCode

VIDEOS = SHARED_DATA / "videos"
BR = SHARED_DATA / "plates-br"


def needs(path):
    return needs_data(path)


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@needs(VIDEOS / "rear-nl-L417VS.mp4")
@pytest.mark.parametrize(
    ("name", "plate", "region"),
    [("rear-nl-L417VS.mp4", "L417VS", "nl"), ("dashcam-in-KA22P3368.mp4", "KA22P3368", "in")],
)
def test_one_event_per_video(name, plate, region):
    """From the checkout, with no flags but --json: one event, the right plate, and
    the format it fits named (the default config allows every region)."""
    proc = run_alprd("detect", "--json", str(VIDEOS / name))
    assert proc.returncode == 0, proc.stderr
    events = lines(proc.stdout)
    assert [e["plate"] for e in events] == [plate]
    e = events[0]
    assert e["reads"] >= 10 and e["confidence"] > 0.8
    assert e["last_frame"] > e["first_frame"] and e["last_time"] > e["first_time"]
    assert len(e["plate_box"]) == 4 and e["vehicle_class"] in ("car", "truck", "bus")
    assert region in e["format"].split("/")


@needs(BR / "AYO9034.jpg")
def test_image_lines_and_annotated_output(tmp_path):
    proc = run_alprd(
        "detect", "--json", "--region", "br", "--save", str(tmp_path), str(BR / "AYO9034.jpg")
    )
    assert proc.returncode == 0, proc.stderr
    [hit] = [r for r in lines(proc.stdout) if r["plate"] == "AYO9034"]
    assert set(hit) == {
        "source", "frame", "plate", "confidence", "plate_box", "vehicle_box",
        "vehicle_class", "known_label", "format",
    }  # fmt: skip
    assert hit["frame"] == 0 and hit["source"].endswith("AYO9034.jpg") and hit["format"] == "br"
    x1, y1, x2, _ = hit["plate_box"]
    assert 480 < x1 < 580 and 380 < y1 < 440 and x2 - x1 > 100  # ground truth: 528, 412, 162 wide
    saved = cv2.imread(str(tmp_path / "AYO9034.jpg"))
    assert saved is not None and saved.shape == cv2.imread(str(BR / "AYO9034.jpg")).shape


def test_bad_inputs_are_reported_and_the_others_still_run(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    unreadable = tmp_path / "unreadable.jpg"
    unreadable.write_bytes(b"not an image")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    proc = run_alprd(
        "detect", "--json", str(corrupt), str(unreadable), str(tmp_path / "missing.mp4"), str(blank)
    )
    assert proc.returncode == ExitCode.FAILURE
    assert "Traceback" not in proc.stderr
    for name, why in [
        ("corrupt.mp4", "cannot decode"),
        ("unreadable.jpg", "not a readable image"),
        ("missing.mp4", "no such file"),
    ]:
        assert name in proc.stderr and why in proc.stderr
    assert proc.stdout == ""  # the blank image was read and holds no plate


def test_an_unknown_region_is_a_usage_error(tmp_path):
    proc = run_alprd("detect", "--region", "atlantis", str(tmp_path))
    assert proc.returncode == ExitCode.USAGE and "atlantis" in proc.stderr


@needs(VIDEOS / "rear-nl-L417VS.mp4")
def test_per_track_skipping_reads_a_decided_plate_only_now_and_then():
    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.source import iter_file
    from alprd.pipeline.stream import CameraPipeline

    config = cfgmod.load(cfgmod.find_config().path)
    recognizer = Recognizer.load(config)
    pipe = CameraPipeline("rear", recognizer, config, early=False, motion=False)
    events = []
    for frame in iter_file(str(VIDEOS / "rear-nl-L417VS.mp4"), "rear"):
        events += pipe.process(frame)
    events += pipe.finish()
    recognizer.close()
    assert [e.plate for e in events] == ["L417VS"]
    t = config.tracking
    assert pipe.skipped > pipe.frames / 2  # most frames no longer search the decided car
    assert pipe.reads >= t.decided_after + (pipe.frames - 20) // t.recheck_every - 5  # rechecks
    assert pipe.reads < pipe.frames / 2


@needs(BR)
def test_frames_of_several_cameras_batched_read_the_same_as_one_by_one():
    """`Recognizer.many` (each stage batched across cameras, as the GPU mode runs)
    gives exactly what running the frames one at a time gives."""
    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Recognizer

    config = cfgmod.load(cfgmod.find_config().path)
    recognizer = Recognizer.load(config)
    images = [cv2.imread(str(p)) for p in sorted(BR.glob("*.jpg"))[:5]]
    together = recognizer.many(images)
    alone = [recognizer(image) for image in images]
    recognizer.close()
    assert sum(len(r.plates) for r in alone) >= 4
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose([v.box for v in a.vehicles], [v.box for v in b.vehicles],
                                   atol=0.5)  # fmt: skip
        assert [t.text for _, t in a.plates] == [t.text for _, t in b.plates]
        np.testing.assert_allclose([p.box for p, _ in a.plates], [p.box for p, _ in b.plates],
                                   atol=0.5)  # fmt: skip


@needs(BR)
def test_frames_without_vehicles_are_searched_whole_in_the_same_batch():
    """A frame whose vehicles gave nothing to search has its whole frame searched
    with the other frames' vehicle regions (one plate batch); a frame whose
    vehicles were searched without a plate is searched whole afterwards. Both find
    what searching each frame whole on its own finds."""
    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Recognizer

    config = cfgmod.load(cfgmod.find_config().path)
    recognizer = Recognizer.load(config)
    images = [cv2.imread(str(p)) for p in sorted(BR.glob("*.jpg"))[:4]]
    vehicles = recognizer.vehicles_many(images)
    assert all(vehicles)
    # frame 0: no vehicle; frame 1: a vehicle region with no plate in it (a corner)
    corner = type(vehicles[1][0])((0.0, 0.0, 40.0, 40.0), 0.9, "car")
    given = [[], [corner], *vehicles[2:]]
    calls = []
    original = recognizer.plate.launch_regions

    def counting(source, regions):
        calls.append(len(regions))
        return original(source, regions)

    recognizer.plate.launch_regions = counting
    found = recognizer.plates_many(images, given, fallback=[True] * 4)
    whole = [recognizer.plate([img])[0] for img in images[:2]]
    recognizer.close()
    assert calls == [1 + 1 + len(vehicles[2]) + len(vehicles[3])]  # one batch of regions
    for i in (0, 1):
        assert len(found[i]) == len(whole[i]) >= 1
        np.testing.assert_allclose([p.box for p in found[i]], whole[i].xyxy, atol=0.5)
    assert found[0][0].vehicle is None and found[1][0].vehicle is None


@needs(BR)
def test_a_parked_car_in_a_still_scene_is_one_event_and_most_frames_are_gated():
    """A camera watching a parked car (the same picture for 12 s at 5 fps): motion
    gating skips the still frames, the car's track is held across them, so the
    pass stays one event; without gating every frame is searched."""
    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.stream import CameraPipeline
    from alprd.pipeline.types import Frame

    config = cfgmod.load(cfgmod.find_config().path)
    recognizer = Recognizer.load(config)
    photo = sorted(BR.glob("*.jpg"))[0]
    image = cv2.imread(str(photo))
    runs = {}
    for motion in (True, False):
        pipe = CameraPipeline("gate", recognizer, config, regions=["br"], motion=motion)
        events = []
        for i in range(60):
            events += pipe.process(Frame("gate", i, i / 5, image.copy()))
        events += pipe.finish()
        runs[motion] = (pipe, [e.plate for e in events])
    recognizer.close()
    gated, plates = runs[True]
    assert len(plates) == 1, plates
    assert plates == runs[False][1]
    assert gated.gated >= 50  # searched every max_skip_s (2 s) only
    assert runs[False][0].gated == 0


@needs(VIDEOS / "rear-nl-L417VS.mp4")
def test_two_cameras_batched_by_the_daemon_loop_give_what_each_gives_alone():
    """`process_many` (the daemon's loop: one frame of each camera, stages batched
    across cameras) gives each camera the events and reads it gets alone."""
    from alprd import config as cfgmod
    from alprd.pipeline.lanes import Lanes
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.source import iter_file
    from alprd.pipeline.stream import Batch, CameraPipeline, process_many

    config = cfgmod.load(cfgmod.find_config().path)
    recognizer = Recognizer.load(config)
    names = ["rear-nl-L417VS.mp4", "dashcam-in-KA22P3368.mp4"]
    clips = [list(iter_file(str(VIDEOS / n), n)) for n in names]
    alone = []
    for clip in clips:
        pipe = CameraPipeline("cam", recognizer, config)
        events = [e.plate for f in clip for e in pipe.process(f)] + [e.plate for e in pipe.finish()]
        alone.append((events, pipe.reads, pipe.gated))
    pipes = [CameraPipeline("cam", recognizer, config) for _ in clips]
    together: list[list[str]] = [[], []]
    for step in range(max(len(c) for c in clips)):
        items = [(p, c[step]) for p, c in zip(pipes, clips, strict=True) if step < len(c)]
        owners = [i for i, c in enumerate(clips) if step < len(c)]
        for i, events in zip(owners, process_many(recognizer, items), strict=True):
            together[i] += [e.plate for e in events]
    for i, pipe in enumerate(pipes):
        together[i] += [e.plate for e in pipe.finish()]
    # Two batches in flight (`Lanes`, as the daemon on a GPU): frame k + 1's vehicles
    # are tracked before frame k's reads are voted on, and a batch's results come
    # back in order: still what each camera gives alone.
    lanes: Lanes[list] = Lanes(recognizer, 2)
    piped = [CameraPipeline("cam", recognizer, config) for _ in clips]
    overlapped: list[list[str]] = [[], []]
    in_flight = 0

    def collect(done):
        for (batch, owners), results in done:
            for i, events in zip(owners, batch.finish(results), strict=True):
                overlapped[i] += [e.plate for e in events]

    for step in range(max(len(c) for c in clips)):
        items = [(p, c[step]) for p, c in zip(piped, clips, strict=True) if step < len(c)]
        owners = [i for i, c in enumerate(clips) if step < len(c)]
        while not lanes.free:
            collect(lanes.step())
        batch = Batch.begin(recognizer, items)
        if batch.steps is not None:
            lanes.submit(batch.steps, (batch, owners))
            in_flight = max(in_flight, lanes.submitted - lanes.released)
    collect(lanes.drain())
    for i, pipe in enumerate(piped):
        overlapped[i] += [e.plate for e in pipe.finish()]
    recognizer.close()
    assert in_flight >= 2  # (a finished batch waits for an older one to be handed back)
    assert [a[0] for a in alone] == together == overlapped == [["L417VS"], ["KA22P3368"]]
    assert [(p.reads, p.gated) for p in pipes] == [(a[1], a[2]) for a in alone]
    # a pass is known decided one batch later (its last reads are still in flight):
    # at most a read or two more, never fewer
    for p, a in zip(piped, alone, strict=True):
        assert p.gated == a[2] and a[1] <= p.reads <= a[1] + 2, (p.reads, a[1])
