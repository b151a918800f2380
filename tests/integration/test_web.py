"""`alprd web` as a user runs it: the real command (uvicorn on a local port) over a
store the daemon's own sinks wrote (SQLite, snapshot JPEGs), read over HTTP."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.servers import free_port, wait_until
from support.web import T0, Site, api, get, record, request, serve, up, write_events

from alprd import config as cfgmod
from alprd.sinks.sqlite import SqliteSink


@pytest.fixture
def site(tmp_path: Path) -> Site:
    port = free_port()
    config = tmp_path / "alprd.toml"
    config.write_text(f'[paths]\nroot = "."\nstate_dir = "state"\n[web]\nport = {port}\n'
                      'time_zone = "Europe/Lisbon"\n')  # fmt: skip
    return Site(tmp_path, config, port)


@pytest.fixture
def events(site: Site) -> list[dict]:
    return write_events(cfgmod.load(site.config), 120)


@pytest.fixture
def web(site: Site, events: list[dict]) -> Iterator[Site]:
    proc = serve(site)
    yield site
    proc.terminate()
    proc.wait(10)


def test_every_event_comes_once_newest_first_a_page_at_a_time(web, events):
    seen, after, pages = [], "", 0
    while True:
        page = api(web, f"/api/v1/events?limit=50{'&after=' + after if after else ''}")
        seen += page["events"]
        pages += 1
        if page["next"] is None:
            break
        after = page["next"]
    assert pages == 3
    assert [e["id"] for e in seen] == [e["id"] for e in reversed(events)]
    first = seen[0]  # the fields the daemon stored, snapshots as URLs to fetch
    assert set(first) >= {"camera", "plate", "confidence", "char_confidences", "reads",
                          "vehicle_class", "known_label", "format", "first_seen"}  # fmt: skip
    assert first["snapshots"] == [f"/api/v1/events/{first['id']}/images/plate",
                                  f"/api/v1/events/{first['id']}/images/vehicle"]  # fmt: skip


def test_search_by_pattern_fuzzy_camera_label_and_time(web, events):
    def plates(query: str) -> list[str]:
        return [e["plate"] for e in api(web, "/api/v1/events?limit=500&" + query)["events"]]

    assert set(plates("plate=L41*")) == {"L417VS", "L417V5", "L41XYZ"}
    assert set(plates("plate=l417vs&fuzzy=1")) == {"L417VS", "L417V5"}
    assert set(plates("plate=L417VS")) == {"L417VS"}
    assert set(plates("known=staff")) == {"ABC1234"}
    assert len(plates("camera=yard")) == 60
    # events[0] at 2026-11-30T00:53:20Z, a minute apart; Lisbon is on UTC in winter
    assert len(plates("since=2026-11-30T01:03:20&until=2026-11-30T01:13:20")) == 10
    assert plates("plate=ZZZ*") == []


def test_an_event_its_images_and_nothing_outside_the_snapshot_folder(web, events, site):
    e = events[-1]
    assert api(web, f"/api/v1/events/{e['id']}")["plate"] == e["plate"]
    status, headers, body = get(web, f"/api/v1/events/{e['id']}/images/plate")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert body[:2] == b"\xff\xd8"
    # a record naming a file outside the snapshot folder (a store edited by hand)
    outside = site.root / "secret"
    outside.mkdir()
    rec = record("EVIL1", "gate", T0, [str(outside / "x-plate.jpg")])
    rec["snapshots"] = [str(outside / f"{rec['id']}-plate.jpg"),
                        str(site.root / "state" / "snapshots" / ".." / ".." / "secret" /
                            f"{rec['id']}-vehicle.jpg")]  # fmt: skip
    for path in rec["snapshots"]:
        Path(os.path.normpath(path)).write_bytes(b"\xff\xd8secret")
    sink = SqliteSink(site.root / "state" / "reads.db")
    sink.write(rec)
    sink.close()
    for kind in ("plate", "vehicle"):
        assert get(web, f"/api/v1/events/{rec['id']}/images/{kind}")[0] == 404
    for path in ("/api/v1/events/..%2F..%2Fsecret/images/plate", "/static/..%2F..%2Fsecret",
                 f"/api/v1/events/{e['id']}/images/..%2F..%2F..%2Fsecret"):  # fmt: skip
        status, _, body = get(web, path)
        assert status == 404 and b"secret" not in body


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/api/v1/events?limit=100000", 400, "limit: 1 to 500"),
        ("/api/v1/events?limit=0", 400, "limit: 1 to 500"),
        ("/api/v1/events?plate=" + "A" * 5000, 400, "plate: letters, digits"),
        ("/api/v1/events?plate=L4*&fuzzy=1", 400, "fuzzy: only with a plate"),
        ("/api/v1/events?plate=AB&fuzzy=7", 400, "fuzzy: 0 to 1"),
        ("/api/v1/events?fuzzy=x", 422, "fuzzy"),
        ("/api/v1/events?since=yesterday", 400, "expected 30m, 2h, 7d"),
        ("/api/v1/events?after=%00%01", 400, "after: not a cursor"),
        ("/api/v1/events/nope", 404, "no event"),
        ("/api/v1/export?format=xml", 422, "format"),
        ("/search?limit=0", 400, "limit: 1 to 500"),
    ],
)
def test_a_bad_request_gets_a_4xx_naming_what_is_wrong_never_a_traceback(web, path, status, says):
    got, _, body = get(web, path)
    assert got == status, body[:300]
    assert says.encode() in body and b"Traceback" not in body


def test_pages_render_for_a_browser_with_security_headers(web, events):
    newest = events[-1]
    for path, expect in [
        ("/", newest["plate"]),
        ("/search?plate=L41*", "L41XYZ"),
        (f"/events/{newest['id']}", f"/api/v1/events/{newest['id']}/images/vehicle"),
        ("/status", "alprd is not running"),
        ("/fragments/live", newest["id"]),
        ("/static/live.js", "fragments/live"),
    ]:
        status, headers, body = get(web, path)
        assert status == 200 and expect in body.decode(), path
        assert headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
    detail = get(web, f"/events/{newest['id']}")[2].decode()
    assert "WET" in detail  # times in the site's time zone (Lisbon: WET in winter)
    runner_up = newest["plate"][:-1] + "?"  # what the pass's other reads said
    assert f'<td class="plate">{runner_up}</td><td>1</td><td>0.610</td>' in detail
    spec = api(web, "/api/v1/openapi.json")
    assert "/api/v1/events" in spec["paths"] and "/api/v1/events/{event_id}" in spec["paths"]


def test_an_export_holds_every_event_of_the_search(web, events):
    status, headers, body = get(web, "/api/v1/export?plate=L41*&format=csv")
    assert status == 200 and "attachment" in headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == sum(e["plate"].startswith("L41") for e in events) == 72
    assert {r["plate"] for r in rows} == {"L417VS", "L417V5", "L41XYZ"}
    lines = get(web, "/api/v1/export?camera=gate&format=json")[2].decode().splitlines()
    assert len(lines) == 60 and all(json.loads(x)["camera"] == "gate" for x in lines)


def test_events_the_daemon_writes_while_it_serves_appear(web, site):
    config = cfgmod.load(site.config)
    before = api(web, "/api/v1/events?limit=1")["events"][0]
    new = write_events(config, 3, start=time.time())
    assert api(web, "/api/v1/events?limit=1")["events"][0]["id"] == new[-1]["id"] != before["id"]
    assert new[-1]["id"] in get(web, "/fragments/live")[2].decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")
def test_it_reads_the_store_from_a_read_only_folder_with_the_daemon_stopped(site, events):
    """A read-only state folder (a read-only mount): no WAL files to read through, none can be
    made; then the daemon writes again (its files open) and the new events are seen."""
    state = site.root / "state"
    proc = serve(site, read_only=state)
    try:
        assert len(api(site, "/api/v1/events?limit=500")["events"]) == 120
        assert get(site, f"/api/v1/events/{events[0]['id']}/images/plate")[0] == 200
        writer = SqliteSink(state / "reads.db")  # the daemon starts again: WAL files
        rec = record("NEW123", "gate", time.time())
        writer.write(rec)
        assert api(site, "/api/v1/events?limit=1")["events"][0]["id"] == rec["id"]
        second = record("NEW456", "gate", time.time() + 1)
        writer.write(second)  # read through the WAL, not from an immutable snapshot
        assert api(site, "/api/v1/events?limit=1")["events"][0]["id"] == second["id"]
        writer.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode in (0, -15)


def test_another_address_than_loopback_is_refused_without_users(site):
    done = subprocess.run(
        [sys.executable, "-m", "alprd", "--config", str(site.config), "web",
         "--address", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 78
    assert "web.address = '0.0.0.0'" in done.stderr and "alprd web passwd" in done.stderr


def test_with_users_every_page_and_call_needs_a_login_or_a_token(site, events):
    """Users made with the real command; then another address than loopback is
    served (0.0.0.0), and nothing but the login page answers without a login."""
    made = subprocess.run(
        [sys.executable, "-m", "alprd", "--config", str(site.config), "web", "passwd", "ana",
         "--password-stdin"], input="a long password\n", capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (site.root / "state" / "web-users").stat().st_mode & 0o777 == 0o600
    token = subprocess.run(
        [sys.executable, "-m", "alprd", "--config", str(site.config), "web", "token", "ha"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    command = [sys.executable, "-m", "alprd", "--config", str(site.config), "web",
               "--address", "0.0.0.0"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: request(site, "GET", "/login")[0] == 200 if up(site) else False,
                   timeout=30, what="alprd web with users")  # fmt: skip
        newest = events[-1]
        # without a login: the API says 401, a page sends to the login page
        status, headers, body = request(site, "GET", "/api/v1/events")
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        for path in ("/", f"/events/{newest['id']}", "/api/v1/openapi.json"):
            status, headers, _ = request(site, "GET", path)
            assert status in (303, 401), path
        assert request(site, "GET", "/search")[1]["location"] == "/login?next=%2Fsearch"
        assert request(site, "GET", f"/api/v1/events/{newest['id']}/images/plate")[0] == 401
        assert request(site, "GET", "/static/alprd.css")[0] == 200
        # a wrong password, a login from another site, then the right one
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = request(site, "POST", "/login", "user=ana&password=nope&next=/", form)
        assert status == 401 and b"Wrong user or password" in body
        evil = {**form, "Origin": "https://evil.example"}
        body_ok = "user=ana&password=a+long+password&next=/search"
        assert request(site, "POST", "/login", body_ok, evil)[0] == 403
        status, headers, _ = request(site, "POST", "/login", body_ok, form)
        assert status == 303 and headers["location"] == "/search"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        session = {"Cookie": cookie.split(";")[0]}
        status, _, body = request(site, "GET", "/", headers=session)
        assert status == 200 and newest["plate"].encode() in body and b"Log out" in body
        assert request(site, "GET", "/api/v1/events?limit=1", headers=session)[0] == 200
        # an API token, and a forged one
        bearer = {"Authorization": f"Bearer {token}"}
        status, _, body = request(site, "GET", "/api/v1/events?limit=2", headers=bearer)
        assert status == 200 and len(json.loads(body)["events"]) == 2
        assert (
            request(site, "GET", "/api/v1/events", headers={"Authorization": "Bearer x"})[0] == 401
        )
        # an open redirect is not one
        away = body_ok.replace("/search", "//evil.example/")
        status, headers, _ = request(site, "POST", "/login", away, form)
        assert status == 303 and headers["location"] == "/"
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_gates_audit_records_as_api_and_page(web, site):
    """What `alprd.sinks.gate` records (the daemon's own writer, into the store the
    events are in) is listed newest first, by camera, on /gate and the API."""
    from alprd.pipeline.lists import Decision, ListEntry
    from alprd.pipeline.types import PassCall
    from alprd.settings.gate import GateConfig
    from alprd.settings.outputs import MqttOutput
    from alprd.sinks.gate import AuditLog, Gate

    config = cfgmod.load(site.config)
    assert api(site, "/api/v1/actions") == []  # a store without gate records yet
    entry = ListEntry("residents", "allow", "AB123CD", "Ann")
    from zoneinfo import ZoneInfo

    from alprd.pipeline.lists import PlateLists

    lists = PlateLists([entry], ZoneInfo("UTC"))
    gate = Gate(
        GateConfig.model_validate({"actions": [
            {"name": "relay", "type": "command", "command": ["true"], "min_interval_s": 0},
            {"name": "bell", "type": "command", "command": ["false"], "on": ["unknown"],
             "retries": 0},
        ]}),
        MqttOutput(), lambda: lists, AuditLog(config.outputs.sqlite.path),
    )  # fmt: skip
    now = time.time()
    assert gate.submit(PassCall("north", 1, "AB123CD", 0.95, 2, now, 5, "arriving", now - 0.1)) \
        == Decision("allow", entry, 0.0)  # fmt: skip
    gate.submit(PassCall("south", 2, "ZZ999ZZ", 0.9, 2, now + 1, 9, "unknown", now + 0.9))
    gate.close()
    fired = api(site, "/api/v1/actions")
    assert sorted((f["camera"], f["action"], f["result"]) for f in fired) == [
        ("north", "relay", "ok"), ("south", "bell", "failed"),
    ]  # fmt: skip
    assert fired[0]["time"] >= fired[1]["time"]  # newest first (two threads: either first)
    fired.sort(key=lambda f: f["camera"], reverse=True)
    assert fired[1]["label"] == "Ann" and fired[1]["latency_ms"] >= 100
    assert "exit status 1" in fired[0]["detail"]
    assert [f["camera"] for f in api(site, "/api/v1/actions?camera=north")] == ["north"]
    status, _, page = get(site, "/gate")
    assert status == 200 and b"AB123CD" in page and b"residents: AB123CD (Ann)" in page
    assert b"failed" in page and b"exit status 1" in page
    assert get(site, "/api/v1/actions?limit=0")[0] == 422


def test_plate_lists_are_read_by_anyone_and_changed_only_with_a_login(site, events):
    """The lists `alprd lists` writes, through the API: read without users; a change
    needs a user or a token (a form post only from this site); the daemon's own
    `LiveLists` takes the change up; bad entries are 4xx with the field."""
    from alprd.sinks.lists import LiveLists

    config = cfgmod.load(site.config)
    subprocess.run([sys.executable, "-m", "alprd", "--config", str(site.config), "lists", "add",
                    "residents", "AB-123-CD", "--label", "Ann", "--days", "mon-fri"],
                   check=True, capture_output=True)  # fmt: skip
    proc = serve(site)
    try:
        assert api(site, "/api/v1/lists") == [{"name": "residents", "kind": "allow", "entries": [
            {"plate": "AB123CD", "label": "Ann", "from": None, "until": None, "days": "mon-fri",
             "hours": "", "distance": 0.0}]}]  # fmt: skip
        body = json.dumps({"label": "Bob", "distance": 1})
        status, _, said = request(site, "PUT", "/api/v1/lists/residents/entries/xy99zz", body,
                                  {"Content-Type": "application/json"})  # fmt: skip
        assert status == 403 and b"needs a login" in said  # no users: nobody may write
    finally:
        proc.terminate()
        proc.wait(10)
    token = subprocess.run(
        [sys.executable, "-m", "alprd", "--config", str(site.config), "web", "token", "ha"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    proc = serve(site)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        status, _, said = request(site, "PUT", "/api/v1/lists/residents/entries/xy99zz", body,
                                  {"Content-Type": "application/json"})  # fmt: skip
        assert status == 401
        status, _, said = request(site, "PUT", "/api/v1/lists/residents/entries/xy99zz", body,
                                  auth)  # fmt: skip
        assert status == 200, said
        assert json.loads(said)["plate"] == "XY99ZZ"
        live = LiveLists.of(config)  # what the daemon reads
        assert live.current.decide("XY99Z2", T0).verdict == "allow"  # 2/Z: within 1
        bad = json.dumps({"days": "funday"})
        status, _, said = request(site, "PUT", "/api/v1/lists/residents/entries/AB1", bad, auth)
        assert status == 400 and b"funday" in said
        status, _, said = request(site, "PUT", "/api/v1/lists/residents/entries/AB1",
                                  json.dumps({"kind": "deny"}), auth)  # fmt: skip
        assert status == 409 and b"is a allow list" in said
        status, _, _ = request(site, "PUT", "/api/v1/lists/bad%20name/entries/AB1", "{}", auth)
        assert status == 422
        assert request(site, "DELETE", "/api/v1/lists/residents/entries/AB123CD", None,
                       auth)[0] == 200  # fmt: skip
        assert request(site, "DELETE", "/api/v1/lists/residents/entries/AB123CD", None,
                       auth)[0] == 404  # fmt: skip
        live.refresh(force=True)
        assert live.current.decide("AB123CD", T0).verdict == "unknown"
        assert [e["plate"] for e in api_auth(site, "/api/v1/lists", token)[0]["entries"]] == [
            "XY99ZZ"
        ]
        assert request(site, "DELETE", "/api/v1/lists/residents", None, auth)[0] == 200
        assert api_auth(site, "/api/v1/lists", token) == []
        live.close()
    finally:
        proc.terminate()
        proc.wait(10)


def api_auth(site: Site, path: str, token: str) -> object:
    status, _, body = request(site, "GET", path, None, {"Authorization": f"Bearer {token}"})
    assert status == 200, body
    return json.loads(body)
