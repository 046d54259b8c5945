"""Pure alert logic: lifecycle, dedup, cooldown, grouping, routing, config, payload (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.alerts import grouping
from riskwatch.alerts.config import Receiver, Rule, load_alerts_config_text
from riskwatch.alerts.lifecycle import NOTIFY, OPEN, acknowledge, apply_candidate, dedup_key, resolve_manually, tick
from riskwatch.alerts.payload import webhook_payload
from riskwatch.alerts.routing import group_key, receivers_for
from riskwatch.errors import ConfigError

RULE = Rule(name="burst", signals=["complaints.burst"], summary="burst at {entity_id}", cooldown=600, expire_after=5000)
RECEIVER = Receiver(name="ops", url="http://h/x", secrets=["k"], group_wait=10, group_interval=60,
                    repeat_interval=100_000, group_by=["rule"])


def cand(entity: str, status: str, severity: str = "warning") -> dict:
    return {"entity_id": entity, "signal": "complaints.burst", "status": status, "severity": severity, "value": 0.9,
            "score": 40.0, "tier": "B", "event_ids": ["e"], "ts": "2026-01-01T00:00:00+00:00"}


class Model:
    """A store as the intake keeps it: every alert ever, by id; the key's latest id."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict] = {}
        self.latest: dict[str, str] = {}
        self.transitions: list[tuple[float, str, str]] = []
        self.n = 0

    def current(self, key):
        return self.alerts.get(self.latest.get(key))

    def put(self, a, transition, now):
        if a is None or transition is None:
            return
        self.alerts[a["id"]] = a
        self.latest[a["key"]] = a["id"]
        self.transitions.append((now, a["id"], transition))

    def candidate(self, c, now):
        self.n += 1
        key = dedup_key(c, RULE, {})
        a, t = apply_candidate(self.current(key), c, RULE, {}, now, f"src{self.n}")
        self.put(a, t, now)

    def clock(self, now):
        for a in list(self.alerts.values()):
            b, t = tick(a, RULE, now)
            self.put(b, t, now)

    def open_per_key(self):
        counts: dict[str, int] = {}
        for a in self.alerts.values():
            if a["status"] in OPEN:
                counts[a["key"]] = counts.get(a["key"], 0) + 1
        return counts


ops = st.lists(st.tuples(st.sampled_from(["fire", "clear", "tick", "ack", "resolve"]),
                         st.sampled_from(["E1", "E2", "E3"]), st.floats(0, 2000),
                         st.sampled_from(["info", "warning", "critical"])), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_no_two_open_alerts_share_a_dedup_key(steps):
    m = Model()
    now = 0.0
    for op, ent, dt, sev in steps:
        now += dt
        key = dedup_key(cand(ent, "firing"), RULE, {})
        if op == "fire":
            m.candidate(cand(ent, "firing", sev), now)
        elif op == "clear":
            m.candidate(cand(ent, "resolved", sev), now)
        elif op == "tick":
            m.clock(now)
        elif m.current(key) is not None:
            fn = acknowledge if op == "ack" else resolve_manually
            a, t = fn(m.current(key), "inspector-7", now)
            m.put(a, t, now)
        assert all(n <= 1 for n in m.open_per_key().values()), m.open_per_key()
        for a in m.alerts.values():  # every closed alert has its end; open ones none
            assert (a["ends_at"] is None) == (a["status"] in OPEN)


def _notifications(model: Model, until: float) -> list[tuple[float, list[str]]]:
    """Route every notifying transition through one group and flush it as the dispatcher's clock does."""
    g, sent = None, []
    events = sorted(model.transitions)
    t, i = 0.0, 0
    while t <= until:
        while i < len(events) and events[i][0] <= t:
            _, aid, tr = events[i]
            if tr in NOTIFY:
                g = grouping.add(g, "k", RECEIVER, {}, aid, model.alerts[aid]["version"], t)
            i += 1
        if g is not None and grouping.is_due(g, t):
            statuses = {aid: model.alerts[aid]["status"] for aid in g["alerts"]}
            g, ids = grouping.flush(g, RECEIVER, statuses, set(), t)
            if ids:
                sent.append((t, ids))
        t += 1.0
    return sent


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1, 590), min_size=1, max_size=30))
def test_flapping_inside_the_cooldown_notifies_once(gaps):
    m = Model()
    now = 100.0
    status = "firing"
    m.candidate(cand("E1", "firing"), now)
    for gap in gaps:  # the condition flips, never staying clear as long as the cooldown
        now += gap
        status = "resolved" if status == "firing" else "firing"
        m.candidate(cand("E1", status), now)
        m.clock(now)
    sent = _notifications(m, now + 100)  # well past group_wait and group_interval, inside the cooldown
    assert len(sent) == 1, sent
    assert len(m.alerts) == 1 and next(iter(m.alerts.values()))["count"] == 1 + sum(
        1 for _, _, tr in m.transitions if tr == "repeated")


