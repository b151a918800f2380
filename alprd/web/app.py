"""`alprd web`: the stored events in a browser and over a REST API (``/api/v1``).

An ASGI app (FastAPI) in a process of its own, reading what the daemon writes:
the SQLite store (`store.EventStore`, read-only), the snapshots and the status
file. Pages are rendered on the server (Jinja2); the live page polls the API.
Every response carries security headers; a bad query gets a 4xx naming the
parameter, never a traceback; an image is served only from the snapshot folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from alprd import __version__
from alprd import config as cfgmod
from alprd.log import get_logger
from alprd.observe import read_status
from alprd.pipeline.lists import Kind, ListEntry, days_text, hours_text
from alprd.settings.base import zone_of
from alprd.sinks.base import Record, SinkError
from alprd.sinks.gate import read_audit
from alprd.sinks.lists import ListStore, entry, iso_minutes, normal, read_lists
from alprd.sinks.privacy import Concealer
from alprd.web.auth import Credentials, Sessions
from alprd.web.store import (
    IMAGE_KINDS,
    PATTERN,
    BadQuery,
    EventStore,
    Search,
    StoreError,
    normal_plate,
    parse_time,
)

HERE = Path(__file__).parent
#: the most events one export writes
EXPORT_MAX = 100_000
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}
EXPORT_COLUMNS = ("id", "first_seen", "last_seen", "camera", "plate", "confidence", "reads",
                  "vehicle_class", "known_label", "format")  # fmt: skip


log = get_logger("alprd.web")

#: A list's name in the API (as `alprd lists` takes it).
LIST_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class EntryBody(BaseModel):
    """An entry of a plate list, as `alprd lists add` takes it: from/until dates or
    times in the lists' time zone, days ``mon-fri``, hours ``07:00-19:00``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    kind: Kind | None = None  # a new list's kind (default allow); must match an old one's
    label: str = Field("", max_length=200)
    from_: str | None = Field(None, alias="from")
    until: str | None = None
    days: str = ""
    hours: str = ""
    distance: float = 0.0


COOKIE = "alprd_session"
#: what a request may reach without a login (the login page and its stylesheet)
OPEN_PATHS = ("/login", "/static/")


