"""Configuration: one TOML file, validated against the schema in `alprd.settings`
(every setting, its default and its check); errors located by key and line.

Finding the file (every command does the same, see `find_config`):
``--config PATH``, else ``$ALPRD_CONFIG``, else ``etc/alprd.toml`` of the checkout
alprd runs from, else ``/etc/alprd/alprd.toml``.

Relative paths: see `alprd.settings`.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from alprd.log import redact
from alprd.settings import OCR_PRESETS as OCR_PRESETS
from alprd.settings import CameraConfig as CameraConfig
from alprd.settings import Config as Config
from alprd.settings import PlatesConfig as PlatesConfig
from alprd.settings import RoleModel as RoleModel

ENV_VAR = "ALPRD_CONFIG"
SYSTEM_CONFIG = Path("/etc/alprd/alprd.toml")
#: The checkout this module runs from (meaningful for an editable install or `make run`).
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_CONFIG = CHECKOUT_ROOT / "etc" / "alprd.toml"

# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, located as precisely as we can."""

    file: Path
    message: str
    key: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used. `problems` holds every reason, one line each."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------- finding


@dataclass(frozen=True)
class Located:
    path: Path
    how: str  # "--config", "$ALPRD_CONFIG", "checkout", "system"


def find_config(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    checkout_config: Path = CHECKOUT_CONFIG,
    system_config: Path = SYSTEM_CONFIG,
) -> Located:
    """Which config file a command uses. The first of: `explicit`, `$ALPRD_CONFIG`,
    the checkout's ``etc/alprd.toml``, ``/etc/alprd/alprd.toml``. An explicit choice
    is returned even when missing (so the error names it); the fallbacks must exist."""
    env = os.environ if env is None else env
    if explicit:
        return Located(Path(explicit), "--config")
    if env.get(ENV_VAR):
        return Located(Path(env[ENV_VAR]), f"${ENV_VAR}")
    if checkout_config.is_file():
        return Located(checkout_config, "checkout")
    if system_config.is_file():
        return Located(system_config, "system")
    raise ConfigError(
        [
            Problem(
                system_config,
                "no configuration file found; looked for --config, "
                f"${ENV_VAR}, {checkout_config} and {system_config}. "
                "Pass --config PATH or set ALPRD_CONFIG.",
            )
        ]
    )


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate one config file. Raises `ConfigError` listing every
    problem with its key path and line; never a traceback for a user's mistake."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(path, "file not found; pass --config PATH or set ALPRD_CONFIG")]
        ) from None
    except IsADirectoryError:
        raise ConfigError([Problem(path, "is a directory, expected a TOML file")]) from None
    except PermissionError:
        raise ConfigError(
            [Problem(path, "permission denied; run as a user that can read it")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, f"not UTF-8 text ({exc.reason})")]) from None
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    """Validate TOML `text` as if read from `path` (relative paths resolve against it)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        where = f" (column {m.group(2)})" if m else ""
        raise ConfigError([Problem(path, f"TOML syntax error: {msg}{where}", line=line)]) from None
    try:
        return Config.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(
            [_problem(path, text, dict(err)) for err in exc.errors(include_url=False)]
        ) from None


def _problem(path: Path, text: str, err: dict[str, Any]) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        msg = "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")
        if allowed:
            msg += f"; allowed: {', '.join(allowed)}"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        msg = f"must be {_BOUNDS[kind]} {bound}; got {_show(err.get('input'))}"
    elif kind == "literal_error":
        msg = f"must be one of {ctx.get('expected')}; got {_show(err.get('input'))}"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        # A model validator names its own key ("url: ...", "cameras[1].regions: ..."):
        # fold it into the key path.
        m = re.match(r"^([a-z_]+(?:\[\d+\]|\.[a-z_]+)*): (.*)$", msg)
        if m:
            keys = [int(k) if k.isdigit() else k for k in re.findall(r"[a-z_]+|\d+", m.group(1))]
            loc, msg = (*loc, *keys), m.group(2)
    else:
        msg = msg.replace("Input should be", "must be").replace("String should", "must")
        if "input" in err and not isinstance(err["input"], dict | list):
            msg += f"; got {_show(err['input'])}"
    return Problem(path, msg, key=_key(loc), line=_locate(text, loc))


_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
    "multiple_of": "a multiple of",
}


def _show(value: Any) -> str:
    text = redact(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the table at `loc` (for 'did you mean')."""
    cls: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if _is_model(cls) else None
        if field is None:
            return []
        cls = _model_in(field.annotation)
    return sorted(cls.model_fields) if _is_model(cls) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside `X`, `list[X]`, `X | None`, if any."""
    if _is_model(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")


def _locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of `loc` in the TOML text: the line of the key itself,
    else of the closest enclosing table header."""
    best: tuple[int, int] | None = None  # (matched parts, line)
    table: list[Any] = []
    counts: dict[tuple[Any, ...], int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            parts = _split_key(header.group(2))
            if header.group(1) == "[[":
                idx = counts.get(tuple(parts), -1) + 1
                counts[tuple(parts)] = idx
                table = [*parts, idx]
            else:
                table = list(parts)
            here: list[Any] = table
        else:
            assign = _ASSIGN.match(line)
            if not assign or line.lstrip().startswith("#"):
                continue
            here = [*table, *_split_key(assign.group(1))]
        n = _common_prefix(here, loc)
        if (n == len(here) or n == len(loc)) and (best is None or n > best[0]):
            best = (n, lineno)
            if n == len(loc):
                break
    return best[1] if best else None


def _split_key(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in key.split(".")]


def _common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# --------------------------------------------------------------------------- secrets


def secret_keys(config: Config) -> list[str]:
    """Key paths of the secrets `config` holds: passwords, webhook headers, URLs
    with credentials or secret query parameters."""
    out = []
    for i, cam in enumerate(config.cameras):
        if redact(cam.url) != cam.url:
            out.append(f"cameras[{i}].url")
    mqtt, hook = config.outputs.mqtt, config.outputs.webhook
    if mqtt.password:
        out.append("outputs.mqtt.password")
    if hook.headers:
        out.append("outputs.webhook.headers")
    if redact(hook.url) != hook.url:
        out.append("outputs.webhook.url")
    return out


def permission_warning(path: Path, config: Config) -> str | None:
    """A warning when every user may read `path` and it holds secrets, else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    secrets = secret_keys(config)
    if not (mode & 0o004 and secrets):
        return None
    return (
        f"{path} is readable by every user and holds secrets ({', '.join(secrets)}); "
        f"chmod 0640 {path} and give it a group the service runs in (for the systemd "
        "unit: a static group added with SupplementaryGroups= in a drop-in)"
    )
