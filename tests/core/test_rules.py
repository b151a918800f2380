"""Plate formats and format-aware decoding: the built-in library, the decoder's
choices on constructed reads (field misses, vanity plates, crests), the margin,
the format reported, the config keys; and the library's coverage of the real
labels (skipped without the real data)."""

from __future__ import annotations

import csv
import re
import string

import pytest
from conftest import SHARED_DATA, needs_data, run_alprd

from alprd import config as cfgmod
from alprd import plates as formats
from alprd.exitcodes import ExitCode
from alprd.pipeline.rules import DEFAULT_FORMAT_MARGIN, PlateRules
from alprd.pipeline.types import PassKey, Plate, PlateRead, Text
from alprd.pipeline.vote import Voter
from alprd.plates import parse_format

# --------------------------------------------------------------------------- library


def test_every_library_pattern_is_a_fixed_length_plate_of_a_z_0_9():
    alnum = set(string.ascii_uppercase + string.digits)
    for region, patterns in formats.LIBRARY.items():
        assert re.fullmatch(r"[a-z]{2}(-[a-z]{2})?", region), region
        assert patterns and len(set(patterns)) == len(patterns), region
        for pattern in patterns:
            fmt = parse_format(pattern)
            assert 1 <= len(fmt) <= 11 and all(s and s <= alnum for s in fmt), (region, pattern)


def test_groups_name_library_regions():
    for group, members in formats.GROUPS.items():
        assert members and set(members) <= set(formats.LIBRARY), group
    assert set(formats.GROUPS["world"]) == set(formats.LIBRARY)
    assert {"de", "gb", "nl", "sk", "tr", "is"} <= set(formats.GROUPS["eu"])
    assert {"us", "us-ca", "us-ny"} <= set(formats.GROUPS["us"])
    assert not set(formats.GROUPS["eu"]) & {"br", "in", "us"}


@pytest.mark.parametrize(
    ("pattern", "at_most", "expected"),
    [
        ("[A-Z]{1,2}[0-9]", None, ("[A-Z][0-9]", "[A-Z]{2}[0-9]")),
        ("[A-Z]{1,2}[A-Z]{1,2}", None, ("[A-Z]{2}", "[A-Z]{3}", "[A-Z]{4}")),  # merged runs
        ("[A-Z]{2}[12]{0,1}[0-9]", None, ("[A-Z]{2}[0-9]", "[A-Z]{2}[12][0-9]")),
        ("[A-Z]{1,3}[0-9]{1,4}", 4, ("[A-Z][0-9]", "[A-Z][0-9]{2}", "[A-Z][0-9]{3}",
                                     "[A-Z]{2}[0-9]", "[A-Z]{2}[0-9]{2}", "[A-Z]{3}[0-9]")),
    ],
)  # fmt: skip
def test_variable_series_expand_to_fixed_lengths(pattern, at_most, expected):
    assert formats.expand(pattern, at_most) == expected


@pytest.mark.parametrize(
    ("plate", "region", "fits"),
    [
        ("BAB1234", "de", True),
        ("MA1", "de", True),
        ("WOBAB1234", "de", False),  # 9 characters: more than a German plate holds
        ("BAB0123", "de", False),  # no German number starts with 0
        ("SLTE12E", "de", True),  # electric
        ("AB123CD", "fr", True),
        ("AB123CO", "fr", False),  # no O in the SIV series
        ("ABC1D23", "br", True),
        ("KA22P3368", "in", True),
        ("DL1CAB1234", "in", True),
        ("KA22P336", "in", False),
        ("7ABC123", "us-ca", True),
        ("ABC1234", "us-ca", False),
        ("54PHLJ", "nl", True),
        ("54PALJ", "nl", False),  # no vowels in the series since 1978
        ("RK099AN", "sk", True),
        ("AB12CDE", "gb", True),
        ("1ABC123", "be", True),
        ("34ABC12", "tr", True),
        ("34QBC12", "tr", False),
    ],
)
def test_library_formats(plate, region, fits):
    rules = PlateRules(regions=[region])
    assert (region in rules.format_of(plate).split("/")) is fits


def test_resolve_expands_groups_and_takes_site_formats_by_name():
    assert set(formats.resolve(["eu"])) == set(formats.GROUPS["eu"])
    assert set(formats.resolve(["us-ca", "us"])) == set(formats.GROUPS["us"])
    site = {"site": ["[A-Z]{2}[0-9]{5}"], "br": ["[A-Z]{3}[0-9]{4}"]}
    table = formats.resolve(["world"], site)
    assert table["site"] == ("[A-Z]{2}[0-9]{5}",) and table["br"] == ("[A-Z]{3}[0-9]{4}",)
    assert formats.resolve(["eu"], {"eu": ["[0-9]{5}"]}) == {"eu": ("[0-9]{5}",)}
    with pytest.raises(ValueError, match=r"unknown 'atlantis'.*group \(eu, uk, us, world\)"):
        formats.resolve(["de", "atlantis"])


