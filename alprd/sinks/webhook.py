"""HTTP POST of each event's JSON to a URL (standard library only).

A 2xx answer is success. Anything else (another status, a redirect, a refused or
timed-out connection) raises `SinkError`; the outbox does the retrying.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import IO, Any

from alprd.log import redact
from alprd.sinks.base import Record, SinkError


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send(request: urllib.request.Request, timeout: float) -> int:
    """Send `request` once, following no redirect: its 2xx status, else
    ConnectionError saying why, with the URL (its password masked)."""
    where = redact(request.full_url)
    try:
        response: IO[bytes]
        with _OPENER.open(request, timeout=timeout) as response:
            status = int(getattr(response, "status", 200))
            response.read(65536)  # drain a little so the connection closes cleanly
    except urllib.error.HTTPError as exc:
        raise ConnectionError(f"{where}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ConnectionError(f"{where}: {reason}") from exc
    if not 200 <= status < 300:
        raise ConnectionError(f"{where}: HTTP {status}")
    return status


def _split_credentials(url: str) -> tuple[str, str | None]:
    """(`url` without ``user:password@``, its HTTP Basic ``Authorization`` value or None);
    urllib would take ``user:password@host`` for the host name."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


class WebhookSink:
    name = "webhook"

    def __init__(
        self, url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 5.0
    ) -> None:
        if not re.match(r"^https?://", url):
            raise ValueError(f"url must be an http:// or https:// URL; got {redact(url)!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0; got {timeout_s}")
        self.url, auth = _split_credentials(url)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if auth and not any(k.lower() == "authorization" for k in self.headers):
            self.headers["Authorization"] = auth
        self.timeout_s = timeout_s

    def write(self, record: Record) -> None:
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            send(request, self.timeout_s)
        except ConnectionError as exc:
            raise SinkError(str(exc)) from exc

    def close(self) -> None:
        """Nothing to release: one connection per request."""
