"""The plate recogniser: crop preparation shared by training and serving, the data
split, the config keys, and a real (tiny) CPU training run whose ONNX goes through
the engine cache and the pipeline's read path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from conftest import REPO, SHARED_DATA, needs_data

from alprd import config as cfgmod
from alprd.pipeline import ocr
from alprd.pipeline.types import Plate

OCR_TRAIN = SHARED_DATA / "ocr-train"
TRAINED_ONNX = REPO / "models" / "trained" / "ocr-alprd-plate.onnx"
needs_ocr_data = needs_data(OCR_TRAIN / "labels.csv", "OCR training data")


# --------------------------------------------------------------------------- crops


def two_tone(h: int, w: int) -> np.ndarray:
    """Top half red, bottom half blue."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (0, 0, 255)
    img[h // 2 :] = (255, 0, 0)
    return img


@pytest.mark.parametrize(
    ("h", "w", "aspect", "unfolded"),
    [
        (40, 40, 1.3, True),  # square two-line plate: read side by side
        (40, 48, 1.3, True),
        (40, 52, 1.3, False),  # 1.3 exactly: one line
        (40, 120, 1.3, False),  # one-line plate
        (40, 40, 0.0, False),  # off
    ],
)
def test_unfold_lines(h, w, aspect, unfolded):
    out = ocr.unfold_lines(two_tone(h, w), aspect)
    if not unfolded:
        assert out.shape == (h, w, 3)
        return
    assert out.shape == (h // 2, 2 * w, 3)
    assert (out[:, :w] == (0, 0, 255)).all()  # the top line first
    assert (out[:, w:] == (255, 0, 0)).all()  # then the bottom line


def test_an_odd_height_loses_at_most_one_row():
    out = ocr.unfold_lines(two_tone(41, 30), 1.3)
    assert out.shape == (20, 60, 3)


def test_fixed_width_crop_has_exactly_the_input_size():
    frame = np.full((300, 400, 3), 200, np.uint8)
    for box in [(10, 10, 200, 60), (10, 10, 60, 60), (100, 100, 110, 240)]:
        x = ocr.crop(
            frame, box, margin=0.0, trim_y=0.0, stretch=1.5, height=32, max_width=480,
            width=128, two_line_aspect=1.3,
        )  # fmt: skip
        assert x.shape == (3, 32, 128) and x.dtype == np.float32
        assert np.allclose(x, 200 / 127.5 - 1, atol=1e-4)
    stacked = ocr.batch([x, x], fixed=True)
    assert stacked.shape == (2, 3, 32, 128)  # no padding to WIDTH_STEP


def test_a_square_crop_is_unfolded_before_the_resize():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[20:40, 20:60] = (0, 0, 255)
    frame[40:60, 20:60] = (255, 0, 0)
    x = ocr.crop(
        frame, (20, 20, 60, 60), margin=0.0, trim_y=0.0, stretch=1.0, height=32,
        max_width=480, width=128, two_line_aspect=1.3,
    )  # fmt: skip
    assert x[2, :, :60].mean() > 0.9 and x[0, :, :60].mean() < -0.9  # left: top (red)
    assert x[0, :, 68:].mean() > 0.9 and x[2, :, 68:].mean() < -0.9  # right: bottom (blue)


# --------------------------------------------------------------------------- config


def test_new_ocr_keys_defaults_and_bounds(tmp_path):
    c = cfgmod.parse("", tmp_path / "a.toml")
    assert c.models.ocr.input_width == 128 and c.models.ocr.two_line_aspect == 1.3  # alprd's
    c = cfgmod.parse("[models.ocr]\ninput_width = 128\ntwo_line_aspect = 0\n", tmp_path / "a.toml")
    assert c.models.ocr.input_width == 128 and c.models.ocr.two_line_aspect == 0
    with pytest.raises(cfgmod.ConfigError) as info:
        cfgmod.parse("[models.ocr]\ninput_width = 8\ntwo_line_aspect = -1\n", tmp_path / "a.toml")
    keys = sorted(p.key for p in info.value.problems)
    assert keys == ["models.ocr.input_width", "models.ocr.two_line_aspect"]


# --------------------------------------------------------------------------- data


def test_the_split_is_by_plate_text_and_stable():
    from alprd.train.labels import Label, is_validation, split_rows

    plates = [f"AB{i:05d}" for i in range(2000)]
    rows = [Label(Path(f"{p}-{k}.jpg"), p, "camera") for p in plates for k in range(3)]
    rows += [Label(Path(f"r{p}.png"), p, "synthetic") for p in plates[:500]]
    train, val, rendered = split_rows(rows, 0.2)
    train_plates, val_plates = {r[1] for r in train}, {r[1] for r in val}
    assert not train_plates & val_plates
    assert not {r[1] for r in rendered} & val_plates
    assert len(train) + len(val) == 6000
    assert 0.17 < len(val_plates) / 2000 < 0.23
    assert is_validation("abc-1234") == is_validation("ABC1234")  # compared cleaned


@needs_ocr_data
def test_the_real_crops_split_shares_no_plate():
    from alprd.train.labels import read_labels, split_rows

    train, val, rendered = split_rows(read_labels(OCR_TRAIN), 0.2)
    assert train and val
    assert not {r[1] for r in train} & {r[1] for r in val}
    assert not {r[1] for r in rendered} & {r[1] for r in val}
    assert not {r[0] for r in train} & {r[0] for r in val}


def test_the_label_audit_corrects_rows_it_names_and_moves_them_across_the_split(
    tmp_path, monkeypatch
):
    """A correction applies to the row it names when that row still has the label
    the audit saw; the corrected text decides the split (one plate, one side)."""
    from alprd.train.data import load
    from alprd.train.labels import read_labels

    data = tmp_path / "ocr-train"
    (data / "img").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        cv2.imwrite(str(data / "img" / name), two_tone(20, 60))
    (data / "labels.csv").write_text(
        "file,plate,kind\nimg/a.png,AEA9316,camera\nimg/b.png,AFA9316,camera\n"
        "img/c.png,ZZZ0000,camera\nimg/d.png,OKM2371,camera\nimg/e.png,AAA1111,camera\n"
    )
    audit = tmp_path / "audit.csv"
    audit.write_text(
        "dataset,file,labelled,corrected,why\n"
        "ocr-train,img/b.png,AFA9316,AEA9316,reads AEA9316\n"
        "ocr-train,img/c.png,ZZZ0001,ZZZ0002,another label than this row's: not applied\n"
        "plates-br,img/a.png,AEA9316,XXX0000,another dataset\n"
        "ocr-train,img/d.png,OKM2371,?,O or Q: the image cannot decide\n"
        "ocr-train,img/e.png,AAA1111,-,no plate in the crop\n"
    )
    monkeypatch.setattr("alprd.train.labels.AUDIT", audit)
    assert [r.plate for r in read_labels(data)] == ["AEA9316", "AEA9316", "ZZZ0000", "OKM2371"]
    assert [r.sure for r in read_labels(data)] == [True, True, True, False]  # undecided
    assert [r.plate for r in read_labels(data, audited=False)] == [
        "AEA9316", "AFA9316", "ZZZ0000", "OKM2371", "AAA1111"]  # fmt: skip
    recipe = load(data, 0.5)
    assert recipe.audited == 3  # corrected, undecided, left out
    sides = [{i.text for i in recipe.train}, {i.text for i in recipe.validation}]
    assert sum("AEA9316" in side for side in sides) == 1  # both crops on one side


def test_every_region_s_labels_are_read_and_split_alike(tmp_path):
    """labels.csv (Brazil), labels-us.csv and labels-eu.csv are read when present:
    kinds per region, two-line plates from the note, ``skip`` rows left out and
    ``unsure`` ones trained on but never scored."""
    from alprd.train.data import load
    from alprd.train.labels import is_validation, read_labels, region_of

    data = tmp_path / "ocr-train"
    (data / "img").mkdir(parents=True)
    plates = [f"AB{i:03d}CD" for i in range(60)]
    for p in plates:
        cv2.imwrite(str(data / "img" / f"{p}.png"), two_tone(20, 60))
    (data / "labels.csv").write_text(
        "file,plate,kind\n" + "".join(f"img/{p}.png,{p},camera_CC\n" for p in plates[:20])
    )
    (data / "labels-us.csv").write_text(
        "file,plate,kind\n" + "".join(f"img/{p}.png,{p},us_ca\n" for p in plates[20:40])
    )
    eu = ["file,plate,country,quality,note"]
    for k, p in enumerate(plates[40:]):
        quality = "skip" if k == 0 else "unsure" if k % 2 else "ok"
        eu.append(f"img/{p}.png,{p},{'D' if k % 3 else ''},{quality},"
                  f"{'two-line' if k % 4 == 0 else ''}")  # fmt: skip
    (data / "labels-eu.csv").write_text("\n".join(eu) + "\n")
    rows = read_labels(data)
    assert len(rows) == 59  # the skip row is left out
    assert {region_of(r.kind) for r in rows} == {"br", "us", "eu"}
    assert {r.kind for r in rows if region_of(r.kind) == "eu"} == {"eu", "eu_d"}
    assert {r.lines for r in rows if r.plate in plates[44:60:4]} == {2}
    assert {r.lines for r in rows if region_of(r.kind) != "eu"} == {1}
    recipe = load(data, 0.5)
    scored = {i.text for i in recipe.validation}
    unsure = {r.plate for r in rows if not r.sure}
    assert scored and not scored & unsure  # a guessed label is never scored
    assert {i.text for i in recipe.train} & unsure  # but trained on
    assert all(is_validation(t, 0.5) for t in scored)
    assert all(not is_validation(i.text, 0.5) for i in recipe.train)
    counts = recipe.counts()
    assert set(counts["real_train_per_region"]) <= {"br", "us", "eu"}
    assert counts["two_line_train"] == sum(i.lines == 2 for i in recipe.train)


def test_samples_show_each_plate_in_its_view_and_some_in_the_wrong_one():
    """A two-line plate is unfolded (top line, then bottom line) and a one-line plate
    is not, whatever the box's aspect; a share of samples is shown the other way
    with the wrong-view target; real crops are drawn region by region."""
    from alprd.train.data import WRONG_VIEW, CropSpec, Item, Mixer

    def light_over_dark(h: int, w: int) -> np.ndarray:
        img = np.full((h, w, 3), 20, np.uint8)
        img[: h // 2] = 235
        return img

    two = Item(light_over_dark(40, 56), "AB12", "eu_d", lines=2)  # 1.4: one line by aspect
    one = Item(light_over_dark(40, 50), "CD34", "us_ca")  # 1.25: unfolded by aspect alone
    br = Item(light_over_dark(40, 120), "EFG5678", "camera_CC")
    spec = CropSpec(32, 128, 1.3)
    for wrong in (0.0, 0.3):
        mixer = Mixer([two, one] + [br] * 8, [], {"real": 1.0}, spec, 0, mild=1.0,
                      wrong_view=wrong)  # fmt: skip
        seen: dict[str, list[bool]] = {}
        for _ in range(300):
            x, text, _ = mixer()
            # unfolded: the light top line on the left, the dark bottom line on the right
            unfolded = x[:, :, :32].mean() - x[:, :, 96:].mean() > 0.25
            seen.setdefault(text, []).append(unfolded)
        if wrong == 0.0:
            assert WRONG_VIEW not in seen
            assert all(seen["AB12"]) and not any(seen["CD34"])
        else:
            assert 0.15 < len(seen[WRONG_VIEW]) / 300 < 0.45
        # region by region: the one Brazilian plate repeated 8 times is a third
        assert 0.2 < (len(seen.get("EFG5678", [])) / 300) / (1 - wrong) < 0.5


def test_the_wrong_view_class_is_the_last_one():
    from alprd.engines.platenet import CHARSET, encode

    assert encode(" ") == [len(CHARSET) + 1]
    assert encode("A0 ") == [1, 27, len(CHARSET) + 1]
    probs = np.zeros((2, 4, len(CHARSET) + 2), np.float32)
    probs[:, :, 0] = 1.0
    probs[1, 2] = 0.0
    probs[1, 2, -1] = 0.9
    assert ocr.wrong_view(probs).tolist() == [False, True]


def test_the_shipped_label_audit_is_well_formed():
    import csv

    from alprd.train.labels import AUDIT, clean

    with AUDIT.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows
    assert len({(r["dataset"], r["file"]) for r in rows}) == len(rows)  # one per file
    for r in rows:
        assert r["dataset"] in {"ocr-train", "plates-br"}
        assert r["corrected"] in ("?", "-") or r["corrected"] == clean(r["corrected"])
        assert r["corrected"] != r["labelled"]
        assert r["why"].strip()


@needs_ocr_data
def test_the_label_audit_matches_the_data_it_corrects():
    """Every correction names a file of the shared data that still carries the label
    the audit saw (else the data changed and the audit must be looked at again)."""
    import csv

    from alprd.train.labels import AUDIT, LABEL_FILES, clean

    given = {}
    for name in LABEL_FILES:
        if (OCR_TRAIN / name).is_file():
            with (OCR_TRAIN / name).open(newline="", encoding="utf-8") as f:
                given |= {r["file"]: clean(r["plate"]) for r in csv.DictReader(f)}
    with AUDIT.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if r["dataset"] == "ocr-train":
            assert given.get(r["file"]) == r["labelled"], r
        else:
            txt = SHARED_DATA / r["dataset"] / Path(r["file"]).with_suffix(".txt")
            assert txt.read_text().strip().split("\t")[-1] == r["labelled"], r


def test_augmentation_goes_through_the_serving_crop_and_is_seeded():
    from alprd.train.data import CropSpec, augment

    plate = two_tone(40, 120)
    spec = CropSpec(32, 128, 1.3)
    a = augment(plate, np.random.default_rng(3), spec)
    b = augment(plate, np.random.default_rng(3), spec)
    assert a.shape == (3, 32, 128) and np.array_equal(a, b)
    assert a.min() >= -1.0 and a.max() <= 1.0


def test_the_curriculum_starts_on_renders_and_ends_on_the_mix():
    from alprd.train.data import CropSpec, Item, Mixer

    real, rendered = (
        Item(two_tone(40, 120), "ABC1234", "camera"),
        Item(two_tone(40, 120), "XYZ9876", "synthetic"),
    )
    progress = [0.0]
    mixer = Mixer(
        [real], [rendered], {"real": 0.9, "rendered": 0.1}, CropSpec(), 0,
        progress=lambda: progress[0], curriculum=0.2,
    )  # fmt: skip
    assert {mixer()[2] for _ in range(30)} == {"rendered"}
    progress[0] = 1.0
    drawn = [mixer()[2] for _ in range(200)]
    assert 0.8 < drawn.count("real") / 200 < 0.97


# --------------------------------------------------------------------------- a real run


def _rendered_data(root: Path, n: int = 48) -> Path:
    """A stand-in for ocr-train when the shared data is absent: plates drawn by OpenCV."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    lines = ["file,plate,kind"]
    for i in range(n):
        text = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), 7))
        img = np.full((60, 200, 3), 235, np.uint8)
        cv2.putText(img, text, (8, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (15, 15, 15), 3)
        cv2.imwrite(str(root / "img" / f"{i}.png"), img)
        lines.append(f"img/{i}.png,{text},{'synthetic' if i % 2 else 'camera'}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """30 steps of batch 16 on CPU (real crops where present), exported."""
    from alprd.train import ocr as train_ocr

    tmp = tmp_path_factory.mktemp("train")
    data = OCR_TRAIN if (OCR_TRAIN / "labels.csv").is_file() else _rendered_data(tmp / "data")
    out = tmp / "out"
    rc = train_ocr.main(
        [
            "--data", str(data), "--out", str(out), "--steps", "30", "--batch", "16",
            "--threads", "1", "--limit", "64", "--val-every", "30", "--log-every", "10",
            "--mix", "real=0.7,rendered=0.3",
        ]
    )  # fmt: skip
    assert rc == 0
    return out


def test_training_writes_model_dictionary_card_and_metrics(trained):
    import json

    name = "ocr-alprd-plate"
    model = onnx.load(str(trained / f"{name}.onnx"))
    [x] = model.graph.input
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    assert x.name == "x" and dims == ["batch", 3, 32, 128]
    out_dims = [
        d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim
    ]
    assert out_dims == ["batch", 32, 38]  # T = W/4; blank + A-Z0-9 + space
    assert (trained / f"{name}.onnx").stat().st_size < 10e6
    dictionary = (trained / f"{name}-dict.txt").read_text().splitlines()
    assert "".join(dictionary) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["export"]["ort_max_abs_diff"] < 1e-4
    assert metrics["history"][0]["loss"] > 0
    card = (trained / "MODEL_CARD.md").read_text()
    for words in ("AGPL-3.0", "seed 0", "30 steps", "torch", "| tight | all |"):
        assert words in card
    named = card.split("From `")[1].split("`")[0]  # the data by name, not by path
    assert named.split(" ")[0] in ("ocr-train", "data") and "/" not in named, named


def test_the_trained_model_builds_and_reads_through_the_pipeline(trained, tmp_path):
    from alprd.engines import manager
    from alprd.engines.serving import load_engine
    from alprd.pipeline.recognizer import Recognizer

    models = tmp_path / "models"
    (models / "trained").mkdir(parents=True)
    for f in ("ocr-alprd-plate.onnx", "ocr-alprd-plate-dict.txt"):
        shutil.copyfile(trained / f, models / "trained" / f)
    for f in os.listdir(REPO / "models"):  # the default detectors and their engines
        if f.startswith("plate-yolov8n"):
            os.symlink((REPO / "models" / f).resolve(), models / f)
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "alprd.toml"
    path.write_text(
        '[paths]\nroot = ".."\n[models.vehicle]\nenabled = false\n'
        '[models.ocr]\nsource = "trained/ocr-alprd-plate.onnx"\n'
        'dictionary = "trained/ocr-alprd-plate-dict.txt"\ninput_height = 32\ninput_width = 128\n'
    )
    config = cfgmod.load(path)
    for backend in ("onnxruntime", "openvino"):
        outcome = manager.ensure(manager.plan(config, "ocr", manager.Overrides(backend=backend)))
        assert outcome.status == "built", outcome.message
    recognizer = Recognizer(
        config, {"plate": load_engine(config, "plate"), "ocr": load_engine(config, "ocr")}
    )
    frame = np.full((240, 320, 3), 90, np.uint8)
    frame[100:140, 60:180] = 230
    cv2.putText(frame, "ABC1234", (66, 130), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (10, 10, 10), 2)
    plates = [
        Plate((60.0, 100.0, 180.0, 140.0), 1.0, None),
        Plate((60.0, 80.0, 110.0, 140.0), 1.0, None),
    ]
    texts = recognizer.read(frame, plates)
    assert len(texts) == 2
    for t in texts:  # a 30-step model reads little; the contract is what is checked
        assert set(t.text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        assert len(t.char_confidences) == len(t.text) == len(t.candidates)
    recognizer.close()


def test_train_ocr_is_a_command():
    from conftest import run_alprd

    proc = run_alprd("train-ocr", "--help")
    assert proc.returncode == 0 and "--data" in proc.stdout and "--device" in proc.stdout


def test_generated_plates_mix_in_when_the_generator_is_installed():
    from alprd.train.data import CropSpec, Mixer, synth_generator

    generator = synth_generator(0)
    assert generator is not None
    mixer = Mixer([], [], {"synth": 1.0}, CropSpec(32, 128, 1.3), 0, generator=generator)
    for _ in range(8):
        x, text, source = mixer()
        assert x.shape == (3, 32, 128) and source == "synth"
        assert text and set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def test_a_run_stopped_by_its_time_budget_goes_on_where_it_stopped(tmp_path, capsys):
    """A job with a time limit (e.g. 10 minutes a command): a training run stops at
    `--max-minutes` with its whole state saved, and `--resume` goes on from that
    step (optimiser, schedule, best checkpoint and history included) to the end;
    a resumption with other options is refused, saying which."""
    import json

    import torch

    from alprd.train import ocr as train_ocr

    data = _rendered_data(tmp_path / "data", n=24)
    out = tmp_path / "out"
    base = ["--data", str(data), "--out", str(out), "--steps", "12", "--batch", "8",
            "--threads", "1", "--val-every", "4", "--log-every", "4",
            "--mix", "real=0.7,rendered=0.3"]  # fmt: skip
    assert train_ocr.main([*base, "--max-minutes", "0.00001"]) == 0  # stops after a step
    state = out / "ocr-alprd-plate.state.pt"
    assert state.is_file() and not (out / "ocr-alprd-plate.onnx").exists()
    stopped = torch.load(state, map_location="cpu", weights_only=False)
    assert 1 <= stopped["step"] < 12
    assert "go on with --resume" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"--lr 0\.002 \(now 0\.001\)"):
        train_ocr.main([*base, "--lr", "1e-3", "--resume", str(state)])
    assert train_ocr.main([*base, "--resume", str(state)]) == 0
    printed = capsys.readouterr().out
    assert f"resumed at step {stopped['step']}/12" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed"] and metrics["steps"] == 12
    assert metrics["history"][-1]["step"] == 12  # validated at the end, after the resumption
    assert (out / "ocr-alprd-plate.onnx").is_file() and not state.exists()


def test_other_widths_train_export_and_lift_back(tmp_path):
    """`--channels/--hidden` size the network; the checkpoint remembers them (so
    `--export-only` rebuilds it) and the torch backend rebuilds the export; the
    moving average of the weights is what is kept and resumed."""
    import torch

    from alprd.engines import lift
    from alprd.train import ocr as train_ocr

    data = _rendered_data(tmp_path / "data", n=16)
    out = tmp_path / "out"
    base = ["--data", str(data), "--out", str(out), "--steps", "4", "--batch", "4",
            "--threads", "1", "--val-every", "2", "--log-every", "2", "--mix", "real=1",
            "--channels", "8,8,16,16", "--hidden", "24", "--ema", "0.5"]  # fmt: skip
    assert train_ocr.main([*base, "--max-minutes", "0.00001"]) == 0
    state = torch.load(out / "ocr-alprd-plate.state.pt", map_location="cpu", weights_only=False)
    assert state["ema"] is not None and state["run"]["channels"] == (8, 8, 16, 16)
    with pytest.raises(SystemExit, match=r"--hidden 24 \(now 32\)"):
        train_ocr.main([*base[:-4], "--hidden", "32", "--ema", "0.5", "--resume",
                        str(out / "ocr-alprd-plate.state.pt")])  # fmt: skip
    assert train_ocr.main([*base, "--resume", str(out / "ocr-alprd-plate.state.pt")]) == 0
    checkpoint = torch.load(out / "ocr-alprd-plate.pt", map_location="cpu", weights_only=False)
    assert checkpoint["channels"] == [8, 8, 16, 16] and checkpoint["hidden"] == 24
    again = tmp_path / "again"
    assert train_ocr.main(["--data", "-", "--out", str(again), "--export-only",
                           str(out / "ocr-alprd-plate.pt")]) == 0  # fmt: skip
    _, dims = lift.platenet_from_onnx(again / "ocr-alprd-plate.onnx")
    assert dims["channels"] == [8, 8, 16, 16] and dims["hidden"] == 24
    with pytest.raises(SystemExit):
        train_ocr.parser().parse_args(["--data", "x", "--channels", "8,8"])


@pytest.mark.skipif(not TRAINED_ONNX.is_file(), reason=f"no {TRAINED_ONNX}")
def test_training_can_start_from_the_shipped_recogniser():
    """`--init` with the shipped ONNX (batch norms folded): the network it starts
    from gives the ONNX's probabilities, at its width and fully convolutional at
    another one (a wider model may go on from it)."""
    import onnxruntime as ort
    import torch

    from alprd.engines.platenet import PlateNet
    from alprd.train.warmstart import init_from

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 3, 32, 128)).astype(np.float32)
    session = ort.InferenceSession(str(TRAINED_ONNX), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
    net = PlateNet(32, 128)
    init_from(TRAINED_ONNX, net)
    with torch.no_grad():
        ours = net.eval()(torch.from_numpy(x)).softmax(-1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    wider = PlateNet(32, 160)
    init_from(TRAINED_ONNX, wider)
    with torch.no_grad():
        assert wider.eval()(torch.zeros(1, 3, 32, 160)).shape[1] == 40  # T = W / 4


@pytest.mark.skipif(not TRAINED_ONNX.is_file(), reason=f"no {TRAINED_ONNX}")
def test_a_wider_recogniser_starts_as_the_shipped_one():
    """`--init` with the shipped ONNX into wider channels (`--channels`, `--hidden`):
    the new channels add nothing until trained, so the wider network reads what the
    shipped one reads; a narrower one is refused with the file named."""
    import onnxruntime as ort
    import torch

    from alprd.engines.platenet import PlateNet
    from alprd.train.warmstart import init_from

    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 32, 128)).astype(np.float32)
    session = ort.InferenceSession(str(TRAINED_ONNX), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
    wider = PlateNet(32, 128, channels=(32, 64, 112, 192), hidden=224)
    init_from(TRAINED_ONNX, wider)
    with torch.no_grad():
        ours = wider.eval()(torch.from_numpy(x)).softmax(-1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    with pytest.raises(SystemExit, match="fewer channels"):
        init_from(TRAINED_ONNX, PlateNet(32, 128, channels=(16, 64, 96, 160)))