# --------------------------------------------------------------------------- decoding


def text(s: str, conf: float = 0.95, alts: dict[int, list[tuple[str, float]]] | None = None,
         confs: dict[int, float] | None = None) -> Text:  # fmt: skip
    """A read of `s`, each character at `conf` (or `confs[i]`), with runner-ups `alts[i]`."""
    c = [(confs or {}).get(i, conf) for i in range(len(s))]
    cands = tuple(((ch, c[i]), *(alts or {}).get(i, [])) for i, ch in enumerate(s))
    return Text(s, tuple(c), cands)


def decoded(rules: PlateRules, read: Text) -> tuple[str, str] | None:
    got = rules.apply(read)
    return None if got is None else (got[0].text, got[1])


SK = PlateRules(regions=["sk"], min_length=4)
WORLD = PlateRules(min_length=4)


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        # Slovak LLNNNLL: O/0, 1/I, 0/O follow the format when the right one was close
        (text("RKO99AN", alts={2: [("0", 0.1)]}), ("RK099AN", "sk")),
        (text("BA2681M", alts={5: [("I", 0.1)]}), ("BA268IM", "sk")),
        (text("BB135B0", alts={6: [("O", 0.1)]}), ("BB135BO", "sk")),
        # a crest between the groups read as a fairly confident 8: dropped
        (text("RK8346AL", confs={2: 0.8}), ("RK346AL", "sk")),
        # ... but not a character read with near certainty: kept as printed
        (text("RK8346AL", 0.99, confs={2: 0.999}), ("RK8346AL", "")),
        # the right one far too improbable (1/100 of what was read): as printed
        (text("RKO99AN", alts={2: [("0", 0.0095)]}), ("RKO99AN", "")),
    ],
)
def test_field_misses_on_a_slovak_site(read, expected):
    assert decoded(SK, read) == expected


def test_field_misses_with_the_whole_world_library():
    """With every format allowed a misread can be another country's valid plate:
    BB135B0 fits nothing and is fixed, RKO99AN is a Polish plate as read."""
    assert decoded(WORLD, text("BB135B0", alts={6: [("O", 0.1)]})) == ("BB135BO", "at/hr/sk")
    assert decoded(WORLD, text("RKO99AN", alts={2: [("0", 0.1)]})) == ("RKO99AN", "pl")


@pytest.mark.parametrize(
    ("read", "truth"),
    [
        (text("QKM2371", alts={0: [("O", 0.03)]}), "OKM2371"),
        (text("DZG3580", alts={0: [("O", 0.03)]}), "OZG3580"),
    ],
)
def test_a_letter_read_as_another_letter_is_beyond_a_format(read, truth):
    """Brazil's O read Q or D: every one of them is a letter, the format cannot tell."""
    got = decoded(PlateRules(regions=["br"]), read)
    assert got == (read.text, "br") and got[0] != truth


@pytest.mark.parametrize("rules", [WORLD, PlateRules(regions=["eu"], min_length=4)])
@pytest.mark.parametrize(
    "read",
    [
        # personalised Austrian plate: a format fits if the confident T or E went
        text("WTORTE1", 0.97, alts={2: [("0", 0.02)], 6: [("I", 0.02)]}),
        text("HELENA1", 0.98, alts={5: [("4", 0.01)]}),
        text("FRENCH4U", 0.96, alts={4: [("G", 0.03)]}),
    ],
)
def test_a_vanity_plate_is_kept_as_printed(rules, read):
    assert decoded(rules, read) == (read.text, "")


def test_the_margin_decides_how_improbable_a_change_may_be():
    read = text("RKO99AN", conf=0.9, alts={2: [("0", 0.009)]})  # the change: 1/100
    assert decoded(PlateRules(regions=["sk"]), read) == ("RKO99AN", "")
    assert decoded(PlateRules(regions=["sk"], format_margin=5.0), read) == ("RK099AN", "sk")
    assert decoded(PlateRules(regions=["sk"], format_margin=0.0), read) == ("RKO99AN", "")
    # a required format takes the best fit whatever the margin
    assert decoded(PlateRules(regions=["sk"], require_format=True), read) == ("RK099AN", "sk")
    with pytest.raises(ValueError, match="format_margin"):
        PlateRules(format_margin=-1)


