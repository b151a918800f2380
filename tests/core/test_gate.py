"""The gate's pure parts: when a gate camera's pass is called, which actions a
decision fires, what an action's text becomes, and the ``[gate]`` settings' checks."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alprd import config as cfgmod
from alprd.pipeline.direction import direction
from alprd.pipeline.lists import UNKNOWN, Decision, ListEntry, PlateLists
from alprd.pipeline.types import PassCall, PassKey, Plate, PlateRead, Text, Vehicle
from alprd.pipeline.vote import Voter
from alprd.settings.gate import GateAction
from alprd.sinks.gate import NOT_ARRIVING, RATE_LIMITED, ActionError, fields, fill, plan

KEY = PassKey("vehicle", 7)


def read(t: float, text: str = "AB123", conf: float = 0.9, y: float = 100.0) -> PlateRead:
    box = (100.0, y, 200.0, y + 50)
    v = Vehicle((50.0, y - 100, 250.0, y + 70), 0.9, "car")
    return PlateRead(Plate(box, 0.9, v), Text(text, (conf,) * len(text)), int(t * 10), t)


def gate_voter(**kw: object) -> Voter:
    return Voter("gate", min_agreeing=0, dedupe_window_s=0,
                 travel=lambda a, b: direction(a, b, "down"), decide_after=2,
                 decide_confidence=0.7, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_pass_is_called_once_when_enough_reads_agree_and_its_event_still_ends_it():
    v = gate_voter()
    v.add(KEY, read(0.0))
    assert v.take_calls() == []  # one read: not yet
    v.add(KEY, read(0.1, "AB128"))  # disagrees: still one agreeing read
    assert v.take_calls() == []
    v.add(KEY, read(0.2))
    [call] = v.take_calls()
    assert (call.plate, call.reads, call.time, call.frame, call.track_id) == ("AB123", 2, 0.2, 2, 7)
    for t in (0.3, 0.4, 0.5):
        v.add(KEY, read(t))
    assert v.take_calls() == []  # once per pass
    event = v.end(KEY)
    assert event is not None and event.plate == "AB123" and event.reads == 6


def test_a_weak_vote_is_not_called():
    v = gate_voter()
    for t in (0.0, 0.1, 0.2):
        v.add(KEY, read(t, conf=0.5))
    assert v.take_calls() == [] and v.pending(KEY)


def test_with_arriving_only_a_pass_waits_until_its_direction_shows():
    v = gate_voter(decide_when_heading=True)
    v.add(KEY, read(0.0, y=100.0))
    v.add(KEY, read(0.1, y=110.0))  # agree, but the car moved 0.06 of its height
    assert v.take_calls() == [] and v.pending(KEY)
    v.add(KEY, read(0.2, y=200.0))  # 0.6 of its height down: arriving
    [call] = v.take_calls()
    assert call.direction == "arriving" and not v.pending(KEY)
    leaving = PassKey("vehicle", 8)
    v.add(leaving, read(1.0, y=200.0))
    v.add(leaving, read(1.1, y=100.0))
    [call] = v.take_calls()
    assert call.direction == "leaving"  # called: the gate records it and opens nothing


def test_a_voter_without_decide_after_never_calls():
    v = Voter("cam", min_agreeing=2, dedupe_window_s=0)
    for t in (0.0, 0.1, 0.2):
        v.add(KEY, read(t))
    assert v.take_calls() == [] and not v.pending(KEY)


def action(name: str = "relay", **kw: object) -> GateAction:
    return GateAction.model_validate({"name": name, "type": "command", "command": ["true"], **kw})


def call(direction: str = "arriving", camera: str = "gate") -> PassCall:
    return PassCall(camera, 1, "AB123", 0.93, 2, 1000.0, 10, direction)


ALLOW = Decision("allow", ListEntry("residents", "allow", "AB123", "Ann"), 0.0)


def test_plan_fires_the_actions_of_the_decision_and_camera():
    actions = [action("open"), action("alarm", on=["deny", "unknown"]),
               action("other", cameras=["exit"])]  # fmt: skip
    fired = plan(call(), ALLOW, actions, 100.0, {}, arriving_only=True)
    assert [(a.name, fate) for a, fate in fired] == [("open", "")]
    fired = plan(call(), UNKNOWN, actions, 100.0, {}, arriving_only=True)
    assert [(a.name, fate) for a, fate in fired] == [("alarm", "")]
    fired = plan(call(camera="exit"), ALLOW, actions, 100.0, {}, arriving_only=True)
    assert [a.name for a, _ in fired] == ["open", "other"]


def test_plan_holds_back_leaving_vehicles_and_rate_limits():
    a = [action("open", min_interval_s=5.0)]
    assert plan(call("leaving"), ALLOW, a, 100.0, {}, True)[0][1] == NOT_ARRIVING
    assert plan(call("unknown"), ALLOW, a, 100.0, {}, True)[0][1] == NOT_ARRIVING
    assert plan(call("leaving"), ALLOW, a, 100.0, {}, False)[0][1] == ""
    assert plan(call(), ALLOW, a, 100.0, {"open": 96.0}, True)[0][1] == RATE_LIMITED
    assert plan(call(), ALLOW, a, 100.0, {"open": 94.0}, True)[0][1] == ""


def test_text_fields_are_filled_and_other_braces_kept():
    values = fields(call(), ALLOW, "open")
    body = fill('{"plate": "{plate}", "who": "{label}", "list": "{list}", "x": {}}', values)
    assert body == '{"plate": "AB123", "who": "Ann", "list": "residents", "x": {}}'
    assert fill("{decision}/{direction}/{action}", values) == "allow/arriving/open"
    assert fields(call(), UNKNOWN)["list"] == "" and fields(call(), UNKNOWN)["label"] == ""


def test_lists_decide_what_a_call_is():
    lists = PlateLists([ListEntry("deny", "deny", "AB123")], ZoneInfo("UTC"))
    assert lists.decide(call().plate, call().time).verdict == "deny"


def test_gate_settings_are_checked_with_the_key_and_what_to_do(tmp_path: Path):
    def problems(text: str) -> list[str]:
        with pytest.raises(cfgmod.ConfigError) as info:
            cfgmod.parse(text, tmp_path / "a.toml")
        return [str(p) for p in info.value.problems]

    cam = '[[cameras]]\nname = "gate"\nurl = "rtsp://x"\nrole = "gate"\n'
    [p] = problems("[gate]\narriving_only = true\n" + cam)
    assert "gate.arriving_only needs arriving" in p and "cameras[0] (gate)" in p
    [p] = problems(cam + 'arriving = "down"\n[[gate.actions]]\nname = "r"\ntype = "http"\n')
    assert "a http action needs url" in p
    [p] = problems(cam + 'arriving = "down"\n[[gate.actions]]\nname = "r"\ntype = "mqtt"\n'
                   'topic = "gate/{plat}"\n')  # fmt: skip
    assert "unknown field(s) {plat}" in p and "{plate}" in p
    [p] = problems(cam + 'arriving = "down"\n[[gate.actions]]\nname = "r"\ntype = "command"\n'
                   'command = ["x"]\ncameras = ["front"]\n')  # fmt: skip
    assert 'front is not a camera with role = "gate"' in p
    ok = cfgmod.parse(cam, tmp_path / "a.toml")  # a one-way lane: no direction needed
    assert ok.cameras[0].role == "gate" and ok.gate.min_reads == 2


def test_a_credential_comes_from_the_units_credentials_directory(tmp_path: Path):
    (tmp_path / "relay").write_text("s3cret\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    values = fields(call(), ALLOW)
    assert fill("http://admin:{credential:relay}@relay/{plate}", values, env) == (
        "http://admin:s3cret@relay/AB123"
    )
    with pytest.raises(ActionError, match=r"LoadCredential=other:/path/to/secret"):
        fill("{credential:other}", values, env)
    with pytest.raises(ActionError, match=r"no \$CREDENTIALS_DIRECTORY"):
        fill("{credential:relay}", values, {})