def test_clear_held_for_the_cooldown_resolves_and_notifies_again():
    m = Model()
    m.candidate(cand("E1", "firing"), 0)
    m.candidate(cand("E1", "resolved"), 100)
    m.clock(699)
    assert next(iter(m.alerts.values()))["status"] == "firing"
    m.clock(700)
    assert next(iter(m.alerts.values()))["status"] == "resolved"
    sent = _notifications(m, 2000)
    assert len(sent) == 2  # fired, then resolved


def test_refire_after_resolution_opens_a_new_alert():
    m = Model()
    m.candidate(cand("E1", "firing"), 0)
    m.candidate(cand("E1", "resolved"), 10)
    m.clock(1000)
    m.candidate(cand("E1", "firing"), 1100)
    assert len(m.alerts) == 2 and [a["status"] for a in m.alerts.values()] == ["resolved", "firing"]


def test_stale_alert_expires_and_acknowledged_stays_open():
    m = Model()
    m.candidate(cand("E1", "firing"), 0)
    a, t = acknowledge(m.current("E1:burst"), "ins", 5, "on my way")
    m.put(a, t, 5)
    assert a["status"] == "acknowledged" and a["ack"]["by"] == "ins"
    m.candidate(cand("E1", "firing"), 10)  # a repeat while acknowledged keeps it open and acknowledged
    assert m.current("E1:burst")["status"] == "acknowledged" and m.current("E1:burst")["count"] == 2
    m.clock(10 + 5000)
    assert m.current("E1:burst")["status"] == "expired"


def test_severity_rise_escalates():
    a, _ = apply_candidate(None, cand("E1", "firing", "warning"), RULE, {}, 0, "s1")
    b, t = apply_candidate(a, cand("E1", "firing", "critical"), RULE, {}, 1, "s2")
    assert t == "escalated" and b["labels"]["severity"] == "critical" and b["fingerprint"] != a["fingerprint"]


def test_redelivered_candidate_opens_the_same_alert_id():
    a1, _ = apply_candidate(None, cand("E1", "firing"), RULE, {}, 0, "t:0@5#0")
    a2, _ = apply_candidate(None, cand("E1", "firing"), RULE, {}, 99, "t:0@5#0")
    assert a1["id"] == a2["id"]


def test_group_repeat_interval_resends_unchanged_firing_alerts():
    r = RECEIVER.model_copy(update={"repeat_interval": 1000})
    g = grouping.add(None, "k", r, {}, "a", 1, 0)
    g, ids = grouping.flush(g, r, {"a": "firing"}, set(), 10)
    assert ids == ["a"]
    g, ids = grouping.flush(g, r, {"a": "firing"}, set(), 500)
    assert ids == []
    g, ids = grouping.flush(g, r, {"a": "firing"}, set(), 1010)
    assert ids == ["a"]
    g, ids = grouping.flush(g, r, {"a": "acknowledged"}, set(), 2010)  # acknowledged: no more repeats
    assert ids == []


def test_silenced_alerts_are_left_out():
    g = grouping.add(None, "k", RECEIVER, {}, "a", 1, 0)
    g = grouping.add(g, "k", RECEIVER, {}, "b", 1, 0)
    g, ids = grouping.flush(g, RECEIVER, {"a": "firing", "b": "firing"}, {"b"}, 10)
    assert ids == ["a"]


def test_routing_and_group_keys():
    sh = Receiver(name="sh", url="http://h/x", secrets=["k"], match={"region": ["310000"], "severity": ["critical"]})
    anyone = Receiver(name="all", url="http://h/y", secrets=["k"])
    labels = {"region": "310000", "severity": "critical", "rule": "r"}
    assert [r.name for r in receivers_for(labels, [sh, anyone])] == ["sh", "all"]
    assert [r.name for r in receivers_for(dict(labels, severity="warning"), [sh, anyone])] == ["all"]
    assert group_key("sh", labels, ["rule"]) != group_key("sh", dict(labels, rule="q"), ["rule"])


