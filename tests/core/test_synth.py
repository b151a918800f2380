"""The synthetic plate generator (alprd.train.synth): real rendering, small counts."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from alprd.train import synth
from alprd.train.synth import (
    REGIONS,
    STYLES,
    Format,
    Generator,
    NoFontsError,
    contact_sheet,
    find_fonts,
    format_regex,
    region_regex,
    write_dataset,
)


@pytest.fixture(scope="module")
def fonts() -> list[Path]:
    return find_fonts()


@pytest.fixture(scope="module")
def gen(fonts: list[Path]) -> Generator:
    return Generator(7, fonts)


def test_same_seed_gives_byte_identical_plates_in_any_order(fonts: list[Path]) -> None:
    a = Generator(3, fonts)
    b = Generator(3, fonts)
    first = [a() for _ in range(12)]
    backwards = [b.sample(i) for i in reversed(range(12))][::-1]
    for p, q in zip(first, backwards, strict=True):
        assert (p.text, p.region, p.lines) == (q.text, q.region, q.lines)
        assert p.image.shape == q.image.shape
        assert p.image.tobytes() == q.image.tobytes()
    other = Generator(4, fonts)
    assert [other.sample(i).text for i in range(12)] != [p.text for p in first]


def test_images_are_bgr_uint8_crops_with_readable_contrast(gen: Generator) -> None:
    for i in range(40):
        p = gen.sample(i)
        assert p.image.dtype == np.uint8 and p.image.ndim == 3 and p.image.shape[2] == 3
        h, w = p.image.shape[:2]
        assert 8 <= h <= 600 and 16 <= w <= 600
        assert float(p.image.std()) > 5.0, f"sample {i} is flat"


def test_labels_are_a_z_0_9_and_match_their_format_and_region(gen: Generator) -> None:
    seen_regions = set()
    for i in range(300):
        p, info = gen.sample_with_info(i)
        assert re.fullmatch(r"[A-Z0-9]+", p.text), p.text
        fmt = info.format
        assert fmt in next(s for s in STYLES if s.key == info.style).formats
        assert format_regex(fmt).fullmatch(p.text), (info, p.text)
        assert region_regex(p.region).fullmatch(p.text), (p.region, p.text)
        assert p.lines == fmt.lines
        seen_regions.add(p.region)
    assert seen_regions == set(REGIONS)


def _fixed_length(fmt: Format) -> bool:
    toks = synth._tokens(fmt.pattern)
    return all(lo == hi for _, lo, hi in toks) and len({len(p) for p in fmt.prefixes}) <= 1


def test_eu_band_letters_are_drawn_but_never_labelled(fonts: list[Path]) -> None:
    g = Generator(11, fonts, regions={"eu": 1.0})
    bands = 0
    for i in range(200):
        p, info = g.sample_with_info(i)
        style = next(s for s in STYLES if s.key == info.style)
        code = next(e for e in info.extras if e in style.band)  # the band was drawn
        bands += 1
        fmt = info.format
        if _fixed_length(fmt):  # with the band code in front the label would not fit
            assert not format_regex(fmt).fullmatch(code + p.text)
        assert format_regex(fmt).fullmatch(p.text)
        if info.style == "ES":  # NNNN LLL: band "E" in front would show as a leading letter
            assert p.text[:4].isdigit()
    assert bands == 200


def test_decorations_are_not_in_labels(fonts: list[Path]) -> None:
    g = Generator(5, fonts, regions={"us": 1.0, "br": 1.0, "mercosur": 1.0, "in": 1.0})
    for i in range(150):
        p, info = g.sample_with_info(i)
        for extra in info.extras:
            word = re.sub(r"[^A-Z0-9]", "", extra.upper())
            if len(word) >= 4:  # state names, slogans, cities, BRASIL, IND
                assert word not in p.text, (extra, p.text)


def test_us_marks_between_and_beside_the_characters_are_drawn_not_labelled(
    fonts: list[Path],
) -> None:
    """US plates get emblems between their groups (a state's outline, a peach),
    scenery behind the characters and stacked letters or an icon beside them; none
    of it is in the label, which still fits the plate's format."""
    g = Generator(9, fonts, regions={"us": 1.0})
    marks: set[str] = set()
    for i in range(200):
        p, info = g.sample_with_info(i)
        drawn = [e for e in info.extras if e.startswith("<")]
        marks.update(e if e in ("<picture>", "<icon>") or e[1:-1].islower() else "<letters>"
                     for e in drawn)  # fmt: skip
        assert format_regex(info.format).fullmatch(p.text), (p.text, info.extras)
    assert {"<picture>", "<icon>", "<letters>", "<outline>", "<fruit>", "<seal>"} <= marks


def test_emblem_slot_takes_a_gap_or_goes_between_characters() -> None:
    import random

    r = random.Random(0)
    assert synth._with_emblem(["A", "B", "C", "-", "1", "2"], r) == ["A", "B", "C", "^", "1", "2"]
    inserted = synth._with_emblem(list("ABC123"), r)
    assert inserted.count(synth.EMBLEM) == 1 and inserted[0] == "A" and inserted[-1] == "3"
    assert [c for c in inserted if c != synth.EMBLEM] == list("ABC123")


def test_both_one_and_two_line_plates_occur_per_region(fonts: list[Path]) -> None:
    lines: dict[str, set[int]] = {}
    for region in ("us", "br", "mercosur", "in"):
        g = Generator(1, fonts, regions={region: 1.0})
        lines[region] = {g.sample(i).lines for i in range(120)}
    assert all(v == {1, 2} for v in lines.values()), lines


def test_region_weights_are_respected(fonts: list[Path]) -> None:
    g = Generator(2, fonts, regions={"in": 1.0, "br": 0.0})
    assert {g.sample(i).region for i in range(30)} == {"in"}
    with pytest.raises(ValueError, match="unknown region"):
        Generator(2, fonts, regions={"mars": 1.0})


def test_confusable_characters_are_oversampled() -> None:
    import random

    r = random.Random(0)
    counts = {c: 0 for c in synth.LETTERS}
    for _ in range(400):
        text, _ = synth.sample_text(Format("LLLLLL"), r)
        for c in text:
            counts[c] += 1
    assert counts["O"] > 2 * counts["A"] and counts["I"] > 2 * counts["K"]
    # where a format excludes a letter (NL: no vowels) it never appears
    nl = Format("LL-NN-LL", letters="BDFGHJKLNPRSTVXZ")
    assert all("O" not in synth.sample_text(nl, r)[0] for _ in range(200))


def test_write_dataset_writes_jpegs_and_shared_labels_csv(
    tmp_path: Path, fonts: list[Path]
) -> None:
    labels = write_dataset(tmp_path / "ds", 12, seed=9, fonts=fonts)
    assert labels == tmp_path / "ds" / "labels.csv"
    with labels.open() as f:
        assert f.readline().strip() == "file,plate,kind"
    with labels.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    jpgs = sorted(p.name for p in (tmp_path / "ds").glob("*.jpg"))
    assert jpgs == sorted(r["file"] for r in rows)
    g = Generator(9, fonts)
    for i, row in enumerate(rows):
        assert row["plate"] == g.sample(i).text
        assert row["kind"] == f"synth-{g.sample(i).region}"
        assert row["file"].endswith(f"_{row['plate']}.jpg")
        img = cv2.imread(str(tmp_path / "ds" / row["file"]))
        assert img is not None and img.shape == g.sample(i).image.shape


def test_contact_sheet_is_a_png_of_the_expected_size(tmp_path: Path, gen: Generator) -> None:
    plates = [gen.sample(i) for i in range(10)]
    out = contact_sheet(plates, tmp_path / "sheet.png", cols=4)
    img = cv2.imread(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert img.shape == (3 * synth.CELL_H, 4 * synth.CELL_W, 3)
    # a labelled cell is not blank; the unused cells of the last row are
    assert img[: synth.CELL_IMG_H, : synth.CELL_W].std() > 5
    assert img[2 * synth.CELL_H :, 2 * synth.CELL_W :].std() == 0


def test_find_fonts_explains_when_nothing_is_usable(tmp_path: Path) -> None:
    (tmp_path / "broken.ttf").write_bytes(b"not a font at all")
    with pytest.raises(NoFontsError) as e:
        find_fonts([tmp_path], system_dirs=[tmp_path / "nowhere"])
    assert "no usable plate font" in str(e.value)
    assert "broken.ttf" in str(e.value)


def test_find_fonts_takes_extra_folders_and_known_names(tmp_path: Path, fonts: list[Path]) -> None:
    (tmp_path / "mine.ttf").write_bytes(fonts[0].read_bytes())
    found = find_fonts([tmp_path], system_dirs=[])
    assert found == [tmp_path / "mine.ttf"]
    assert all(p.suffix.lower() in (".ttf", ".otf") for p in fonts)


def test_cli_writes_dataset_and_sheet(tmp_path: Path) -> None:
    rc = synth.main(["--out", str(tmp_path / "o"), "--n", "3", "--seed", "1", "--workers", "1",
                     "--sheet", str(tmp_path / "s.png")])  # fmt: skip
    assert rc == 0
    assert len(list((tmp_path / "o").glob("*.jpg"))) == 3
    assert (tmp_path / "s.png").is_file()


def test_write_dataset_is_the_same_with_several_workers(tmp_path: Path, fonts: list[Path]) -> None:
    one = write_dataset(tmp_path / "one", 6, seed=4, fonts=fonts, workers=1, chunk=2)
    two = write_dataset(tmp_path / "two", 6, seed=4, fonts=fonts, workers=2, chunk=2)
    assert one.read_text() == two.read_text()
    for name in sorted(p.name for p in (tmp_path / "one").glob("*.jpg")):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_generator_pickles_for_dataloader_workers(gen: Generator) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(gen))
    assert clone.sample(5).image.tobytes() == gen.sample(5).image.tobytes()


def test_find_fonts_prefers_known_names_then_falls_back(tmp_path: Path, fonts: list[Path]) -> None:
    data = fonts[0].read_bytes()
    bare = tmp_path / "bare" / "truetype" / "dejavu"
    bare.mkdir(parents=True)
    (bare / "DejaVuSans-Bold.ttf").write_bytes(data)
    (bare / "SomethingElse.ttf").write_bytes(data)  # not a known name: ignored
    assert find_fonts(system_dirs=[tmp_path / "bare"]) == [bare / "DejaVuSans-Bold.ttf"]
    (bare / "OSP-DIN.ttf").write_bytes(data)  # a known plate font: the fallback is not used
    assert find_fonts(system_dirs=[tmp_path / "bare"]) == [bare / "OSP-DIN.ttf"]
