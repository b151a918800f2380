"""Configuration: the documented default, each error class, path resolution, discovery."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, run_alprd
from pydantic import BaseModel

from alprd import config as cfgmod
from alprd.cli import main
from alprd.exitcodes import ExitCode

DEFAULT_FILE = REPO / "etc" / "alprd.toml"


# --------------------------------------------------------------------------- the default file


def test_default_file_is_valid_and_resolves_to_the_checkout():
    config = cfgmod.load(DEFAULT_FILE)
    assert config.paths.root == REPO
    assert config.paths.models_dir == REPO / "models"
    assert config.paths.state_dir == REPO / "state"
    assert config.models.vehicle.source == REPO / "models" / "vehicle-yolov8n-coco.onnx"
    assert config.models.plate.input_size == 416
    assert config.models.vehicle.input_size == 640
    assert config.outputs.sqlite.path == REPO / "state" / "reads.db"


def test_default_file_states_the_real_defaults():
    """Every value written in etc/alprd.toml equals the schema default (but paths.root)."""
    written = cfgmod.load(DEFAULT_FILE).model_dump()
    implicit = cfgmod.parse('[paths]\nroot = ".."\n', DEFAULT_FILE).model_dump()
    assert written == implicit


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        inner = cfgmod._model_in(field.annotation)
        if inner is not None:
            out += _keys(inner, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_default_file_documents_every_key():
    """Each key of the schema appears in etc/alprd.toml (set or commented) with a comment."""
    text = DEFAULT_FILE.read_text()
    missing = [
        key
        for key in _keys(cfgmod.Config)
        if not re.search(rf"^#?\s*{re.escape(key.rsplit('.', 1)[-1])} = ", text, re.M)
        and f"[{key}]" not in text
    ]
    assert missing == []


# --------------------------------------------------------------------------- error classes


def _problems(text: str, path: Path) -> list[cfgmod.Problem]:
    with pytest.raises(cfgmod.ConfigError) as info:
        cfgmod.parse(text, path)
    return info.value.problems


def test_unknown_key_names_key_line_and_suggestion(tmp_path):
    text = '[engines]\nbackend = "auto"\nprecison = "fp16"\n'
    [p] = _problems(text, tmp_path / "a.toml")
    assert p.key == "engines.precison"
    assert p.line == 3
    assert "unknown key" in p.message and "did you mean 'precision'" in p.message


def test_unknown_table(tmp_path):
    [p] = _problems("[enignes]\nbackend = 'auto'\n", tmp_path / "a.toml")
    assert (p.key, p.line) == ("enignes", 1)
    assert "did you mean 'engines'" in p.message


def test_bad_type_in_second_camera(tmp_path):
    text = (
        '[[cameras]]\nname = "a"\nurl = "rtsp://x"\n\n'
        '[[cameras]]\nname = "b"\nurl = "rtsp://y"\nfps = "fast"\n'
    )
    [p] = _problems(text, tmp_path / "a.toml")
    assert p.key == "cameras[1].fps"
    assert p.line == 8
    assert "must be a valid number" in p.message and "'fast'" in p.message


def test_bound_violation_reads_like_the_rule(tmp_path):
    text = '[[cameras]]\nname = "a"\nurl = "x"\n[[cameras]]\nname = "b"\nurl = "y"\nfps = 0\n'
    [p] = _problems(text, tmp_path / "a.toml")
    assert str(p) == f"{tmp_path / 'a.toml'}:7: cameras[1].fps: must be > 0; got 0"


def test_every_error_is_reported_at_once(tmp_path):
    text = (
        '[engines]\nprecision = "fp8"\nbatch_size = 0\n'
        "[models.plate]\ninput_size = 500\n"
        '[[cameras]]\nurl = "x"\n'
    )
    problems = _problems(text, tmp_path / "a.toml")
    by_key = {p.key: p for p in problems}
    assert set(by_key) == {
        "engines.precision",
        "engines.batch_size",
        "models.plate.input_size",
        "cameras[0].name",
    }
    assert "one of 'fp32', 'fp16' or 'int8'" in by_key["engines.precision"].message
    assert by_key["models.plate.input_size"].message.startswith("must be a multiple of 32")
    assert by_key["cameras[0].name"].message == "required key is missing"
    assert by_key["cameras[0].name"].line == 6  # the [[cameras]] header


def test_toml_syntax_error_names_line_and_column(tmp_path):
    [p] = _problems('[engines]\nbackend = "auto\n', tmp_path / "a.toml")
    assert p.line == 2
    assert p.message.startswith("TOML syntax error:") and "column" in p.message


def test_semantic_rules(tmp_path):
    text = (
        '[[cameras]]\nname = "gate"\nurl = "a"\n[[cameras]]\nname = "gate"\nurl = "b"\n'
        "[outputs.webhook]\nenabled = true\n"
        '[models.vehicle]\nclasses = ["car", "car"]\n'
        "[voting]\nmin_agreeing = 20\nmax_reads = 10\n"
    )
    by_key = {p.key: p.message for p in _problems(text, tmp_path / "a.toml")}
    assert "max_reads (10) must be at least min_agreeing (20)" in by_key["voting"]
    assert "repeated: gate" in by_key["cameras"]
    assert "http:// or https://" in by_key["outputs.webhook.url"]
    assert "duplicate class names: car" in by_key["models.vehicle.classes"]


# faults: Security: credentials never in config errors
@pytest.mark.faults
def test_credentials_in_a_bad_value_are_redacted(tmp_path):
    [p] = _problems('[outputs.mqtt]\nport = "mqtt://bob:s3cret@host"\n', tmp_path / "a.toml")
    assert "s3cret" not in str(p) and "bob:***@host" in str(p)


def test_missing_file_directory_and_encoding(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="file not found"):
        cfgmod.load(tmp_path / "nope.toml")
    with pytest.raises(cfgmod.ConfigError, match="is a directory"):
        cfgmod.load(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("# caf\xe9\n".encode("latin-1"))
    with pytest.raises(cfgmod.ConfigError, match="not UTF-8"):
        cfgmod.load(bad)


# --------------------------------------------------------------------------- paths


def test_relative_paths_follow_the_one_rule(write_config, tmp_path):
    path = write_config(
        '[paths]\nroot = ".."\nmodels_dir = "m"\nstate_dir = "/var/tmp/st"\n'
        '[models.plate]\nsource = "sub/best.pt"\n'
        '[models.ocr]\nsource = "/opt/ocr.onnx"\n'
        '[engines]\ncalibration = "calib"\n'
    )
    c = cfgmod.load(path)
    assert c.paths.root == tmp_path
    assert c.paths.models_dir == tmp_path / "m"
    assert c.paths.state_dir == Path("/var/tmp/st")
    assert c.paths.cache_dir == tmp_path / "cache"
    assert c.models.plate.source == tmp_path / "m" / "sub" / "best.pt"
    assert c.models.ocr.source == Path("/opt/ocr.onnx")
    assert c.models.ocr.dictionary == tmp_path / "m" / "trained" / "ocr-alprd-plate-dict.txt"
    assert c.engines.calibration == tmp_path / "calib"
    assert c.outputs.jsonl.path == Path("/var/tmp/st/reads.jsonl")


def test_root_defaults_to_the_config_directory(write_config, tmp_path):
    c = cfgmod.load(write_config(""))
    assert c.paths.root == tmp_path / "etc"
    assert c.paths.models_dir == tmp_path / "etc" / "models"


def test_resolution_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cfgmod.load(DEFAULT_FILE).paths.models_dir == REPO / "models"
    relative = Path(os.path.relpath(DEFAULT_FILE, tmp_path))
    assert cfgmod.load(relative).paths.root == REPO


# --------------------------------------------------------------------------- discovery


def test_discovery_order(tmp_path):
    checkout = tmp_path / "checkout.toml"
    system = tmp_path / "system.toml"
    find = cfgmod.find_config
    checkout.touch()
    system.touch()
    kw = {"checkout_config": checkout, "system_config": system}
    assert find("x.toml", env={"ALPRD_CONFIG": "e.toml"}, **kw) == cfgmod.Located(
        Path("x.toml"), "--config"
    )
    assert find(None, env={"ALPRD_CONFIG": "e.toml"}, **kw).how == "$ALPRD_CONFIG"
    assert find(None, env={}, **kw) == cfgmod.Located(checkout, "checkout")
    checkout.unlink()
    assert find(None, env={}, **kw) == cfgmod.Located(system, "system")
    system.unlink()
    with pytest.raises(cfgmod.ConfigError, match="no configuration file found"):
        find(None, env={}, **kw)


def test_the_checkout_config_is_found_without_flags(monkeypatch, tmp_path):
    monkeypatch.delenv("ALPRD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # from anywhere, the checkout alprd runs from
    assert cfgmod.find_config() == cfgmod.Located(DEFAULT_FILE, "checkout")


# --------------------------------------------------------------------------- alprd check-config


def test_check_config_ok(capsys):
    assert main(["check-config", str(DEFAULT_FILE)]) == ExitCode.OK
    assert capsys.readouterr().out == "ok\n"


def test_check_config_uses_alprd_config_env(monkeypatch, write_config, capsys):
    monkeypatch.setenv("ALPRD_CONFIG", str(write_config("[engines]\nbatch_size = -1\n")))
    assert main(["check-config"]) == ExitCode.CONFIG
    assert "engines.batch_size: must be >= 1" in capsys.readouterr().err


def test_check_config_warns_about_model_files_not_fetched(write_config, capsys):
    assert main(["check-config", str(write_config(""))]) == ExitCode.OK
    out = capsys.readouterr()
    assert out.out == "ok\n"
    assert "models.plate.source: file not found" in out.err
    assert "alprd models fetch" in out.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[engines]\nbackend = 'auto'\nworkers = 2\n", ":3: engines.workers: unknown key"),
        ("[engines]\nbatch_size = 'two'\n", ":2: engines.batch_size: must be a valid integer"),
        ("[engines\nbackend = 'auto'\n", ":1: TOML syntax error:"),
        (
            f"[metrics]\naddress = '{'a' * 70}'\n",
            f":2: metrics.address: not an IP address or host name: '{'a' * 70}'",
        ),
    ],
    ids=["unknown-key", "bad-type", "toml-syntax", "bad-address"],
)
def test_check_config_cli_errors(write_config, text, expected):
    """The real console entry point: one clear line, the config exit code, no traceback."""
    path = write_config(text)
    proc = run_alprd("check-config", str(path))
    assert proc.returncode == ExitCode.CONFIG == 78
    assert proc.stdout == ""
    assert f"error: {path}{expected}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_check_config_missing_file_is_one_line(tmp_path):
    proc = run_alprd("check-config", str(tmp_path / "absent.toml"))
    assert proc.returncode == ExitCode.CONFIG
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'absent.toml'}: file not found; pass --config PATH or set ALPRD_CONFIG"
    ]


def test_global_config_option_before_or_after_the_command(write_config, capsys):
    path = str(write_config("[engines]\nprecision = 'fp64'\n"))
    assert main(["--config", path, "models", "list"]) == ExitCode.CONFIG
    assert main(["models", "list", "--config", path]) == ExitCode.CONFIG
    assert capsys.readouterr().err.count("engines.precision: must be one of") == 2


def test_toml_parse_of_the_default_file_has_no_surprises():
    """The documented file is plain TOML a user's own tools can read."""
    data = tomllib.loads(DEFAULT_FILE.read_text())
    assert set(data) == {
        "paths",
        "engines",
        "models",
        "sources",
        "tracking",
        "motion",
        "voting",
        "plates",
        "outputs",
        "storage",
        "privacy",
        "lists",
        "gate",
        "service",
        "metrics",
        "web",
    }


