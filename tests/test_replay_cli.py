import csv
import io
import subprocess
import sys

from datetime import datetime, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.cli import main
from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.events import Tick
from riskwatch.replay import Replay
from riskwatch.simulate import Simulation


def _lines(n_entities=60, n_events=1000, seed=1):
    return [orjson.dumps(e) for e in Simulation(n_entities=n_entities, seed=seed, bad_share=0.2,
                                                days=20).events(n_events=n_events)]


def test_replay_names_three_bad_lines_and_processes_the_rest(tmp_path, capsys):
    good = _lines(n_entities=40, n_events=1100)[:1000]  # 40 entity upserts + feed events
    assert len(good) == 1000
    lines = list(good)
    lines.insert(100, b'{"type": "complaint", "entity_id": ')                      # bad JSON
    lines.insert(500, good[300].replace(b'"entity_id":"', b'"entity_id":"X', 1))  # bad USCC
    lines.insert(800, b'{"type": "weather", "entity_id": "91350100M000100Y43"}')   # unknown type
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(src), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "events processed: 1000" in err
    assert "invalid lines: 3" in err
    for n, why in ((101, "json_invalid"), (501, "entity_id"), (801, "type")):
        assert f"line {n}: " in err and why in err.split(f"line {n}: ")[1].splitlines()[0]
    assert out.stat().st_size > 0


def _replay(lines, **kw):
    buf = io.BytesIO()
    rp = Replay(Engine(load_config()), out=buf, **kw)
    rp.run(lines)
    return buf.getvalue(), rp


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000))
def test_replay_is_deterministic(seed):
    lines = _lines(seed=seed, n_events=800)
    a, _ = _replay(lines)
    b, _ = _replay(lines)
    assert a == b and a


def test_snapshots_and_trace(tmp_path):
    lines = _lines()
    src = tmp_path / "e.jsonl"
    src.write_bytes(b"\n".join(lines))
    snap, trace = tmp_path / "snap.csv", tmp_path / "trace.jsonl"
    assert main(["replay", str(src), "--snapshot-at", "2026-01-05T00:00:00+08:00,2026-01-15T00:00:00+08:00",
                 "--snapshot-out", str(snap), "--trace-out", str(trace), "--no-progress"]) == 0
    rows = list(csv.DictReader(snap.open()))
    assert {r["at"] for r in rows} == {"2026-01-05T00:00:00+08:00", "2026-01-15T00:00:00+08:00"}
    assert all(0 <= float(r["score"]) <= 100 and r["tier"] in "ABCD" for r in rows)
    tr = [orjson.loads(x) for x in trace.read_bytes().splitlines()]
    assert len(tr) == len(lines) and {"line", "signals", "score", "tier"} <= set(tr[-1])


def test_simulated_deteriorating_entities_rise(tmp_path):
    sim = Simulation(n_entities=300, seed=5, bad_share=0.1, days=30)
    lines = [orjson.dumps(e) for e in sim.events(n_events=30000)]
    _, rp = _replay(lines)
    truth = {t["entity_id"]: t["deteriorating"] for t in sim.truth()}
    bad = [rp.engine.tier_of(s) for e, s in rp.states.items() if truth[e]]
    good = [rp.engine.tier_of(s) for e, s in rp.states.items() if not truth[e]]
    bad_rate = sum(t in "CD" for t in bad) / len(bad)
    good_rate = sum(t in "CD" for t in good) / len(good)
    assert bad_rate > 0.6 and good_rate < bad_rate / 8, (bad_rate, good_rate)


def test_check_config_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  - {name: A, ratio: 0.1}\n  - {name: B, up: 20, down: 30, ratio: 0.05}\n"
                   "detectors:\n  sensors: {params: {silence_factor: 0.5}}\n  weather: {}\n")
    r = subprocess.run([sys.executable, "-m", "riskwatch.cli", "check-config", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    for field in ("tiers.1.down", "tiers.1.ratio", "detectors.sensors.params.silence_factor", "detectors.weather"):
        assert field in r.stderr
    r = subprocess.run([sys.executable, "-m", "riskwatch.cli", "check-config"], capture_output=True, text=True)
    assert r.returncode == 0 and "ok: version" in r.stdout


def test_ticks_go_only_where_time_can_change_an_output(monkeypatch):
    """Ticks skipped by ``Engine.wants_tick`` are ticks that would have changed no output. Until
    2026-11-28 every entity got one per interval (the records detector's empty state is truthy)."""
    quiet = Simulation(n_entities=300, seed=5).events(n_events=0)  # registered, no events since
    lines = [orjson.dumps(e) for e in quiet] + _lines(n_entities=300, n_events=6000, seed=4)

    def decisions(raw: bytes) -> list[dict]:  # ``seq`` counts the entity's events, ticks included
        return [{k: v for k, v in orjson.loads(x).items() if k != "seq"} for x in raw.splitlines()]

    out, rp = _replay(lines, tick_seconds=3600.0)
    monkeypatch.setattr(Engine, "wants_tick", lambda self, state: True)
    out_all, rp_all = _replay(lines, tick_seconds=3600.0)
    assert decisions(out) == decisions(out_all) and out
    assert rp.summary.ticks < 0.5 * rp_all.summary.ticks, (rp.summary.ticks, rp_all.summary.ticks)


class _AskingEveryState(Replay):
    """The tick loop before 2026-12-04: every state asked at every tick."""

    def _tick_all(self, at: float) -> None:
        t = datetime.fromtimestamp(at, tz=timezone.utc)
        for eid, st in self.states.items():
            if self.engine.wants_tick(st):
                self.summary.ticks += 1
                self._emit(self.engine.process(st, Tick.model_construct(entity_id=eid, ts=t))[1])


def test_ticks_visit_the_entities_that_want_them_as_if_every_state_were_asked():
    """Replay keeps the set of entities that want ticks (an entity joins or leaves it only when
    processed); the ticks, their order and the outputs are those of asking every state. Over
    400 days an entity's one complaint decays out (it leaves the set), another's comes back at
    day 300 (it joins again), a third complains every 10 days."""
    ids = [e["entity_id"] for e in Simulation(n_entities=3, seed=6).events(n_events=0)]
    day = 86400.0
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()

    def complaint(eid: str, t: float, n: int) -> dict:
        return {"type": "complaint", "complaint_id": f"c{n}", "entity_id": eid, "category": "quality",
                "ts": datetime.fromtimestamp(t0 + t, tz=timezone.utc).isoformat()}

    evs = [complaint(ids[0], 60.0 * i, i) for i in range(6)]  # a burst: an alert and a tier that ticks clear
    evs += [complaint(ids[1], 30.0, 100), complaint(ids[1], 300 * day + 5.0, 101)]
    evs += [complaint(ids[2], d * day, 200 + d) for d in range(1, 400, 10)]
    upserts = Simulation(n_entities=3, seed=6).events(n_events=0)
    lines = [orjson.dumps(e) for e in upserts] + [orjson.dumps(e) for e in sorted(evs, key=lambda e: e["ts"])]
    out, rp = _replay(lines, tick_seconds=6 * 3600.0)
    ref = io.BytesIO()
    rp_ref = _AskingEveryState(Engine(load_config()), out=ref, tick_seconds=6 * 3600.0)
    rp_ref.run(lines)
    assert rp.summary.ticks == rp_ref.summary.ticks > 0
    assert out == ref.getvalue() and out
    assert ids[0] not in rp.tickable  # it left for good
