"""`riskwatch import`: JSON lines and mapped CSV into the input topics, invalid lines reported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter

import orjson

from riskwatch.simulate import Simulation

from .helpers import FrontedBroker, read_batches

E = "91350100M000100Y43"


def _run(env, *args):
    return subprocess.run([sys.executable, "-m", "riskwatch.cli", "import", *args], env=env, capture_output=True,
                          text=True, timeout=300)


CFPB_MAP = ["--map", "complaint_id=complaint_id", "--map", "entity_id=company", "--map", "ts=date_received",
            "--map", "category=product", "--map", "channel=submitted_via"]


def _opaque(s) -> None:
    import redis

    from riskwatch.config import CURRENT_CONFIG, load_config

    applied = load_config().model_dump(mode="json") | {"entity_id_scheme": "opaque", "version": "opaque-ids"}
    redis.Redis.from_url(s.redis_url).set(CURRENT_CONFIG, orjson.dumps({"seq": 1, "config": applied}))


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


def test_an_import_the_broker_stops_taking_says_its_line_and_sends_the_rest_from_it(stack, tmp_path):
    """The broker goes away in the second chunk of 5,000 lines: the import says where it stopped
    (exit 1), keeps that line on record, refuses the file again without ``--from-line`` that line, and
    with it sends the rest. Until 2026-12-07 it ended with a traceback and no line, and importing the file
    again sent its first part twice."""
    from riskwatch.ingest import imports
    from riskwatch.settings import Settings
    from riskwatch.streams.kafka import ensure_topics

    s, _ = stack
    evs = list(Simulation(n_entities=300, seed=5, bad_share=0.0, days=10).events(n_events=20000))
    lines = [orjson.dumps(e) for e in evs]
    src = tmp_path / "backfill.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    first, two = sum(map(len, lines[:5000])), sum(map(len, lines[:10000]))
    with FrontedBroker(tmp_path / "broker", after=(first + two) // 2) as fb:  # cut in the second chunk
        url = fb.url
        own = Settings(broker=url, redis_url=s.redis_url, topic_prefix=s.topic_prefix, partitions=s.partitions)
        asyncio.run(ensure_topics(own))
        fb.front.sent = 0  # the import's bytes only
        env = dict(os.environ, RISKWATCH_BROKER=url, RISKWATCH_REDIS_URL=s.redis_url,
                   RISKWATCH_TOPIC_PREFIX=s.topic_prefix, RISKWATCH_PARTITIONS=str(s.partitions))
        out = _run(env, str(src), "--give-up-after", "4")
        assert out.returncode == 1, out.stderr[-2000:]
        said = out.stderr.splitlines()[-1]
        assert said.startswith("riskwatch import: stopped at line 5001 (") and "--from-line 5001" in said, said
        assert "5000 events imported, 0 rejected" in said and "lines 5001-10000 were being sent" in said, said
        assert imports.earlier(own, imports.digest(src))["next_line"] == 5001

        fb.down()
        fb.up()
        again = _run(env, str(src))
        assert again.returncode == 2 and "imported up to line 5000" in again.stderr, again.stderr
        assert "--from-line 5001 sends the rest" in again.stderr
        rest = _run(env, str(src), "--from-line", "5001")
        assert rest.returncode == 0 and f"imported {len(evs)} events, rejected 0" in rest.stdout, rest.stderr[-2000:]
        kept = imports.earlier(own, imports.digest(src))
        assert (kept["next_line"], kept["from_line"], kept["accepted"]) == (None, 1, len(evs))

        line_of = {orjson.dumps(e, option=orjson.OPT_SORT_KEYS): n for n, e in enumerate(evs, 1)}
        topics = ("entities", "complaints", "sensor-readings", "inspections", "records")
        landed = Counter(orjson.dumps(e, option=orjson.OPT_SORT_KEYS)
                         for t in topics for e in read_batches(url, s.topic(t)))
        assert set(landed) == set(line_of)  # every line in
        twice = sorted(line_of[k] for k, n in landed.items() if n > 1)
        assert all(5001 <= n <= 10000 for n in twice), twice[:5] + twice[-5:]  # only the chunk cut short
        print(f"lines of the cut chunk that were in before the cut, sent again: {len(twice)}")


def test_import_validates_with_the_config_applied_through_the_api(stack, tmp_path):
    """Ops switched entity_id_scheme to opaque through the API (kept in Redis); the workers accept
    opaque ids. Until 2026-11-28 `riskwatch import` (and the MQTT bridge) read the config file only
    and rejected every such line."""
    s, workers = stack
    _opaque(s)
    ev = {"type": "complaint", "complaint_id": "c-op", "entity_id": "shop-0042", "ts": "2026-03-01T09:00:00+08:00",
          "category": "hygiene"}
    (tmp_path / "one.jsonl").write_text(orjson.dumps(ev).decode() + "\n")
    out = _run(dict(workers.env), str(tmp_path / "one.jsonl"), "--topic-from-type")
    assert out.returncode == 0 and "imported 1 events, rejected 0" in out.stdout, (out.stdout, out.stderr)
    assert read_batches(s.broker, s.topic("complaints")) == [ev]


def test_import_an_export_with_local_dates_and_names_for_ids(stack, tmp_path):
    """An export as other systems write it (the CFPB's layout: US dates without a zone, company names for
    ids): ``--ts-format`` and ``--tz`` read its dates, ``--set`` adds what it lacks; a date in another
    format is rejected naming the field and the format. Through a real worker to the API."""
    from .api_helpers import auth, client
    from .conftest import wait_for

    s, workers = stack
    _opaque(s)
    acme = "Acme Lending, Inc."
    rows = [f'9/25/2013,Mortgage,"Loan servicing, payments","{acme}",Web,A{i}' for i in range(6)]
    rows += ['10/1/2013,Credit card,Billing,"Quiet Bank, N.A.",Phone,Q1',  # EDT until November 3
             '11/5/2013,Student loan,Repaying,"Quiet Bank, N.A.",Postal mail,Q2',  # EST
             '2013-09-26,Mortgage,Other,Other Co,Web,X1',  # not the export's format: rejected
             f'9/27/2013,{"Credit reporting " * 5},Other,Other Co,Web,X2']  # category over 64 characters
    (tmp_path / "export.csv").write_text("date_received,product,issue,company,submitted_via,complaint_id\n"
                                         + "\n".join(rows) + "\n")
    args = [str(tmp_path / "export.csv"), "--type", "complaint", *CFPB_MAP, "--ts-format", "%m/%d/%Y",
            "--tz", "America/New_York", "--set", "severity=2", "--rejects", str(tmp_path / "rej.jsonl")]
    out = _run(dict(workers.env), *args)
    assert out.returncode == 0 and "imported 8 events, rejected 2" in out.stdout, (out.stdout, out.stderr)
    assert "line 10: ts: '2013-09-26' does not match --ts-format '%m/%d/%Y' [time_format]" in out.stderr
    assert "line 11: category:" in out.stderr
    rej = [orjson.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [(x["line"], x["errors"][0]["field"], x["errors"][0]["rule"]) for x in rej][0] == (10, "ts", "time_format")
    landed = {e["complaint_id"]: e for e in read_batches(s.broker, s.topic("complaints"))}
    assert sorted(landed) == ["A0", "A1", "A2", "A3", "A4", "A5", "Q1", "Q2"]
    assert landed["A0"] == {"type": "complaint", "complaint_id": "A0", "entity_id": acme,
                            "ts": "2013-09-25T00:00:00-04:00", "category": "Mortgage", "severity": 2, "channel": "Web"}
    assert (landed["Q1"]["ts"], landed["Q2"]["ts"]) == ("2013-10-01T00:00:00-04:00", "2013-11-05T00:00:00-05:00")

    # what the options cannot do is refused before anything is sent
    no_tz = _run(dict(workers.env), *args[:-6], "--again")
    assert no_tz.returncode == 2 and "has no UTC offset: give its zone with --tz [time_zone]" in no_tz.stderr
    bad_tz = _run(dict(workers.env), *args[:-5], "Mars/Olympus", "--again")
    assert bad_tz.returncode == 2 and "--tz 'Mars/Olympus': not a time zone" in bad_tz.stderr, bad_tz.stderr
    (tmp_path / "x.jsonl").write_text(orjson.dumps(landed["A0"]).decode() + "\n")
    jsonl = _run(dict(workers.env), str(tmp_path / "x.jsonl"), "--tz", "UTC")
    assert jsonl.returncode == 2 and "apply to CSV files" in jsonl.stderr
    assert len(read_batches(s.broker, s.topic("complaints"))) == 8

    # six complaints in a day: the worker makes the company a burst, with the complaints behind it
    workers.start()
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= 8, 60, "8 complaints processed",
             workers.logs)
    with client(s) as c:
        ent = wait_for(lambda: (r := c.get(f"/v1/entities/{acme}", headers=auth("viewer"))).status_code == 200
                       and r.json(), 30, "the company in the view", workers.logs)
    burst = [x for x in ent["reasons"] if x["code"] == "complaints.burst"]
    assert burst and set(burst[0]["event_ids"]) <= {f"A{i}" for i in range(6)}, ent


def test_import_the_cfpb_sample(stack, tmp_path):
    """The CFPB Consumer Complaint Database sample in ../shared (1,000 complaints about 202 companies,
    September-October 2013): every row is read, its dates placed in New York time (EDT then)."""
    from collections import Counter

    from conftest import shared_path  # tests/conftest.py

    path = shared_path("data/complaints/cfpb_complaints_samples/CapitalPrince100_DatabaseClass/Consumer_Complaints.csv")
    s, workers = stack
    _opaque(s)
    out = _run(dict(workers.env), str(path), "--type", "complaint", *CFPB_MAP, "--ts-format", "%m/%d/%Y",
               "--tz", "America/New_York")
    assert out.returncode == 0 and "imported 1000 events, rejected 0" in out.stdout, (out.stdout, out.stderr)
    landed = read_batches(s.broker, s.topic("complaints"))
    per = Counter(e["entity_id"] for e in landed)
    assert len(landed) == 1000 and len(per) == 202 and per.most_common(1) == [("Bank of America", 99)]
    assert all(e["ts"].startswith("2013-") and e["ts"].endswith("T00:00:00-04:00") for e in landed)
    assert {e["channel"] for e in landed} == {"Web", "Postal mail", "Referral", "Phone", "Fax", "Email"}


def test_import_the_nyc_311_sample(stack, tmp_path):
    """One day of NYC 311 service requests in ../shared (924 rows; times as ``05/01/2022 12:00:03 AM``),
    the incident address as the id: the 7 rows without an address are rejected naming entity_id."""
    from conftest import shared_path  # tests/conftest.py

    path = shared_path("data/complaints/nyc_311_sample/311_Service_Requests_from_2010_to_Present.csv")
    s, workers = stack
    _opaque(s)
    out = _run(dict(workers.env), str(path), "--type", "complaint", "--map", "complaint_id=Unique Key",
               "--map", "entity_id=Incident Address", "--map", "ts=Created Date", "--map", "category=Complaint Type",
               "--map", "channel=Open Data Channel Type", "--ts-format", "%m/%d/%Y %I:%M:%S %p",
               "--tz", "America/New_York", "--rejects", str(tmp_path / "rej.jsonl"))
    assert out.returncode == 0 and "imported 917 events, rejected 7" in out.stdout, (out.stdout, out.stderr)
    rej = [orjson.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert len(rej) == 7 and all([e["field"] for e in x["errors"]] == ["entity_id"] for x in rej), rej
    landed = {e["complaint_id"]: e for e in read_batches(s.broker, s.topic("complaints"))}
    assert len(landed) == 917
    first = landed["54049402"]  # the file's first row: 05/01/2022 12:00:03 AM, 1006 GERARD AVENUE
    assert (first["ts"], first["entity_id"], first["category"], first["channel"]) == (
        "2022-05-01T00:00:03-04:00", "1006 GERARD AVENUE", "Noise - Residential", "ONLINE")
    assert all(e["ts"].startswith("2022-05-01T") and e["ts"].endswith("-04:00") for e in landed.values())


def test_the_same_file_started_again_while_it_is_being_imported_is_refused(stack, tmp_path):
    """Until 2026-12-07 an import was on record only once it ended: the same file started again meanwhile
    (a long backfill someone thought had failed, two hosts' cron jobs) was sent again. Two imports of
    100,000 lines started at once put 200,000 events on the topic."""
    import redis

    s, workers = stack
    env = dict(workers.env)
    path = tmp_path / "backfill.jsonl"
    n = 100_000
    path.write_text("".join(orjson.dumps({"type": "complaint", "complaint_id": f"c{i}", "entity_id": E, "category": "x",
                                          "ts": "2026-01-05T10:00:00+08:00"}).decode() + "\n" for i in range(n)))
    both = [subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "import", str(path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in both]
    codes = sorted(p.returncode for p in both)
    assert codes == [0, 2], outs
    refused = next(err for p, (_, err) in zip(both, outs) if p.returncode == 2)
    assert "is being imported: since" in refused or "was imported before" in refused, refused
    assert len(read_batches(s.broker, s.topic("complaints"))) == n  # once
    r = redis.Redis.from_url(s.redis_url)
    assert not r.keys("rw:imports:running:*")  # released

    # an import in progress on another host: refused, naming it, even with --again (which is for a file
    # imported before)
    other = tmp_path / "other.jsonl"
    other.write_text(path.read_text()[:2000].rsplit("\n", 1)[0] + "\n")
    from riskwatch.ingest.imports import digest

    r.set(f"rw:imports:running:{digest(other)}", orjson.dumps({"actor": "cli:li@host-2", "pid": 4242, "at": 1.8e9}),
          ex=60)
    busy = _run(env, str(other), "--again")
    assert busy.returncode == 2 and "being imported: since 2027-01-15T08:00:00Z by cli:li@host-2 (process 4242)" \
        in busy.stderr, busy.stderr
    assert len(read_batches(s.broker, s.topic("complaints"))) == n