@pytest.mark.parametrize("text, field", [
    ("receivers: [{name: a, url: 'http://127.0.0.1/x', secrets: [k]}]", "receivers.0.url"),
    ("receivers: [{name: a, url: 'http://169.254.169.254/x', secrets: [k]}]", "receivers.0.url"),
    ("receivers: [{name: a, url: 'http://8.8.8.8/x'}]", "receivers.0"),
    ("receivers: [{name: a, url: 'http://8.8.8.8/x', secrets: [env:RW_NOT_SET_ANYWHERE]}]", "receivers.0.secrets"),
    ("rules: [{name: r, signals: [x], summary: s, cooldown: soon}]", "rules.0.cooldown"),
    ("rules: [{name: r, signals: [], summary: s}]", "rules.0.signals"),
    ("rules: [{name: r, signals: [x], summary: s}, {name: r, signals: [y], summary: s}]", "(root)"),
    ("rulez: []", "rulez"),
    ("rules: [{name: r, signals: [x], summary: s, escalate_after: [2h, 30m]}]", "rules.0.escalate_after"),
    ("rules: [{name: r, signals: [x], summary: s, escalate_after: 0s}]", "rules.0.escalate_after.0"),
    ("rules: [{name: r, signals: [x], summary: s, escalate_after: []}]", "rules.0.escalate_after"),
])
def test_invalid_alert_config_names_the_field(text, field):
    with pytest.raises(ConfigError) as exc:
        load_alerts_config_text(text)
    assert any(e.field == field for e in exc.value.errors), exc.value.errors


def test_a_receivers_secret_from_a_file(tmp_path):
    (tmp_path / "hook").write_text("from-a-docker-secret\n")
    (tmp_path / "empty").write_text("\n")
    cfg = load_alerts_config_text("allow_private: [127.0.0.1]\n"
                                  f"receivers: [{{name: a, url: 'http://127.0.0.1/x', secrets: ['file:{tmp_path / 'hook'}']}}]")
    assert cfg.receivers[0].secrets[0].get_secret_value() == "from-a-docker-secret"
    for name, says in (("missing", "cannot read secret file"), ("empty", "is empty")):
        with pytest.raises(ConfigError) as exc:
            load_alerts_config_text(f"receivers: [{{name: a, url: 'http://8.8.8.8/x', secrets: ['file:{tmp_path / name}']}}]")
        assert [e.field for e in exc.value.errors] == ["receivers.0.secrets"] and says in str(exc.value)


def test_secrets_never_show_in_repr_or_dump():
    cfg = load_alerts_config_text("allow_private: [127.0.0.1]\n"
                                  "receivers: [{name: a, url: 'http://127.0.0.1/x', secrets: [hunter2]}]")
    assert "hunter2" not in repr(cfg) and "hunter2" not in cfg.model_dump_json()


def test_default_alert_config_covers_every_engine_alert_signal():
    from riskwatch.alerts.config import load_alerts_config
    from riskwatch.config import load_config
    from riskwatch.engine import Engine

    engine = Engine(load_config())
    signals = {"tier"} | set(engine.scorer.alerts)  # the codes candidates carry, e.g. sensors.limit_breach
    assert "sensors.limit_breach" in signals and "complaints.burst" in signals
    cfg = load_alerts_config()
    assert all(cfg.rules_for(s) for s in signals), [s for s in signals if not cfg.rules_for(s)]


def test_an_alert_says_where_the_entity_is():
    """The register address (since 2026-12-06) in the payload and in rule templates: a team sent to a
    failed cold chain needs to know where it is."""
    rule = Rule(name="visit", signals=["complaints.burst"], summary="{name}, {address}: burst")
    meta = {"region": "310101", "name": "Shop", "address": "上海市黄浦区淮海中路300号"}
    a, _ = apply_candidate(None, cand("E1", "firing"), rule, meta, 0, "s")
    assert a["annotations"]["summary"] == "Shop, 上海市黄浦区淮海中路300号: burst"
    assert a["annotations"]["address"] == "上海市黄浦区淮海中路300号"  # Alertmanager's templates see it too
    p = webhook_payload("ops", "ops:{}", {"rule": "visit"}, [a], {"E1": meta}, "http://x")
    assert p["alerts"][0]["riskwatch"]["entity"]["address"] == "上海市黄浦区淮海中路300号"
    assert p["alerts"][0]["riskwatch"]["entity"]["status"] == "operating"  # the view keeps no status then
    p = webhook_payload("ops", "ops:{}", {"rule": "visit"}, [a], {"E1": dict(meta, status="closed")}, "http://x")
    assert p["alerts"][0]["riskwatch"]["entity"]["status"] == "closed"  # a team is not sent to a locked door blind
    a, _ = apply_candidate(None, cand("E2", "firing"), rule, {"name": "Stall"}, 0, "s")  # no address known
    assert a["annotations"]["summary"] == "Stall, : burst" and "address" not in a["annotations"]


