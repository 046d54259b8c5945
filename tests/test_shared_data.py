"""Checks on the shared, externally authored data (skipped where ../shared is absent)."""

import csv
import importlib.util

import orjson

from conftest import ROOT, shared_path

from riskwatch.engine import Engine


def _bench(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_nab_series_through_engine(tmp_path):
    series = shared_path("data/nab/data/realKnownCause/ambient_temperature_system_failure.csv")
    nab = _bench("nab")
    out = tmp_path / "riskwatch_x.csv"
    n = nab.run_series(Engine(nab.nab_config()), series, "realKnownCause/ambient", out)
    rows = list(csv.DictReader(out.open()))
    assert n == len(rows) == sum(1 for _ in series.open()) - 1
    scores = [float(r["anomaly_score"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[:50] == [0.0] * 50            # warm-up: no opinion yet
    assert max(scores) > 0.5                     # it fires somewhere in a series with known failures


def test_inspection_auc_helper():
    ins = _bench("inspections")
    assert ins.auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert ins.auc([1, 1, 1, 1], [False, True, False, True]) == 0.5
    assert ins.top_share([5, 4, 3, 2, 1], [True, False, False, False, True]) == (1, 2)


def test_the_cfpb_sample_replays_as_it_imports(tmp_path, capsys):
    """The CFPB export in ../shared, with the mapping its import test uses, replays without converting it:
    every complaint read (their dates in New York time), on its 202 companies, and decisions come out."""
    from riskwatch.cli import main

    path = shared_path("data/complaints/cfpb_complaints_samples/CapitalPrince100_DatabaseClass/Consumer_Complaints.csv")
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(path), "--type", "complaint", "--map", "complaint_id=complaint_id",
                 "--map", "entity_id=company", "--map", "ts=date_received", "--map", "category=product",
                 "--map", "channel=submitted_via", "--ts-format", "%m/%d/%Y", "--tz", "America/New_York",
                 "--entity-id-scheme", "opaque", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "events processed: 1000" in err and "entities: 202" in err and "invalid lines: 0" in err, err
    kinds = {orjson.loads(line)["type"] for line in out.read_bytes().splitlines()}
    assert {"risk_change", "spotcheck_change"} <= kinds
