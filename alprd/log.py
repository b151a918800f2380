"""Logging: structlog, configured once by the CLI.

Formats:
- ``journal`` (chosen automatically under systemd): one line per event,
  ``<N>event key=value ...`` where ``<N>`` is the syslog priority journald reads
  (so ``journalctl -p warning`` filters), no timestamp (journald adds one);
- ``console`` (a terminal): readable, coloured when stderr is a TTY;
- ``json``: one JSON object per line, for log shippers.

Events are snake_case facts with fields (``engine_loaded model=plate load_s=0.31``).
Credentials in URLs (``rtsp://user:pass@host``) and secret-looking fields are
redacted in every line, ours and third-party libraries' (stdlib logging is routed
through the same processors).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import IO, Any, Literal

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

Format = Literal["auto", "console", "journal", "json"]
FORMATS: tuple[str, ...] = ("auto", "console", "journal", "json")
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

#: syslog priorities (sd-daemon(3)) by structlog level name.
PRIORITY = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
}

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^\s:/@]+)(?::(?P<pw>[^\s/@]*))?@"
)
_QUERY_SECRET = re.compile(
    r"(?P<k>[?&;](?:password|passwd|pass|pwd|token|access_token|api_key|apikey|key|secret|auth)=)"
    r"[^&;\s\"']+",
    re.IGNORECASE,
)
_SECRET_FIELD = re.compile(r"(password|passwd|secret|token|api_key|apikey|authorization)", re.I)
MASK = "***"


def redact(text: str) -> str:
    """`text` with URL credentials and secret query parameters masked.

    ``rtsp://admin:hunter2@cam/1`` -> ``rtsp://admin:***@cam/1``;
    ``https://TOKEN@host`` -> ``https://***@host``; ``?token=abc`` -> ``?token=***``.
    """

    def _creds(m: re.Match[str]) -> str:
        if m.group("pw") is None:
            return f"{m.group('scheme')}{MASK}@"
        return f"{m.group('scheme')}{m.group('user')}:{MASK}@"

    return _QUERY_SECRET.sub(rf"\g<k>{MASK}", _URL_CREDENTIALS.sub(_creds, text))


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return MASK if value and _SECRET_FIELD.search(key) else redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(key, v) for v in value)
    return value


def redact_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: apply `redact` to every field, mask secret-named fields."""
    return {k: _redact_value(k, v) for k, v in event_dict.items()}


# --------------------------------------------------------------------------- renderers


def _logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = value if isinstance(value, str) else str(value)
    if text == "" or re.search(r"[\s\"=\\]", text):
        return json.dumps(text, ensure_ascii=False)
    return text


class JournalRenderer:
    """``<N>event k=v k2=v2``: a syslog priority prefix journald turns into PRIORITY=.

    A traceback continues on the following lines, each with the same prefix, so
    ``journalctl -p err`` shows it whole.
    """

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> str:
        ed = dict(event_dict)
        level = str(ed.pop("level", "info"))
        prio = PRIORITY.get(level, 6)
        event = str(ed.pop("event", ""))
        ed.pop("timestamp", None)
        exc = ed.pop("exception", None)
        fields = " ".join(f"{k}={_logfmt_value(v)}" for k, v in ed.items())
        line = f"<{prio}>{event}" + (f" {fields}" if fields else "")
        if exc:
            line += "".join(f"\n<{prio}>  {row}" for row in str(exc).rstrip().splitlines())
        return line


# --------------------------------------------------------------------------- set-up


def under_systemd(env: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> bool:
    """True when our stderr goes to the journal (systemd sets $JOURNAL_STREAM to the
    device:inode of that stream) or we run as a systemd unit ($INVOCATION_ID) without
    a terminal."""
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    journal = env.get("JOURNAL_STREAM", "")
    if journal:
        try:
            st = os.fstat(stream.fileno())
            dev, ino = (int(x) for x in journal.split(":", 1))
            if (st.st_dev, st.st_ino) == (dev, ino):
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return bool(env.get("INVOCATION_ID")) and not _isatty(stream)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def resolve_format(
    fmt: str, env: Mapping[str, str] | None = None, stream: IO[str] | None = None
) -> str:
    if fmt != "auto":
        return fmt
    return "journal" if under_systemd(env, stream) else "console"


_HANDLER_NAME = "alprd"


def configure(
    fmt: str = "auto",
    level: str = "info",
    stream: IO[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Set up structlog and stdlib logging once for the process; returns the format
    actually used. Safe to call again (tests): the previous handler is replaced."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}; got {level!r}")
    stream = sys.stderr if stream is None else stream
    chosen = resolve_format(fmt, env, stream)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
    ]
    renderer: Processor
    if chosen == "journal":
        shared.append(structlog.processors.format_exc_info)
        renderer = JournalRenderer()
    elif chosen == "json":
        shared += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # without local variables: their values (the config) may hold secrets
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        ]
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        shared.append(structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False))
        renderer = structlog.dev.ConsoleRenderer(
            colors=_isatty(stream),
            exception_formatter=structlog.dev.RichTracebackFormatter(
                color_system="truecolor" if _isatty(stream) else None, show_locals=False
            ),
        )
    shared.append(redact_processor)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return chosen


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name or "alprd")
    return logger.bind(**initial) if initial else logger