def test_a_reload_rebuilds_only_the_engines_whose_settings_changed():
    """The engine side of a reload: a role whose model settings changed is rebuilt
    (in the background), a role no longer served goes, one served again comes
    back; thresholds and cameras change no engine."""
    from alprd.engines.serving import engine_changes

    def config(**models: dict[str, object]) -> cfgmod.Config:
        return cfgmod.Config.model_validate({"models": models})

    old = config(plate={"confidence": 0.25})
    same = engine_changes(old, config(plate={"confidence": 0.6}), ["vehicle", "plate", "ocr"])
    assert (same.added, same.rebuilt, same.removed) == ([], [], [])
    plate = engine_changes(old, config(plate={"precision": "fp32"}), ["vehicle", "plate", "ocr"])
    assert (plate.added, plate.rebuilt, plate.removed) == ([], ["plate"], [])
    off = config(vehicle={"enabled": False})
    gone = engine_changes(old, off, ["vehicle", "plate", "ocr"])
    assert (gone.added, gone.rebuilt, gone.removed) == ([], [], ["vehicle"])
    back = engine_changes(off, old, ["plate", "ocr"])
    assert (back.added, back.rebuilt, back.removed) == (["vehicle"], [], [])
    every = engine_changes(old, old.model_copy(update={"engines": old.engines.model_copy(
        update={"backend": "onnxruntime"})}), ["vehicle", "plate", "ocr"])  # fmt: skip
    assert every.rebuilt == ["vehicle", "plate", "ocr"]


def test_a_time_zone_must_be_one_the_system_knows(tmp_path):
    path = tmp_path / "alprd.toml"
    path.write_text('[web]\ntime_zone = "Mars/Base"\n[lists]\ntime_zone = "Europe/Lisbon"\n')
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(path)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:2: web.time_zone: not a time zone name: 'Mars/Base' (e.g. Europe/Lisbon)"
    ]