def test_webhook_payload_is_alertmanager_v4_shaped():
    a, _ = apply_candidate(None, cand("E1", "firing"), RULE, {"region": "310000", "name": "Shop"}, 0, "s")
    view = {"score": "55.0", "tier": "C", "ratio": 0.15, "reasons": [], "updated": "2026-01-01T00:05:00+00:00"}
    p = webhook_payload("ops", "ops:{}", {"rule": "burst"}, [a], {"E1": view}, "http://x")
    assert set(p) >= {"version", "status", "receiver", "groupKey", "groupLabels", "commonLabels",
                      "commonAnnotations", "externalURL", "alerts"}
    al = p["alerts"][0]
    assert set(al) >= {"status", "labels", "annotations", "startsAt", "endsAt", "fingerprint", "riskwatch"}
    assert al["labels"]["region"] == "310000" and al["riskwatch"]["spotcheck_ratio"] == 0.15


def test_the_payload_never_pairs_a_tier_with_another_tiers_ratio():
    """The alert fired at tier B (score 40); by the time its group is sent the entity is in tier D. Until
    2026-12-07 the payload said tier B with tier D's ratio 0.4 and tier D's reasons."""
    a, _ = apply_candidate(None, cand("E1", "firing"), RULE, {"region": "310000", "name": "Shop"}, 0, "s")
    reasons = [{"code": "complaints.burst", "contribution": 80.0, "share": 1.0, "event_ids": ["e", "f"]}]
    view = {"score": "80.0", "tier": "D", "ratio": 0.4, "reasons": reasons, "updated": "2026-01-01T08:10:00+08:00"}
    rw = webhook_payload("ops", "ops:{}", {"rule": "burst"}, [a], {"E1": view}, "http://x")["alerts"][0]["riskwatch"]
    assert (rw["score"], rw["tier"], rw["spotcheck_ratio"], rw["reasons"]) == (80.0, "D", 0.4, reasons)
    assert rw["risk_updated"] == "2026-01-01T00:10:00+00:00" and rw["at_alert"] == {"score": 40.0, "tier": "B"}
    # no risk decision in the view yet: the alert's own, and nothing of another snapshot
    rw = webhook_payload("ops", "ops:{}", {"rule": "burst"}, [a], {"E1": {"ratio": 0.4, "name": "Shop"}},
                         "http://x")["alerts"][0]["riskwatch"]
    assert (rw["score"], rw["tier"], rw["spotcheck_ratio"], rw["reasons"]) == (40.0, "B", None, [])


def test_a_receivers_tls_files_are_checked_when_the_config_loads(tmp_path):
    """An internal CA and a client certificate for an https receiver: files that cannot be used are refused at
    load, naming the receiver's field (delivery over TLS: tests/integration/test_alerts_delivery.py)."""
    trustme = pytest.importorskip("trustme", reason="trustme (a dev dependency) makes the test CA")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("dispatcher").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    (tmp_path / "notes.txt").write_text("not a certificate\n")

    def load(url: str, **tls) -> object:
        fields = "".join(f", {k}: '{tmp_path / v}'" for k, v in tls.items())
        return load_alerts_config_text(f"receivers: [{{name: a, url: '{url}', secrets: [k]{fields}}}]")

    r = load("https://8.8.8.8/x", tls_ca_file="ca.pem", tls_cert_file="client.pem").receivers[0]
    ctx = r.ssl_context()
    assert ctx is not None and ctx.get_ca_certs() and r.ssl_context() is ctx  # built once
    assert load("https://8.8.8.8/x").receivers[0].ssl_context() is None      # httpx's default verification
    for url, tls, says in [
        ("http://8.8.8.8/x", {"tls_ca_file": "ca.pem"}, "tls_ca_file is set but the receiver's URLs are not all https"),
        ("https://8.8.8.8/x", {"tls_ca_file": "missing.pem"}, "tls_ca_file: no such file"),
        ("https://8.8.8.8/x", {"tls_key_file": "client.pem"}, "tls_key_file is set without tls_cert_file"),
        ("https://8.8.8.8/x", {"tls_ca_file": "notes.txt"}, "tls_ca_file cannot be used"),
        ("https://8.8.8.8/x", {"tls_cert_file": "ca.pem"}, "tls_cert_file cannot be used"),  # a certificate, no key
    ]:
        with pytest.raises(ConfigError) as exc:
            load(url, **tls)
        assert [e.field for e in exc.value.errors] == ["receivers.0"] and says in str(exc.value), exc.value
