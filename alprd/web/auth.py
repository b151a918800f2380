"""Who may use `alprd web`: users with scrypt-hashed passwords and API tokens, in
one credentials file (`web.users_file`; else ``web-users`` in the state directory),
and the signed session cookie a login gives.

The file has one line per entry, ``#`` comments allowed:

- ``user:<name>:scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` (`alprd web passwd NAME`);
- ``token:<name>:sha256$<hash hex>`` (`alprd web token NAME` prints the token once).

A session cookie is ``<user>.<expiry>.<HMAC-SHA256>`` under a key made at start:
restarting `alprd web` ends every session. Pure functions but for `read_file` and
`write_entry`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
#: scrypt cost: about 50 ms and 16 MB a check on a small CPU
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
CREDENTIAL = "web-users"  # LoadCredential= name


class CredentialsError(ValueError):
    """The credentials file cannot be used: the message names the file and line."""


@dataclass(frozen=True)
class Credentials:
    users: dict[str, str]  # name -> scrypt$... hash
    tokens: dict[str, str]  # sha256 hex of the token -> its name

    def __bool__(self) -> bool:
        return bool(self.users or self.tokens)

    def check_password(self, name: str, password: str) -> bool:
        stored = self.users.get(name)
        if stored is None:
            check_password(password, DUMMY)  # the same time for a name that does not exist
            return False
        return check_password(password, stored)

    def check_token(self, token: str) -> str | None:
        """The token's name, or None."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        for known, name in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return name
        return None


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=256 << 20)  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


DUMMY = hash_password("", b"\0" * 16)


def parse(text: str, where: str) -> Credentials:
    users: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or parts[0] not in ("user", "token") or not NAME.fullmatch(parts[1]):
            raise CredentialsError(
                f"{where}:{number}: expected user:<name>:<hash> or token:<name>:<hash> "
                "(make entries with `alprd web passwd` and `alprd web token`)"
            )
        kind, name, secret = parts
        if kind == "user" and secret.startswith("scrypt$"):
            users[name] = secret
        elif kind == "token" and re.fullmatch(r"sha256\$[0-9a-f]{64}", secret):
            tokens[secret.split("$", 1)[1]] = name
        else:
            raise CredentialsError(f"{where}:{number}: {kind} {name!r}: not a hash alprd made")
    return Credentials(users, tokens)


def locate(users_file: Path | None, state_dir: Path, env: Mapping[str, str] | None = None,
           ) -> Path | None:  # fmt: skip
    """`web.users_file`; else systemd's credential ``web-users`` (LoadCredential=),
    where the service can read it; else ``web-users`` in the state directory if
    there is one; else None."""
    if users_file is not None:
        return users_file
    directory = (os.environ if env is None else env).get("CREDENTIALS_DIRECTORY")
    if directory and os.access(Path(directory) / CREDENTIAL, os.R_OK):
        return Path(directory) / CREDENTIAL
    beside = state_dir / CREDENTIAL
    return beside if beside.exists() else None


def read_file(path: Path | None) -> Credentials:
    if path is None:
        return Credentials({}, {})
    try:
        return parse(path.read_text(encoding="utf-8"), str(path))
    except PermissionError:
        raise CredentialsError(
            f"{path}: not readable by this user: make it with `sudo alprd web passwd NAME` "
            "(it is then the service's to read)"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read the credentials file: {exc}") from exc


def write_entry(path: Path, kind: str, name: str, secret: str) -> None:
    """Add or replace `kind:name:` in `path` (0600, atomically), owned by the owner
    of its folder: written by root into the service's state directory, it is the
    service's user's to read."""
    if not NAME.fullmatch(name):
        raise CredentialsError(f"{name!r}: a name is 1-64 letters, digits and _.@-")
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [x for x in lines if not x.strip().startswith(f"{kind}:{name}:")]
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join([*kept, f"{kind}:{name}:{secret}"]) + "\n")
    folder = path.parent.stat()
    if os.geteuid() == 0 and (folder.st_uid, folder.st_gid) != (0, 0):
        os.chown(tmp, folder.st_uid, folder.st_gid)
    os.replace(tmp, path)


def new_token() -> tuple[str, str]:
    """(the token to give out, what the file keeps)."""
    token = secrets.token_urlsafe(32)
    return token, "sha256$" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Sessions:
    """Signed session cookies: ``<user>.<expiry>.<mac>``."""

    key: bytes
    lifetime_s: float

    @classmethod
    def fresh(cls, lifetime_s: float) -> Sessions:
        return cls(secrets.token_bytes(32), lifetime_s)

    def issue(self, user: str, now: float) -> str:
        body = f"{user}.{int(now + self.lifetime_s)}"
        return f"{body}.{self._mac(body)}"

    def user(self, cookie: str, now: float) -> str | None:
        """The user of a valid, unexpired cookie; None otherwise."""
        try:
            user, expiry, mac = cookie.rsplit(".", 2)
            alive = int(expiry) > now
        except ValueError:
            return None
        body = f"{user}.{expiry}"
        return user if alive and hmac.compare_digest(mac, self._mac(body)) else None

    def _mac(self, body: str) -> str:
        digest = hmac.new(self.key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
