"""The repository itself: imports run only downward through the layers
(ARCHITECTURE.md), and the tracked files speak about alprd and the hardware it
ran on, never about the environment it was developed in. Both also run in
`make lint`."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: alprd's top-level modules and packages, bottom first. A module may import
#: from its own layer and the layers below it, never from one above.
LAYERS: list[set[str]] = [
    {
        "__init__",
        "exitcodes",
        "log",
        "ops",
        "plates",
        "hashing",
        "bounded",
        "heap",
        "settings",
        "config",
    },
    {"fetch", "observe", "systemd", "control"},
    {"engines"},
    {"pipeline"},
    {"sinks", "train"},
    {"rebuild", "watch", "cameras", "startup"},
    {"service", "web"},
    {"cli", "__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def imports_of(path: Path) -> set[str]:
    """The alprd top-level names `path` imports, at module level or inside a
    function (a lazy import is an arrow too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "alprd":
                if len(parts) > 1:
                    out.add(parts[1])
                else:  # from alprd import config, __version__
                    out |= {a.name if a.name in LAYER else "__init__" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("alprd.")}
    return out


def test_imports_run_only_downward():
    wrong = []
    for path in sorted((REPO / "alprd").rglob("*.py")):
        top = path.relative_to(REPO / "alprd").parts[0].removesuffix(".py")
        assert top in LAYER, f"alprd/{top}: add it to a layer in LAYERS and ARCHITECTURE.md"
        for name in imports_of(path):
            assert name in LAYER, f"{path.relative_to(REPO)} imports unknown alprd.{name}"
            if LAYER[name] > LAYER[top]:
                wrong.append(f"{path.relative_to(REPO)} -> alprd.{name}")
    assert not wrong, "imports that run up a layer:\n" + "\n".join(wrong)


def test_the_layer_check_sees_a_lazy_import_up(tmp_path):
    bad = tmp_path / "config.py"
    bad.write_text(
        "def f():\n    from alprd.pipeline import rules\n    from alprd import service\n"
    )
    assert imports_of(bad) == {"pipeline", "service"}


#: Words that describe where alprd was developed rather than alprd. `../shared`
#: is allowed only where it is the default of the ALPRD_TEST_DATA setting.
BANNED = re.compile(
    r"workplace|device tool|this machine|this session|helper session|/root/out|"
    r"issue #\d|\.\./shared",
    re.IGNORECASE,
)
TEXT = {".py", ".md", ".txt", ".toml", ".json", ".sh", ".cfg", ".service", ".yaml", ".yml", ""}


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("git ls-files failed: run the repository checks in a git checkout")
    return [REPO / f for f in out]


def test_the_repository_speaks_about_alprd_only():
    found = []
    for path in tracked_files():
        if path.suffix not in TEXT or path == Path(__file__) or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = BANNED.search(line)
            if m and not (m.group(0) == "../shared" and "ALPRD_TEST_DATA" in line):
                found.append(f"{path.relative_to(REPO)}:{n}: {m.group(0)!r}: {line.strip()[:100]}")
    assert not found, (
        "say what alprd does and the hardware it ran on; name data by its setting "
        "($ALPRD_TEST_DATA) and features by name:\n" + "\n".join(found)
    )