def test_at_most_three_characters_are_dropped_inside():
    br = PlateRules(regions=["br"])
    three = text("ABCXYZ1234", confs={3: 0.1, 4: 0.1, 5: 0.1})
    assert decoded(br, three) == ("ABC1234", "br")
    four = text("ABCWXYZ1234", confs={3: 0.1, 4: 0.1, 5: 0.1, 6: 0.1})
    assert decoded(br, four) != ("ABC1234", "br")
    # at the ends, any number go (a band, a frame edge)
    ends = text("XXXXABC1234YYY", confs={0: 0.1, 1: 0.1, 2: 0.1, 3: 0.1, 11: 0.1, 12: 0.1, 13: 0.1})
    assert decoded(br, ends) == ("ABC1234", "br")


def test_the_characters_kept_carry_their_candidates():
    got = SK.apply(text("RKO99AN", alts={2: [("0", 0.1)]}))
    assert got is not None
    fixed = got[0]
    assert fixed.char_confidences[2] == 0.1
    assert fixed.candidates[2] == (("O", 0.95), ("0", 0.1))


def test_identical_patterns_of_several_countries_name_them_all():
    rules = PlateRules(regions=["it", "sk", "hr", "de"])
    assert decoded(rules, text("AB123CD")) == ("AB123CD", "hr/it/sk")
    assert rules.format_of("AB123CD") == "hr/it/sk"
    assert rules.format_of("AB12345") == "it"  # Italian motorcycles
    assert rules.format_of("A123456") == ""  # none of theirs


def test_states_are_named_only_where_the_common_us_series_does_not_fit():
    rules = PlateRules(regions=["us"])
    assert rules.format_of("ABC1234") == "us"  # a common series: the states add nothing
    assert rules.format_of("7ABC123") == "us"  # California's, and common
    assert rules.format_of("AB1C2D") == "us-mo"  # only Missouri's
    assert PlateRules(regions=["us-ca"]).format_of("7ABC123") == "us-ca"


def test_site_formats_add_or_replace_regions():
    rules = PlateRules(regions=["world"], formats={"site": ["[0-9]{3}[A-Z]{5}"]})
    assert decoded(rules, text("123ABCDE")) == ("123ABCDE", "site")
    replaced = PlateRules(regions=["br"], formats={"br": ["[A-Z]{2}[0-9]{5}"]})
    assert replaced.format_of("AB12345") == "br" and replaced.format_of("ABC1234") == ""


def test_no_regions_no_formats():
    rules = PlateRules(regions=[], min_length=4)
    read = text("RKO99AN", alts={2: [("0", 0.1)]})
    assert decoded(rules, read) == ("RKO99AN", "")
    assert rules.format_of("RK099AN") == ""


def test_formats_shorter_than_the_minimum_length_are_not_used():
    # "AB1" fits Germany's shortest series; with min_length 4 it is not a plate
    rules = PlateRules(regions=["de"], min_length=4)
    assert decoded(rules, text("AB1X", confs={3: 0.3})) == ("AB1X", "")


# --------------------------------------------------------------------------- voting


def read(s: str, fmt: str) -> PlateRead:
    return PlateRead(Plate((0, 0, 10, 5), 0.9, None), text(s), 0, 0.0, fmt)


def test_the_event_names_the_format_of_the_voted_plate():
    rules = PlateRules(regions=["sk", "it"])
    v = Voter("gate", min_agreeing=0, format_of=rules.format_of)
    for s in ("RK099AN", "RK099AN", "RK099AM"):
        v.add(PassKey("vehicle", 1), read(s, rules.format_of(s)))
    event = v.end(PassKey("vehicle", 1))
    assert event is not None and (event.plate, event.format) == ("RK099AN", "it/sk")
    v.add(PassKey("vehicle", 2), read("WTORTE1", ""))  # every read as printed
    event = v.end(PassKey("vehicle", 2))
    assert event is not None and (event.plate, event.format) == ("WTORTE1", "")


# --------------------------------------------------------------------------- config


def test_config_defaults_allow_the_world_and_keep_unusual_plates():
    p = cfgmod.PlatesConfig()
    assert (p.regions, p.require_format, p.format_margin) == (["world"], False, 3.0)
    assert p.format_margin == DEFAULT_FORMAT_MARGIN


