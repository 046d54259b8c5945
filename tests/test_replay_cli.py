import csv
import heapq
import io
import re
import subprocess
import sys

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.cli import main
from riskwatch.config import config_from_dict, load_config
from riskwatch.engine import Engine
from riskwatch.replay import Replay
from riskwatch.simulate import Simulation


def _lines(n_entities=60, n_events=1000, seed=1):
    return [orjson.dumps(e) for e in Simulation(n_entities=n_entities, seed=seed, bad_share=0.2,
                                                days=20).events(n_events=n_events)]


def _write_csv(path, rows: list[dict]):
    """``rows`` as a CSV file with a header of every key, sorted; returns ``path``."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
    return path


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


def test_replay_reads_a_csv_export_as_import_reads_it(tmp_path, capsys):
    """A CSV export (a `type` column, dotted columns for nested fields, local times without an offset in
    the exporter's format) replays to the very outputs of the same events as JSON lines (until 2026-12-07
    replay read JSON lines only); rows it cannot read are named by their line numbers."""
    from zoneinfo import ZoneInfo

    events = [orjson.loads(x) for x in _lines(n_entities=40, n_events=1100)]
    fmt, zone = "%d/%m/%Y %H:%M:%S.%f", ZoneInfo("Asia/Shanghai")

    def row(ev: dict) -> dict:
        r = {k: v for k, v in ev.items() if k != "violations"}
        r.update({f"violations.{k}": v for k, v in ev.get("violations", {}).items()})
        r["ts"] = datetime.fromisoformat(ev["ts"]).astimezone(zone).strftime(fmt)
        return r

    rows = [row(ev) for ev in events]
    complaint = next(r for r in rows if r["type"] == "complaint")
    bad = {300: {**complaint, "complaint_id": "c-when", "ts": "2026-01-03"},           # not the export's format
           600: {**complaint, "complaint_id": "c-uscc", "entity_id": "91350100M000100Y44"},  # check character
           900: {k: v for k, v in complaint.items() if k != "category"}}                # a field missing
    for i in sorted(bad):  # each at its index in the file's rows
        rows.insert(i, bad[i])
    src = _write_csv(tmp_path / "export.csv", rows)
    out = tmp_path / "from_csv.jsonl"
    assert main(["replay", str(src), "--out", str(out), "--ts-format", fmt, "--tz", "Asia/Shanghai",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"events processed: {len(events)}" in err and "invalid lines: 3" in err, err
    for i, why in ((300, "ts: '2026-01-03' does not match --ts-format"), (600, "entity_id"), (900, "category")):
        assert why in err.split(f"line {i + 2}: ")[1].splitlines()[0]  # line 1 is the header

    expected, _ = _replay([orjson.dumps(ev) for ev in events])
    assert out.read_bytes() == expected and expected

    # the CSV options are refused for JSON lines, before anything is read
    (tmp_path / "e.jsonl").write_bytes(b"\n".join(orjson.dumps(ev) for ev in events))
    assert main(["replay", str(tmp_path / "e.jsonl"), "--map", "entity_id=biz"]) == 2
    assert "apply to CSV files" in capsys.readouterr().err


def test_replay_shows_its_progress_in_bytes_read_for_json_lines_and_csv(tmp_path, capsys):
    """The progress bar (on by default on a terminal, ``--progress`` to force it) reaches the file's
    size for JSON lines and for CSV, where rows are read ahead of the engine (until 2026-12-07 no test
    drew it)."""
    events = [orjson.loads(x) for x in _lines(n_entities=20, n_events=2500)]
    src = tmp_path / "e.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(ev) for ev in events) + b"\n")
    complaints = [ev for ev in events if ev["type"] == "complaint"]
    csv_src = _write_csv(tmp_path / "c.csv", complaints)
    for path, n in ((src, len(events)), (csv_src, len(complaints))):
        assert main(["replay", str(path), "--out", str(tmp_path / "o.jsonl"), "--progress"]) == 0
        err = capsys.readouterr().err
        bar = err.split("\r")[-1].splitlines()[0]  # the bar as it was last drawn
        done, total = re.search(r"\| (\S+)/(\S+) \[", bar).groups()
        assert bar.startswith("replay: 100%") and done == total, (path.name, bar)
        assert float(total.rstrip("kM")) * (1e3 if total.endswith("k") else 1e6 if total.endswith("M") else 1) \
            == pytest.approx(path.stat().st_size, rel=0.01), (path.name, bar)
        assert f"events processed: {n}" in err


def _replay(lines, config=None, **kw):
    buf = io.BytesIO()
    rp = Replay(Engine(config or load_config()), out=buf, **kw)
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


@pytest.mark.parametrize("command", ["check-config", "check-alerts"])
@pytest.mark.parametrize("text, said", [
    ('version: "x"\ntiers: [\n  - a: 1\n', "line 3: expected the node content, but found '-' [yaml]"),
    ("- 1\n- 2\n", "(root): "),
    (None, "No such file or directory"),
])
def test_a_file_that_is_no_config_is_named_with_its_line(tmp_path, capsys, command, text, said):
    """YAML that does not parse names its line, a list is not a mapping, a missing file is not
    readable: each exit 2 with one line (no test read these branches until 2026-12-07)."""
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    try:
        rc = main([command, str(path)])
    except SystemExit as exc:  # check-config leaves through SystemExit(2), as every command loading a config
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err, err


class _TickingEveryEntity(Replay):
    """The reference: every entity ticked at every tick time (before 2026-11-28, near enough)."""

    def _schedule(self, eid: str, st: dict) -> None:
        if eid not in self.due:
            self.due[eid] = st["t"]
            heapq.heappush(self.heap, (st["t"], self.order[eid], eid))


def _decisions(raw: bytes) -> list[dict]:  # ``seq`` counts the entity's events, ticks included
    return [{k: v for k, v in orjson.loads(x).items() if k != "seq"} for x in raw.splitlines()]


def _against_reference(lines, tick_seconds, config=None):
    out, rp = _replay(lines, config, tick_seconds=tick_seconds)
    ref = io.BytesIO()
    rp_ref = _TickingEveryEntity(Engine(config or load_config()), out=ref, tick_seconds=tick_seconds)
    rp_ref.run(lines)
    assert _decisions(out) == _decisions(ref.getvalue()) and out
    return rp.summary.ticks, rp_ref.summary.ticks


def test_ticks_go_only_where_time_can_change_an_output():
    """Replay ticks an entity only when ``Engine.next_tick`` says time alone can change an output
    by then; the decisions are those of ticking every entity at every tick time. Until 2026-11-28
    every entity got a tick per interval, until 2026-12-04 every one with a sensor or a record."""
    quiet = Simulation(n_entities=300, seed=5).events(n_events=0)  # registered, no events since
    lines = [orjson.dumps(e) for e in quiet] + _lines(n_entities=300, n_events=6000, seed=4)
    ticks, ref_ticks = _against_reference(lines, 3600.0)
    assert ticks < 0.2 * ref_ticks, (ticks, ref_ticks)


def test_due_ticks_catch_every_deadline_and_threshold():
    """Hand-made over 400 days, each case one way a tick can matter: a burst's alert and tier decay
    (alert clear, tier down after its dwell, score drift), a silence and a breach whose deadlines pass
    just before another event (the event's decision sees them; no tick is missed), a record that
    expires, a kept pledge (its decay raises a signal), a penalty decaying for a year."""
    ids = [e["entity_id"] for e in Simulation(n_entities=4, seed=6).events(n_events=0)]
    day = 86400.0
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    evs: list[dict] = []

    def add(etype: str, eid: str, t: float, **kw) -> None:
        ts = datetime.fromtimestamp(t0 + t, tz=timezone.utc).isoformat()
        id_field = {"complaint": "complaint_id", "record": "record_id"}.get(etype)
        ev = {"type": etype, "entity_id": eid, "ts": ts, **kw}
        if id_field:
            ev[id_field] = f"{etype[0]}{len(evs)}"
        evs.append(ev)

    for i in range(6):
        add("complaint", ids[0], 60.0 * i, category="quality", severity=3)
    for i in range(12):  # pm25 every 10 min, then quiet; then over its limit for 70 min
        add("sensor_reading", ids[1], 1000.0 + 600 * i, device_id="d1", metric="pm25", value=40.0)
    add("complaint", ids[1], 1000.0 + 600 * 11 + 3 * 600 + 1700, category="quality")  # silent by then
    for i in range(8):
        add("sensor_reading", ids[1], 5 * day + 600 * i, device_id="d1", metric="pm25", value=400.0)
    add("complaint", ids[1], 5 * day + 3600 + 1200, category="quality")  # the breach turned full before it
    add("record", ids[2], 10.0, kind="penalty", severity=3)
    add("record", ids[2], 20.0, kind="judicial_default", severity=2,
        expires_at=datetime.fromtimestamp(t0 + 40 * day + 1234, tz=timezone.utc).isoformat())
    add("record", ids[3], 30.0, kind="pledge_broken", severity=2)
    add("record", ids[3], 2 * day, kind="pledge_kept", severity=1)
    for d in range(3, 400, 9):  # a neighbour's feed keeps the replay's clock moving
        add("complaint", ids[3], d * day + 17.0, category="quality")
    upserts = Simulation(n_entities=4, seed=6).events(n_events=0)
    lines = [orjson.dumps(e) for e in upserts] + [orjson.dumps(e) for e in sorted(evs, key=lambda e: e["ts"])]
    ticks, ref_ticks = _against_reference(lines, 3600.0)
    assert ticks < 0.5 * ref_ticks, (ticks, ref_ticks)


def test_a_kept_pledge_that_decays_faster_than_the_broken_one_is_ticked_as_its_signal_rises():
    """With a 30-day kept pledge against a 365-day broken one, the pledges signal rises as the kept
    one decays (6 points here): time alone raises the score, and the ticks must see it."""
    ids = [e["entity_id"] for e in Simulation(n_entities=2, seed=9).events(n_events=0)]
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def at(days: float) -> str:
        return datetime.fromtimestamp(t0.timestamp() + days * 86400, tz=timezone.utc).isoformat()

    evs = [{"type": "record", "record_id": "r1", "entity_id": ids[0], "ts": at(0), "kind": "pledge_broken",
            "severity": 2},
           {"type": "record", "record_id": "r2", "entity_id": ids[0], "ts": at(0.1), "kind": "pledge_kept",
            "severity": 3}]
    evs += [{"type": "complaint", "complaint_id": f"c{d}", "entity_id": ids[1], "ts": at(d), "category": "quality"}
            for d in range(1, 200, 7)]  # keeps the replay's clock moving
    data = load_config().model_dump(mode="json")
    data["detectors"]["records"]["params"]["kinds"]["pledge_kept"]["half_life_days"] = 30
    config = config_from_dict(data)
    lines = [orjson.dumps(e) for e in sorted(evs, key=lambda e: e["ts"])]
    out, _ = _replay(lines, config, tick_seconds=3600.0)
    rises = [o for o in map(orjson.loads, out.splitlines())
             if o["entity_id"] == ids[0] and o["type"] == "risk_change" and o["score"] > o["previous_score"]
             and o["ts"] > at(1)]
    assert rises, "the score rose with time alone"
    _against_reference(lines, 3600.0, config)


def test_an_engine_error_stops_the_replay_naming_its_line_and_event(tmp_path, capsys, monkeypatch):
    """A bug in the engine stops the replay with exit status 1, naming the line, the event and its
    entity, with the outputs of the lines before it written. Until 2026-12-07 it ended in a bare
    traceback that named neither the line nor the event."""
    lines = _lines(n_entities=40, n_events=400)
    victim = orjson.loads(lines[250])
    assert victim["type"] != "entity"
    process = Engine.process

    def buggy(self, state, ev):
        if ev.type == victim["type"] and ev.entity_id == victim["entity_id"] and \
                ev.ts == datetime.fromisoformat(victim["ts"]):
            raise ZeroDivisionError("division by zero")
        return process(self, state, ev)

    monkeypatch.setattr(Engine, "process", buggy)
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(src), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"replay stopped: the engine failed at line 251, {victim['type']} ")
    assert f"of {victim['entity_id']}: ZeroDivisionError: division by zero" in last
    assert "Traceback" in err and "events processed: 250" in err
    written = out.read_bytes().splitlines()
    monkeypatch.setattr(Engine, "process", process)
    src.write_bytes(b"\n".join(lines[:250]) + b"\n")
    whole = tmp_path / "whole.jsonl"
    assert main(["replay", str(src), "--out", str(whole), "--no-progress"]) == 0
    assert written and written == whole.read_bytes().splitlines()
