"""Which model serves each role, kept across restarts, with the last good ones.

A model that served a role (started, or swapped in after validation) is recorded
in ``<state_dir>/served/served.json`` and kept there as a copy with its engine
(``served/<role>/<sha256[:16]>/``): the current one and the previous
``models.keep`` per role; older copies are removed. Files whose bytes were
rejected are remembered per role (by sha256), so a restart does not build them
again. `overlay` turns the config into the one that serves:

- a role whose ``source`` the config file sets keeps it (the config wins);
- any other role is served by the model last recorded for it (a dropped
  ``best.pt`` routed there), read from its file while that file holds the bytes
  that were recorded, or bytes not yet judged; from the kept copy when the file
  is gone or holds bytes that were rejected (last-known-good).

Writes are atomic (temporary file, fsync, rename); a damaged ``served.json`` is
set aside and alprd starts from the config alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from alprd import config as cfgmod
from alprd.engines import cache
from alprd.engines.base import ROLES, Role
from alprd.hashing import sha256_file
from alprd.log import get_logger

log = get_logger("alprd.served")

FILE = "served.json"
FORMAT = 1
MAX_REJECTED = 16  # remembered rejections per role
#: Free space a kept copy must leave on the state directory's filesystem: the
#: outputs (SQLite, JSONL, snapshots, outbox) come first.
KEEP_FREE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Served:
    """One model that served a role."""

    role: Role
    source: Path  # the file as named or dropped (absolute)
    sha256: str
    since: str  # ISO 8601 UTC
    generation: int = 1  # how many models this role has served, this one included
    dictionary: Path | None = None  # ocr only: what the role needs besides the file
    input_height: int | None = None
    input_width: int | None = None

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        for key in ("source", "dictionary"):
            d[key] = None if d[key] is None else str(d[key])
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Served:
        dictionary = d.get("dictionary")
        return cls(
            role=d["role"],  # type: ignore[arg-type]
            source=Path(str(d["source"])),
            sha256=str(d["sha256"]),
            since=str(d["since"]),
            generation=int(d.get("generation", 1)),  # type: ignore[call-overload]
            dictionary=Path(str(dictionary)) if dictionary else None,
            input_height=d.get("input_height"),  # type: ignore[arg-type]
            input_width=d.get("input_width"),  # type: ignore[arg-type]
        )


@dataclass
class _RoleRecord:
    current: Served | None = None
    history: list[Served] = field(default_factory=list)  # newest first
    rejected: dict[str, str] = field(default_factory=dict)  # sha256 -> reason


@dataclass(frozen=True)
class Choice:
    """How `overlay` serves one role: from `source`, and whether that is a kept copy
    standing in for a file that is gone or was rejected (`why`)."""

    role: Role
    source: Path
    entry: Served | None
    last_good: bool = False
    why: str = ""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ServedModels:
    def __init__(self, root: Path, keep: int = 3, max_bytes: float = float("inf")) -> None:
        """`keep` earlier models per role at most, their copies `max_bytes` at most
        with the current one's (the oldest go first; the current one always stays)."""
        self.root, self.keep, self.max_bytes = root, keep, max_bytes
        self._roles: dict[Role, _RoleRecord] = {r: _RoleRecord() for r in ROLES}
        self._read()

    # ------------------------------------------------------------------ reading

    def _read(self) -> None:
        path = self.root / FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for role, rec in data.get("roles", {}).items():
                if role not in self._roles:
                    continue
                cur = rec.get("current")
                self._roles[role] = _RoleRecord(
                    Served.from_json(cur) if cur else None,
                    [Served.from_json(h) for h in rec.get("history", [])],
                    {str(k): str(v) for k, v in rec.get("rejected", {}).items()},
                )
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = path.with_name(f"{FILE}.damaged")
            with contextlib.suppress(OSError):
                path.replace(aside)
            log.warning(
                "served_record_unreadable", file=str(path), reason=f"{type(exc).__name__}: {exc}",
                action=f"set aside as {aside.name}; serving what the config names",
            )  # fmt: skip
            self._roles = {r: _RoleRecord() for r in ROLES}

    def current(self, role: Role) -> Served | None:
        return self._roles[role].current

    def history(self, role: Role) -> list[Served]:
        """Earlier models of `role`, newest first (each kept)."""
        return list(self._roles[role].history)

    def rejection(self, role: Role, sha256: str) -> str | None:
        return self._roles[role].rejected.get(sha256)

    def kept(self, entry: Served) -> Path:
        """The kept copy of `entry`'s source."""
        return self.root / entry.role / entry.sha256[:16] / entry.source.name

    def kept_dictionary(self, entry: Served) -> Path | None:
        if entry.dictionary is None:
            return None
        return self.kept(entry).with_name(entry.dictionary.name)

    # ------------------------------------------------------------------ writing

    def record(self, entry: Served, engine: Path | None = None) -> Served:
        """`entry` serves its role from now on: its source (and dictionary) kept, with
        `engine` and its sidecar when given; the one before goes to the history.
        Returns the entry as stored (its generation numbered). OSError when the
        copy cannot be written (the record is then unchanged)."""
        rec = self._roles[entry.role]
        cur = rec.current
        if cur is not None and cur.sha256 == entry.sha256 and cur.source == entry.source:
            stored = replace(cur, dictionary=entry.dictionary, input_height=entry.input_height,
                             input_width=entry.input_width)  # fmt: skip
        else:
            stored = replace(entry, generation=(cur.generation + 1) if cur else 1)
        self._keep_files(stored, engine)
        if cur is not None and cur.sha256 != stored.sha256:
            older = [h for h in rec.history if h.sha256 not in (cur.sha256, stored.sha256)]
            rec.history = [cur, *older]
        rec.history = [h for h in rec.history if h.sha256 != stored.sha256][: self.keep]
        rec.current = stored
        while rec.history and self._size(stored.role) > self.max_bytes:
            rec.history.pop()  # the oldest first
        rec.rejected.pop(stored.sha256, None)
        self._write()
        self._prune(entry.role)
        return stored

    def reject(self, role: Role, sha256: str, reason: str) -> None:
        rec = self._roles[role]
        rec.rejected[sha256] = reason
        while len(rec.rejected) > MAX_REJECTED:
            rec.rejected.pop(next(iter(rec.rejected)))
        with contextlib.suppress(OSError):
            self._write()

    def _keep_files(self, entry: Served, engine: Path | None) -> None:
        folder = self.kept(entry).parent
        kept = self.kept(entry)
        if not kept.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            need = entry.source.stat().st_size + (engine.stat().st_size if engine else 0)
            free = shutil.disk_usage(self.root).free
            if free - need < KEEP_FREE_BYTES:
                raise OSError(
                    errno.ENOSPC,
                    f"{self.root} has {free / 2**20:.0f} MiB free; keeping a "
                    f"{need / 2**20:.0f} MiB copy would leave less than "
                    f"{KEEP_FREE_BYTES / 2**20:.0f} MiB for the outputs",
                )
            folder.mkdir(parents=True, exist_ok=True)
            _copy(entry.source, kept)
        if entry.dictionary is not None and entry.dictionary.is_file():
            _copy(entry.dictionary, folder / entry.dictionary.name)
        if engine is not None and engine.is_file():
            for src in (engine, cache.sidecar_path(engine)):  # named after the same stem
                if src.is_file() and src.parent != folder:
                    _link_or_copy(src, folder / src.name)

    def _size(self, role: Role) -> int:
        """Bytes of the kept copies of `role`'s current and earlier models."""
        rec = self._roles[role]
        total = 0
        for e in [rec.current, *rec.history]:
            folder = self.kept(e).parent if e is not None else None
            if folder is not None and folder.is_dir():
                total += sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        return total

    def _prune(self, role: Role) -> None:
        """Remove kept copies no longer current nor in the history."""
        rec = self._roles[role]
        wanted = {e.sha256[:16] for e in [rec.current, *rec.history] if e is not None}
        folder = self.root / role
        for d in folder.iterdir() if folder.is_dir() else ():
            if d.is_dir() and d.name not in wanted:
                shutil.rmtree(d, ignore_errors=True)

    def _write(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "roles": {
                role: {
                    "current": rec.current.to_json() if rec.current else None,
                    "history": [h.to_json() for h in rec.history],
                    "rejected": rec.rejected,
                }
                for role, rec in self._roles.items()
                if rec.current or rec.history or rec.rejected
            },
        }
        path = self.root / FILE
        tmp = path.with_name(f".{FILE}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    # ------------------------------------------------------------------ serving

    def choose(self, config: cfgmod.Config, role: Role) -> Choice:
        """Where `role` is served from (see the module docstring)."""
        rc = getattr(config.models, role)
        entry = self.current(role)
        if config.models.pinned(role) or entry is None:
            return Choice(role, rc.source, None)
        try:
            sha = sha256_file(entry.source)
        except OSError:
            sha = None
        if sha is None:
            return Choice(role, self.kept(entry), entry, True, f"{entry.source} is gone")
        reason = self.rejection(role, sha)
        if reason is not None:
            return Choice(
                role, self.kept(entry), entry, True,
                f"{entry.source.name} now holds a model that was rejected: {reason}",
            )  # fmt: skip
        return Choice(role, entry.source, entry)

    def overlay(self, config: cfgmod.Config) -> tuple[cfgmod.Config, dict[Role, Choice]]:
        """The config that serves: each role's source as `choose` says."""
        out = config
        choices: dict[Role, Choice] = {}
        for role in ROLES:
            choice = self.choose(config, role)
            choices[role] = choice
            if choice.entry is not None:
                out = assign(out, self.settings(choice.entry, choice.source, choice.last_good))
        return out, choices

    def settings(self, entry: Served, source: Path, kept: bool = False) -> Served:
        """`entry` as served from `source` (its kept dictionary with a kept copy)."""
        dictionary = self.kept_dictionary(entry) if kept else entry.dictionary
        return replace(entry, source=source, dictionary=dictionary)


def served_models(config: cfgmod.Config) -> ServedModels:
    """The record `config` says: state_dir/served, models.keep, models.keep_max_mb."""
    m = config.models
    return ServedModels(config.paths.state_dir / "served", m.keep, m.keep_max_mb * 2**20)


def entry_for(config: cfgmod.Config, role: Role, source: Path, sha256: str) -> Served:
    """What serving `role` from `source` with `config`'s settings looks like as a
    record (the recogniser's dictionary and input size come with it)."""
    if role != "ocr":
        return Served(role, source, sha256, now())
    oc = config.models.ocr
    return Served(
        role, source, sha256, now(), dictionary=oc.dictionary,
        input_height=oc.input_height, input_width=oc.input_width,
    )  # fmt: skip


def assign(config: cfgmod.Config, entry: Served) -> cfgmod.Config:
    """A copy of `config` with `entry`'s role served from its source (and, for the
    recogniser, its dictionary and input size)."""
    section = getattr(config.models, entry.role).model_copy(update={"source": entry.source})
    if entry.role == "ocr" and entry.dictionary is not None:
        section = section.model_copy(
            update={
                "dictionary": entry.dictionary,
                "input_height": entry.input_height or section.input_height,
                "input_width": entry.input_width,
            }
        )
    return config.with_model(entry.role, section)


def _copy(src: Path, dest: Path) -> None:
    """Whole or nothing: a failed copy (disk full) leaves no partial file."""
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _link_or_copy(src: Path, dest: Path) -> None:
    """Engines are installed by rename, never rewritten in place: a hard link is a
    safe copy of one."""
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        _copy(src, dest)
