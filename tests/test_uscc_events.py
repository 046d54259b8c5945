import random

import pytest

from riskwatch import uscc
from riskwatch.errors import InvalidEvent
from riskwatch.events import parse_event

# real-format codes published by the companies themselves
REAL = ["91350100M000100Y43", "91440300708461136T", "9144030071526726XG"]


@pytest.mark.parametrize("code", REAL)
def test_real_codes_validate(code):
    assert uscc.validate(code) == code


@pytest.mark.parametrize("code,rule", [
    ("91350100M000100Y4", "18 characters"),
    ("91350100M000100Y44", "check character"),
    ("91350100M000100I43", "not allowed"),
    ("913501A0M000100Y43", "administrative division"),
])
def test_bad_codes_say_why(code, rule):
    with pytest.raises(ValueError, match=rule):
        uscc.validate(code)


def test_every_single_character_change_is_caught():
    rng = random.Random(7)
    code = REAL[0]
    for _ in range(300):
        i = rng.randrange(18)
        c = rng.choice(uscc.ALPHABET.replace(code[i], ""))
        bad = code[:i] + c + code[i + 1:]
        with pytest.raises(ValueError):
            uscc.validate(bad)


def _complaint(**kw):
    ev = {"type": "complaint", "complaint_id": "c1", "entity_id": REAL[0],
          "ts": "2026-01-05T10:00:00+08:00", "category": "food_safety"}
    ev.update(kw)
    return ev


@pytest.mark.parametrize("patch,field,rule", [
    ({"entity_id": "91350100M000100Y44"}, "entity_id", "value_error"),
    ({"ts": "2026-01-05T10:00:00"}, "ts", "timezone_aware"),
    ({"severity": 4}, "severity", "less_than_equal"),
    ({"severity": "high"}, "severity", "int_parsing"),
    ({"type": "gossip"}, "type", "union_tag_invalid"),
    ({"colour": "red"}, "colour", "extra_forbidden"),
])
def test_invalid_events_name_field_and_rule(patch, field, rule):
    with pytest.raises(InvalidEvent) as ei:
        parse_event(_complaint(**patch))
    assert (field, rule) in [(e.field, e.rule) for e in ei.value.errors]


def test_missing_field_named():
    ev = _complaint()
    del ev["category"]
    with pytest.raises(InvalidEvent) as ei:
        parse_event(ev)
    assert [(e.field, e.rule) for e in ei.value.errors] == [("category", "missing")]


def test_bad_json_is_an_invalid_event():
    with pytest.raises(InvalidEvent) as ei:
        parse_event(b'{"type": "complaint", ')
    assert ei.value.errors[0].rule == "json_invalid"


def test_opaque_scheme_accepts_other_ids():
    ev = parse_event(_complaint(entity_id="boston-1234"), "opaque")
    assert ev.entity_id == "boston-1234"
    with pytest.raises(InvalidEvent):
        parse_event(_complaint(entity_id="boston-1234"))
    with pytest.raises(InvalidEvent):
        parse_event(_complaint(entity_id="x" * 65), "opaque")


def test_defaults():
    ev = parse_event(_complaint())
    assert (ev.channel, ev.severity, ev.text) == ("12315", 1, None)


def test_an_entity_upsert_may_carry_its_address_and_the_state_keeps_it():
    from riskwatch.config import load_config
    from riskwatch.engine import Engine

    reg = {"type": "entity", "entity_id": REAL[0], "name": "上海星巴克咖啡有限公司", "industry": "catering",
           "region": "310101"}
    assert parse_event(reg).address is None  # optional: registers without addresses stay valid
    ev = parse_event({**reg, "address": "上海市黄浦区淮海中路300号"})
    for bad, rule in (("", "string_too_short"), ("x" * 201, "string_too_long"), (7, "string_type")):
        with pytest.raises(InvalidEvent) as ei:
            parse_event({**reg, "address": bad})
        assert [(e.field, e.rule) for e in ei.value.errors] == [("address", rule)]
    eng = Engine(load_config())
    st, _ = eng.process(None, ev)
    assert st["m"] == ["catering", "310101", "上海星巴克咖啡有限公司", "上海市黄浦区淮海中路300号"]
    st, _ = eng.process(st, parse_event(reg))  # an upsert is the whole register entry: no address now
    assert st["m"] == ["catering", "310101", "上海星巴克咖啡有限公司"]