def create_app(config: cfgmod.Config, credentials: Credentials | None = None) -> FastAPI:
    """The app over `config`'s store; with `credentials` (users or tokens), every
    page and API call needs a login or a token."""
    web = config.web
    credentials = credentials or Credentials({}, {})
    sessions = Sessions.fresh(web.session_hours * 3600)
    zone = zone_of(web.time_zone)
    state: dict[str, EventStore] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if "store" in state:
            state["store"].close()

    app = FastAPI(
        title="alprd", version=__version__, docs_url=None, redoc_url=None,
        openapi_url="/api/v1/openapi.json", lifespan=lifespan,
    )  # fmt: skip
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    pages = Jinja2Templates(directory=HERE / "templates")
    pages.env.filters["local"] = lambda iso: _local(iso, zone)

    opening = threading.Lock()

    def store() -> EventStore:
        """The store, opened at the first request that finds it (the daemon may
        not have written one yet)."""
        with opening:
            if "store" not in state:
                try:
                    state["store"] = EventStore(config.outputs.sqlite.path)
                except StoreError as exc:
                    raise HTTPException(503, str(exc)) from None
            return state["store"]

    def search_of(request: Request, limit: int | None, after: str | None) -> Search:
        q = request.query_params
        size = web.page_size if limit is None else limit
        if not 1 <= size <= web.max_page_size:
            raise BadQuery(f"limit: 1 to {web.max_page_size}")
        fuzzy = _int(q.get("fuzzy") or "0", "fuzzy")
        if not 0 <= fuzzy <= web.max_fuzzy:
            raise BadQuery(f"fuzzy: 0 to {web.max_fuzzy}")
        now = time.time()
        plate = normal_plate(q.get("plate") or "")
        return Search(
            plate=plate or None, fuzzy=fuzzy, camera=q.get("camera") or None,
            since=parse_time(q["since"], now, zone) if q.get("since") else None,
            until=parse_time(q["until"], now, zone) if q.get("until") else None,
            known=q.get("known") or None, vehicle=q.get("vehicle") or None,
            limit=size, after=after or None, hashed=hashed(plate),
        )  # fmt: skip

    def hashed(plate: str) -> str | None:
        """An exact plate's keyed hash, with privacy.hash_plates (the key is read
        at each search: the daemon makes it at its first start)."""
        if not (plate and PATTERN.fullmatch(plate) and plate.isalnum()):
            return None
        try:
            conceal = Concealer.for_reader(config.privacy)
        except (OSError, ValueError) as exc:
            raise HTTPException(503, f"cannot read the plate-hash key: {exc}") from None
        return conceal.hash(plate) if conceal else None

    def who(request: Request) -> str | None:
        cookie = request.cookies.get(COOKIE)
        if cookie and (user := sessions.user(cookie, time.time())):
            return user
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            name = credentials.check_token(token.strip())
            return f"token:{name}" if name else None
        return None

    @app.middleware("http")
    async def secure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        path = request.url.path
        response: Response
        if credentials and not path.startswith(OPEN_PATHS) and who(request) is None:
            if path.startswith("/api/"):
                response = JSONResponse({"detail": "authentication required: log in, or "
                                         "send Authorization: Bearer <token>"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
            else:
                response = RedirectResponse(f"/login?{urlencode({'next': path})}", 303)
        else:
            response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        return pages.TemplateResponse(request, "login.html", {"next": _local_path(next),
                                                              "problem": ""})  # fmt: skip

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return JSONResponse({"detail": "cross-site login refused"}, status_code=403)
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
        user, password = form.get("user", [""])[0], form.get("password", [""])[0]
        target = _local_path(form.get("next", ["/"])[0])
        ok = False
        if credentials:
            ok = await run_in_threadpool(credentials.check_password, user, password)
        if ok:
            response = RedirectResponse(target, 303)
            response.set_cookie(
                COOKIE, sessions.issue(user, time.time()), max_age=int(sessions.lifetime_s),
                httponly=True, samesite="strict", secure=request.url.scheme == "https",
            )  # fmt: skip
            return response
        await asyncio.sleep(1.0)  # a guess costs a second
        return pages.TemplateResponse(
            request, "login.html", {"next": target, "problem": "Wrong user or password."},
            status_code=401,
        )  # fmt: skip

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        return response

    @app.exception_handler(BadQuery)
    async def bad_query(request: Request, exc: BadQuery) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreError)
    async def unreadable(request: Request, exc: StoreError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    # ---------------------------------------------------------------- API

    @app.get("/api/v1/events")
    def events(request: Request, limit: int | None = None, after: str | None = None,
               plate: str | None = None, fuzzy: int = 0, camera: str | None = None,
               since: str | None = None, until: str | None = None, known: str | None = None,
               vehicle: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Events newest first, a page at a time: pass `next` back as `after`.
        `plate`: exact, or with * and ?; `fuzzy`: up to that many characters
        differ; `since`/`until`: ISO 8601 (the site's time zone unless it says) or
        ago (`30m`, `2h`, `7d`)."""
        page = store().search(search_of(request, limit, after))
        return {"events": [_public(e) for e in page.events], "next": page.next}

    @app.get("/api/v1/events/{event_id}")
    def event(event_id: str) -> dict[str, Any]:
        record = store().event(event_id)
        if record is None:
            raise HTTPException(404, f"no event {event_id[:40]!r}")
        return _public(record)

    @app.get("/api/v1/events/{event_id}/images/{kind}")
    def image(event_id: str, kind: str) -> FileResponse:
        """The event's plate or vehicle snapshot (JPEG)."""
        if kind not in IMAGE_KINDS:
            raise HTTPException(404, f"no such image: {kind[:20]!r} (plate, vehicle)")
        path = store().image(event_id, kind, config.outputs.snapshots.path)
        if path is None:
            raise HTTPException(404, "no such image (never taken, or removed by the quota)")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/api/v1/export")
    def export(request: Request, format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv",
               plate: str | None = None, fuzzy: int = 0, camera: str | None = None,
               since: str | None = None, until: str | None = None, known: str | None = None,
               vehicle: str | None = None) -> StreamingResponse:  # fmt: skip
        """Every event of a search (at most EXPORT_MAX), as CSV or JSON lines."""
        first = search_of(request, web.max_page_size, None)
        name = f"alprd-events.{'csv' if format == 'csv' else 'jsonl'}"
        body = _csv(store(), first) if format == "csv" else _jsonl(store(), first)
        return StreamingResponse(
            body, media_type="text/csv" if format == "csv" else "application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )  # fmt: skip

    @app.get("/api/v1/actions")
    def actions(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                camera: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """The gate's audit records, newest first: what each decision of a gate
        camera fired, and how it went."""
        return [asdict(f) for f in read_audit(config.outputs.sqlite.path, limit, camera)]

    # ------------------------------------------------------------ plate lists

    lists_zone = zone_of(config.lists.time_zone)

    def entry_json(e: ListEntry) -> dict[str, Any]:
        w = e.window
        return {
            "plate": e.plate, "label": e.label,
            "from": iso_minutes(w.valid_from, lists_zone),
            "until": iso_minutes(w.valid_until, lists_zone),
            "days": days_text(w.days), "hours": hours_text(w.hours), "distance": e.max_distance,
        }  # fmt: skip

    @app.get("/api/v1/lists")
    def plate_lists() -> list[dict[str, Any]]:
        """The plate lists the daemon decides by, each with its entries (times in
        the lists' time zone)."""
        try:
            found = read_lists(config.lists.path)
        except SinkError as exc:
            raise HTTPException(503, str(exc)) from None
        return [{"name": name, "kind": kind, "entries": [entry_json(e) for e in entries]}
                for name, kind, entries in found]  # fmt: skip

    def writer(request: Request) -> str:
        """Who may change the lists: a logged-in user or a token holder (a form
        post only from a page of this site); none while there are no users."""
        if not credentials:
            raise HTTPException(403, "changing the lists needs a login: add a user "
                                "(alprd web passwd NAME) or a token (alprd web token NAME) "
                                "first")  # fmt: skip
        user = who(request)
        if user is None:  # the middleware let it through: cannot happen with users
            raise HTTPException(401, "authentication required")
        if request.cookies.get(COOKIE) and not _same_origin(request):
            raise HTTPException(403, "a change from another site's page is refused")
        return user

    def write_lists() -> ListStore:
        try:
            return ListStore(config.lists.path)
        except SinkError as exc:
            raise HTTPException(
                503,
                f"{exc}: alprd web's user must be able to write the lists' file "
                "(lists.path) and its folder",
            ) from None

    @app.put("/api/v1/lists/{name}/entries/{plate}")
    def put_entry(request: Request, name: Annotated[str, PathParam(pattern=LIST_NAME)], plate: str,
                  body: EntryBody) -> dict[str, Any]:  # fmt: skip
        """Add an entry to list `name` (made with `kind` if new), or replace the
        entry of that plate; the daemon takes it up within lists.refresh_s."""
        user = writer(request)
        try:
            e = entry(plate, body.label, body.from_ or "", body.until or "", body.days,
                      body.hours, str(body.distance), lists_zone, name,
                      body.kind or "allow")  # fmt: skip
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        store = write_lists()
        try:
            store.add(name, [e], body.kind)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        finally:
            store.close()
        log.info("list_changed", by=user, list=name, plate=e.plate, change="added")
        return entry_json(e)

    @app.delete("/api/v1/lists/{name}/entries/{plate}")
    def delete_entry(request: Request, name: str, plate: str) -> dict[str, Any]:
        user = writer(request)
        store = write_lists()
        try:
            removed = store.remove(name, normal(plate))
        finally:
            store.close()
        if not removed:
            raise HTTPException(404, f"{normal(plate)} is not in list {name!r}")
        log.info("list_changed", by=user, list=name, plate=normal(plate), change="removed")
        return {"removed": removed}

    @app.delete("/api/v1/lists/{name}")
    def delete_list(request: Request, name: str) -> dict[str, Any]:
        user = writer(request)
        store = write_lists()
        try:
            known = name in {n for n, _, _ in store.lists()}
            removed = store.remove(name) if known else 0
        finally:
            store.close()
        if not known:
            raise HTTPException(404, f"no list {name!r}")
        log.info("list_changed", by=user, list=name, change="deleted", entries=removed)
        return {"removed": removed}

    @app.get("/api/v1/cameras")
    def cameras() -> list[dict[str, Any]]:
        return [asdict(c) for c in store().cameras()]

    @app.get("/api/v1/status")
    def status() -> dict[str, Any]:
        """What `alprd status` shows: engines, cameras, outbox; `running` false
        when the daemon has stopped or its status is stale."""
        from alprd.observe import is_running

        try:
            current = read_status(config.paths.state_dir)
        except PermissionError:
            raise HTTPException(503, "the status file is not readable by this user") from None
        if current is None:
            return {"running": False}
        running = current.status != "stopped" and is_running(current, stale_after_s=15.0)
        return {"running": running, **asdict(current), "metrics": _metrics_url(config)}

    # ---------------------------------------------------------------- pages

    @app.get("/", response_class=HTMLResponse)
    def live(request: Request) -> Response:
        page = store().search(Search(limit=web.page_size))
        return pages.TemplateResponse(request, "live.html", {"events": page.events})

    @app.get("/fragments/live", response_class=HTMLResponse)
    def live_rows(request: Request) -> Response:
        page = store().search(Search(limit=web.page_size))
        return pages.TemplateResponse(request, "_rows.html", {"events": page.events})

    @app.get("/search", response_class=HTMLResponse)
    def search_page(request: Request, after: str | None = None) -> Response:
        q = request.query_params
        problem, page = "", None
        try:
            limit = _int(q["limit"], "limit") if q.get("limit") else None
            page = store().search(search_of(request, limit, after))
        except BadQuery as exc:
            problem = str(exc)
        query = {k: v for k, v in q.items() if k != "after" and v}
        return pages.TemplateResponse(
            request, "search.html",
            {"q": q, "page": page, "problem": problem, "query": query,
             "cameras": [c.name for c in store().cameras()], "max_fuzzy": web.max_fuzzy},
            status_code=400 if problem else 200,
        )  # fmt: skip

    @app.get("/events/{event_id}", response_class=HTMLResponse)
    def event_page(request: Request, event_id: str) -> Response:
        record = store().event(event_id)
        if record is None:
            raise HTTPException(404, f"no event {event_id[:40]!r}")
        return pages.TemplateResponse(request, "event.html", {"e": _public(record)})

    @app.get("/gate", response_class=HTMLResponse)
    def gate_page(request: Request, camera: str | None = None) -> Response:
        return pages.TemplateResponse(
            request, "gate.html", {"fired": actions(web.page_size, camera), "camera": camera}
        )

    @app.get("/status", response_class=HTMLResponse)
    def status_page(request: Request) -> Response:
        return pages.TemplateResponse(
            request, "status.html", {"s": status(), "cameras": store().cameras()}
        )

    return app


def _local_path(target: str) -> str:
    """`target` if it is a path on this site, else "/" (no redirect elsewhere)."""
    ok = target.startswith("/") and not target.startswith(("//", "/\\"))
    return target if ok else "/"


def _same_origin(request: Request) -> bool:
    """A form post from a page of this site: its Origin (or Referer) is this host."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True  # not a browser (curl): no cookie to ride on
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def _public(record: Record) -> Record:
    """A stored event as the API gives it: the same fields, with the snapshots as
    the URLs to fetch them from (never a file path of the server)."""
    kinds = [k for k in IMAGE_KINDS
             for p in record.get("snapshots") or [] if str(p).endswith(f"-{k}.jpg")]  # fmt: skip
    return {**record,
            "snapshots": [f"/api/v1/events/{record['id']}/images/{k}" for k in kinds]}  # fmt: skip


def _pages(store: EventStore, first: Search) -> Iterator[Record]:
    search, n = first, 0
    while True:
        page = store.search(search)
        for record in page.events:
            yield record
            n += 1
            if n >= EXPORT_MAX:
                return
        if page.next is None:
            return
        search = Search(**{**asdict(search), "after": page.next})


def _csv(store: EventStore, first: Search) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for record in _pages(store, first):
        writer.writerow(
            [record.get(c) if record.get(c) is not None else "" for c in EXPORT_COLUMNS]
        )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def _jsonl(store: EventStore, first: Search) -> Iterator[str]:
    for record in _pages(store, first):
        yield json.dumps(_public(record), ensure_ascii=False) + "\n"


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadQuery(f"{name}: a whole number") from None


def _local(when: str | float, zone: tzinfo) -> str:
    """An ISO 8601 time or epoch seconds in the site's time zone."""
    try:
        if isinstance(when, int | float):
            stamp = datetime.fromtimestamp(when, zone)
        else:
            stamp = datetime.fromisoformat(when).astimezone(zone)
    except (TypeError, ValueError, OverflowError):
        return str(when)
    return stamp.strftime("%Y-%m-%d %H:%M:%S %Z")


def _metrics_url(config: cfgmod.Config) -> str | None:
    m = config.metrics
    return f"http://{m.address}:{m.port}/metrics" if m.enabled else None
