"""`riskwatch import`: JSON lines and mapped CSV into the input topics, invalid lines reported."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from riskwatch.simulate import Simulation

from .helpers import read_batches

E = "91350100M000100Y43"


def _run(env, *args):
    return subprocess.run([sys.executable, "-m", "riskwatch.cli", "import", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_import_jsonl_and_csv(stack, tmp_path):
    s, workers = stack
    env = dict(workers.env)
    evs = list(Simulation(n_entities=50, seed=2, bad_share=0.0, days=10).events(n_events=12000))
    lines = [orjson.dumps(e).decode() for e in evs]
    lines.insert(7, "{broken")
    lines.insert(500, orjson.dumps({"type": "complaint", "entity_id": E}).decode())
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    out = _run(env, str(tmp_path / "events.jsonl"), "--topic-from-type", "--rejects", str(tmp_path / "rej.jsonl"))
    assert out.returncode == 0, out.stderr
    assert f"imported {len(evs)} events, rejected 2" in out.stdout
    assert "line 8: " in out.stderr and "line 501: " in out.stderr and "complaint_id" in out.stderr
    rej = [orjson.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [x["line"] for x in rej] == [8, 501]
    # with what was refused: the text of a line that is not JSON, the event of one that is
    assert rej[0]["text"] == "{broken" and rej[1]["event"] == {"type": "complaint", "entity_id": E}
    assert any(e["field"] == "complaint_id" for e in rej[1]["errors"])
    topics = ("entities", "complaints", "sensor-readings", "inspections", "records", "commands")
    landed = [e for t in topics for e in read_batches(s.broker, s.topic(t))]
    assert sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in landed) == \
        sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in evs)

    # the same file again is refused (the detectors recognise only each entity's newest items), and
    # nothing is sent; --again sends it, and both imports are in the audit log
    again = _run(env, str(tmp_path / "events.jsonl"))
    assert again.returncode == 2 and "was imported before" in again.stderr and "--again" in again.stderr, again
    assert "imported" not in again.stdout
    assert len([e for t in topics for e in read_batches(s.broker, s.topic(t))]) == len(evs)
    again = _run(env, str(tmp_path / "events.jsonl"), "--again")
    assert again.returncode == 0 and f"imported {len(evs)} events, rejected 2" in again.stdout, again
    assert len([e for t in topics for e in read_batches(s.broker, s.topic(t))]) == 2 * len(evs)
    import redis

    from riskwatch.audit import AUDIT

    logged = [orjson.loads(f[b"e"]) for _id, f in redis.Redis.from_url(s.redis_url).xrange(AUDIT)]
    logged = [e for e in logged if e["action"] == "import" and e["target"] == "events.jsonl"]
    assert [(e["detail"]["accepted"], e["detail"]["again"]) for e in logged] == [(len(evs), False), (len(evs), True)]

    # CSV with a column mapping; dotted fields nest
    (tmp_path / "insp.csv").write_text(
        "id,uscc,date,kind,result,crit,maj,minr\n"
        f"i1,{E},2026-01-05T10:00:00+08:00,routine,fail,2,1,0\n"
        f"i2,{E},2026-02-05T10:00:00+08:00,follow_up,pass,0,0,1\n"
        f"i3,{E},not-a-date,routine,pass,0,0,0\n")
    out = _run(env, str(tmp_path / "insp.csv"), "--type", "inspection", "--map", "inspection_id=id",
               "--map", "entity_id=uscc", "--map", "ts=date", "--map", "kind=kind", "--map", "outcome=result",
               "--map", "violations.critical=crit", "--map", "violations.major=maj", "--map", "violations.minor=minr")
    assert out.returncode == 0 and "imported 2 events, rejected 1" in out.stdout, out.stdout + out.stderr
    assert "line 4: ts:" in out.stderr
    insp = [e for e in read_batches(s.broker, s.topic("inspections")) if e["entity_id"] == E]
    assert [(e["inspection_id"], e["violations"]) for e in insp] == [
        ("i1", {"critical": 2, "major": 1, "minor": 0}), ("i2", {"critical": 0, "major": 0, "minor": 1})]
    assert all(e["type"] == "inspection" for e in insp)
    assert _run(env, str(tmp_path / "missing.csv")).returncode == 2
    assert os.path.exists(tmp_path / "insp.csv")


def test_import_validates_with_the_config_applied_through_the_api(stack, tmp_path):
    """Ops switched entity_id_scheme to opaque through the API (kept in Redis); the workers accept
    opaque ids. Until 2026-11-28 `riskwatch import` (and the MQTT bridge) read the config file only
    and rejected every such line."""
    import redis

    from riskwatch.config import CURRENT_CONFIG, load_config

    s, workers = stack
    applied = load_config().model_dump(mode="json") | {"entity_id_scheme": "opaque", "version": "opaque-ids"}
    redis.Redis.from_url(s.redis_url).set(CURRENT_CONFIG, orjson.dumps({"seq": 1, "config": applied}))
    ev = {"type": "complaint", "complaint_id": "c-op", "entity_id": "shop-0042", "ts": "2026-03-01T09:00:00+08:00",
          "category": "hygiene"}
    (tmp_path / "one.jsonl").write_text(orjson.dumps(ev).decode() + "\n")
    out = _run(dict(workers.env), str(tmp_path / "one.jsonl"), "--topic-from-type")
    assert out.returncode == 0 and "imported 1 events, rejected 0" in out.stdout, (out.stdout, out.stderr)
    assert read_batches(s.broker, s.topic("complaints")) == [ev]