@pytest.mark.parametrize(
    "regions", [["de"], ["eu"], ["us-ca", "us"], ["world"], ["uk", "in", "br"], []]
)
def test_config_accepts_regions_and_groups(write_config, regions):
    config = cfgmod.load(write_config(f"[plates]\nregions = {regions!r}\n".replace("'", '"')))
    assert config.plates.regions == regions


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        ('[plates]\nregions = ["de", "xx"]\n', "plates.regions", "unknown 'xx'; use a region"),
        ("[plates]\nformat_margin = -1\n", "plates.format_margin", "must be >= 0"),
        (
            '[[cameras]]\nname = "gate"\nurl = "rtsp://x"\nregions = ["mars"]\n',
            "cameras[0].regions",
            "unknown 'mars'",
        ),
    ],
)
def test_config_errors_name_the_key_and_what_is_allowed(write_config, toml, key, message):
    path = write_config(toml)
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(path)
    [problem] = err.value.problems
    assert problem.key == key and message in problem.message, str(problem)
    assert problem.line is not None
    if "unknown" in message:
        assert "world" in problem.message and "[plates.formats]" in problem.message


def test_a_region_defined_in_the_config_is_known(write_config):
    config = cfgmod.load(
        write_config(
            '[plates]\nregions = ["site"]\n[plates.formats]\nsite = ["[A-Z]{2}[0-9]{3}"]\n'
            '[[cameras]]\nname = "gate"\nurl = "rtsp://x"\nregions = ["site", "eu"]\n'
        )
    )
    assert config.cameras[0].regions == ["site", "eu"]


def test_detect_names_the_allowed_regions_for_an_unknown_one(tmp_path):
    proc = run_alprd("detect", "--region", "atlantis", "--region", "eu", str(tmp_path))
    assert proc.returncode == ExitCode.USAGE
    assert "'atlantis'" in proc.stderr and "'eu'" not in proc.stderr and "world" in proc.stderr


# --------------------------------------------------------------------------- coverage

LABELS = SHARED_DATA / "ocr-train"
#: EU band code -> region (labels-eu.csv ``country``)
BAND = {
    "A": "at", "B": "be", "BG": "bg", "CH": "ch", "CY": "cy", "CZ": "cz", "D": "de",
    "DK": "dk", "E": "es", "EST": "ee", "F": "fr", "FIN": "fi", "GB": "gb", "GR": "gr",
    "H": "hu", "HR": "hr", "I": "it", "IRL": "ie", "IS": "is", "L": "lu", "LT": "lt",
    "LV": "lv", "M": "mt", "N": "no", "NL": "nl", "P": "pt", "PL": "pl", "RO": "ro",
    "S": "se", "SK": "sk", "SLO": "si", "TR": "tr",
}  # fmt: skip
#: The least share of a region's labels that must fit one of its formats: high
#: where the formats are strict; personalised, special and foreign-style plates
#: legitimately fit none (measured: about 5-10 points above each floor).
FLOORS = {
    "at": 0.65, "be": 0.7, "bg": 0.65, "ch": 0.8, "cz": 0.8, "de": 0.8, "dk": 0.75,
    "es": 0.75, "fr": 0.8, "gb": 0.85, "gr": 0.8, "hr": 0.8, "it": 0.85, "lt": 0.6,
    "lv": 0.75, "nl": 0.9, "pl": 0.75, "ro": 0.8, "se": 0.65, "si": 0.7, "sk": 0.7,
    "br": 0.99, "us": 0.55, "us-ca": 0.5, "us-ny": 0.75, "us-nj": 0.65, "us-ri": 0.85,
}  # fmt: skip


def _rows(name: str) -> list[dict[str, str]]:
    with (LABELS / name).open(newline="", encoding="utf-8") as f:
        return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


@needs_data(LABELS / "labels-eu.csv", "European labels")
def test_the_library_describes_the_real_plates():
    """The share of real labels (EU, US, Brazil) that fit a format of their own
    country (US: the common series or their state's) stays above `FLOORS`."""
    rules = {r: PlateRules(regions=[r]) for r in formats.LIBRARY}
    share: dict[str, list[int]] = {}

    def count(region: str, plate: str, regions: list[str]) -> None:
        fits = any(rules[r].format_of(plate) for r in regions)
        c = share.setdefault(region, [0, 0])
        c[0] += fits
        c[1] += 1

    for row in _rows("labels-eu.csv"):
        if row["country"] in BAND and row["quality"] != "skip":
            count(BAND[row["country"]], row["plate"], [BAND[row["country"]]])
    for row in _rows("labels-us.csv"):
        state = row["kind"].replace("_", "-")
        regions = ["us", state] if state in rules else ["us"]
        count("us", row["plate"], regions)
        count(state, row["plate"], regions)
    for row in _rows("labels.csv"):
        count("br", row["plate"], ["br"])
    low = {
        r: f"{share[r][0]}/{share[r][1]}"
        for r, floor in FLOORS.items()
        if share[r][0] < floor * share[r][1]
    }
    assert not low, low
