"""Who may have written a model: refuse files another user could have planted.

A `.pt` is a pickle (loading one runs its code) and an engine is machine code
for the runtime, so alprd loads them only from a models directory, and files,
that no one but root and alprd's own user can write. The rule follows OpenSSH's
StrictModes (with Debian's user-private-group allowance):

- the owner is root or the user alprd runs as;
- no write for others; group write only for the owner's private group (a group
  that no other user belongs to);
- a directory writable by others is accepted only with the sticky bit (as /tmp):
  there nobody can replace a file they do not own, and the files' own owners are
  checked.

`models.allow_unsafe_permissions = true` turns the refusal into a warning.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path


def _private_group(gid: int, owner: int) -> bool:
    """True when `gid` is `owner`'s primary group and no other user belongs to it."""
    try:
        group = grp.getgrgid(gid)
        account = pwd.getpwuid(owner)
    except KeyError:
        return False
    if account.pw_gid != gid or any(m != account.pw_name for m in group.gr_mem):
        return False
    return all(p.pw_uid == owner for p in pwd.getpwall() if p.pw_gid == gid)


def problem(path: Path, euid: int | None = None) -> str | None:
    """Why `path` (a model file or the models directory) cannot be trusted, or None."""
    euid = os.geteuid() if euid is None else euid
    try:
        st = path.stat()
    except FileNotFoundError:
        return None  # a missing file is reported elsewhere
    except OSError as exc:
        return f"{path}: cannot stat ({exc.strerror})"
    if st.st_uid not in (0, euid):
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return f"{path} is owned by {owner}, not by root or the user alprd runs as"
    directory = stat.S_ISDIR(st.st_mode)
    sticky = directory and bool(st.st_mode & stat.S_ISVTX)
    if st.st_mode & stat.S_IWOTH and not sticky:
        return f"{path} is writable by every user (mode {stat.filemode(st.st_mode)})"
    if st.st_mode & stat.S_IWGRP and not sticky and not _private_group(st.st_gid, st.st_uid):
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return f"{path} is writable by group {group} (mode {stat.filemode(st.st_mode)})"
    return None


def problems(paths: Iterable[Path], euid: int | None = None) -> list[str]:
    return [p for p in (problem(path, euid) for path in paths) if p is not None]
