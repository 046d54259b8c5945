"""Does the risk ranking predict who fails the next inspection? Three cities' histories.

    python bench/inspections.py [--city boston|sf|louisville|all] [--data PATH] [--config YAML]

Turns each inspection into an ``inspection`` event (opaque entity ids), replays
them in time order through ``riskwatch replay`` with a snapshot at the start of
every month, and for the places that had a routine inspection during each month
compares the ranking at the month's start with whether that inspection found
something (what the model predicts). Baseline: rank by the number of
violations found before the month. Prints pooled AUC, the median of monthly
AUCs and the share of failures in the top 20% ranked, for both.

What "found something" is, per city, from what its data holds:

- ``boston`` (``boston_keeping_it_fresh/AllViolations.csv``, 2006-2015): counts
  of minor (``*``), major (``**``) and severe (``***``) violations; a major or
  severe one found.
- ``sf`` (``sf_food_safety``, 2015-2018): a score per inspection and the
  violations' descriptions without their risk class; the city's own legend
  ("Poor" 0-70, "Needs Improvement" 71-85) gives ``fail`` and ``conditional``
  (one critical or one major violation), the descriptions' count the minor
  ones; found = a score of 85 or less (22% of inspections).
- ``louisville`` (``louisville_inspections``, 2010-2015): a score and REGULAR or
  FOLLOWUP, no violations; Louisville's grades (A 85-100, B 70-84, C below
  70) give ``fail`` and ``conditional`` the same way; found = grade B or C
  (3.7%). Its baseline counts past B and C grades, the only violations it
  records. Follow-ups go to the model (``follow_up``) but are not ranked.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/inspections"
DEFAULTS = {"boston": DATA / "boston_keeping_it_fresh/AllViolations.csv", "sf": DATA / "sf_food_safety",
            "louisville": DATA / "louisville_inspections"}

# a row: (date ISO, inspection id, entity, minor, major, critical, kind)


def load_boston(path: Path) -> list[tuple]:
    with path.open(newline="") as f:
        return [(r["date"], int(r[""]), r["restaurant_id"], int(r["*"]), int(r["**"]), int(r["***"]), "routine")
                for r in csv.DictReader(f)]


def _graded(score: int, fail_below: int, pass_from: int) -> tuple[int, int]:
    """(major, critical) of a score: one critical under ``fail_below``, one major under ``pass_from``."""
    return (1 if fail_below <= score < pass_from else 0), (1 if score < fail_below else 0)


def _iso(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}"


def load_sf(path: Path) -> list[tuple]:
    found = defaultdict(int)
    with (path / "violations.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            found[(r["business_id"], r["date"])] += 1
    rows = []
    with (path / "inspections.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            if not r["score"].strip():
                continue
            ma, cr = _graded(int(r["score"]), 71, 86)
            n = found[(r["business_id"], r["date"])]
            rows.append((_iso(r["date"]), f"{r['business_id']}_{r['date']}", r["business_id"], max(0, n - ma - cr),
                         ma, cr, "routine" if r["type"] == "routine" else "complaint"))
    return rows


def load_louisville(path: Path) -> list[tuple]:
    rows = []
    with (path / "inspections.csv").open(newline="") as f:
        for i, (biz, score, day, _desc, kind) in enumerate(csv.reader(f)):
            if not score.strip().isdigit():
                continue
            ma, cr = _graded(int(score), 70, 85)
            rows.append((_iso(day), f"L{i}", biz, 0, ma, cr, "follow_up" if kind == "FOLLOWUP" else "routine"))
    return rows


LOADERS = {"boston": load_boston, "sf": load_sf, "louisville": load_louisville}


def auc(scores, labels) -> float:
    """Mann-Whitney AUC with ties counted half (average ranks); NaN without both classes."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    pos = int(y.sum())
    neg = len(y) - pos
    if not pos or not neg:
        return float("nan")
    _, inv, cnt = np.unique(s, return_inverse=True, return_counts=True)
    r = (np.cumsum(cnt) - cnt + (cnt + 1) / 2)[inv]
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def auc_difference(a: list[float], b: list[float], labels: list[bool], groups: list[str],
                   reps: int = 1000) -> tuple[float, float, float]:
    """AUC(a) - AUC(b) over the same inspections, and a 95% bootstrap interval that resamples whole
    entities (one place's inspections are not independent of each other)."""
    a, b, y = np.asarray(a, float), np.asarray(b, float), np.asarray(labels, bool)
    by: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by[g].append(i)
    members = [np.asarray(v) for v in by.values()]
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(reps):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        yi = y[idx]
        if yi.all() or not yi.any():
            continue
        diffs.append(auc(a[idx], yi) - auc(b[idx], yi))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return auc(a, y) - auc(b, y), float(lo), float(hi)


def top_share(scores, labels, frac=0.2) -> tuple[int, int]:
    n = max(1, round(len(scores) * frac))
    ranked = sorted(zip(scores, labels), key=lambda p: -p[0])
    return sum(y for _, y in ranked[:n]), sum(labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--city", choices=(*LOADERS, "all"), default="boston")
    ap.add_argument("--data", default=None, help="the city's file or directory (default: ../shared/data/inspections)")
    ap.add_argument("--config", default=None, help="a riskwatch config to rank with (default: config/riskwatch.yaml)")
    a = ap.parse_args()
    for city in (LOADERS if a.city == "all" else [a.city]):
        src = Path(a.data) if a.data else DEFAULTS[city]
        if not src.exists():
            sys.exit(f"{src} not found (the shared data set is beside the project checkout)")
        print(f"== {city} ({src})", flush=True)
        run(sorted(LOADERS[city](src)), a.config)


def run(rows: list[tuple], config: str | None = None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="rw-insp-"))
    events = tmp / "events.jsonl"
    with events.open("wb") as f:
        for d, rid, ent, mi, ma, cr, kind in rows:
            f.write(orjson.dumps({"type": "inspection", "inspection_id": str(rid), "entity_id": ent,
                                  "ts": f"{d}T12:00:00+00:00", "kind": kind,
                                  "outcome": "fail" if cr else "conditional" if ma else "pass",
                                  "violations": {"critical": cr, "major": ma, "minor": mi}}) + b"\n")
    first, last = date.fromisoformat(rows[0][0]), date.fromisoformat(rows[-1][0])
    months = []
    y, m = first.year, first.month + 1
    while (y, m) <= (last.year, last.month):
        months.append(date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    snap = tmp / "snap.csv"
    cmd = [sys.executable, "-m", "riskwatch.cli", "replay", str(events), "--entity-id-scheme", "opaque",
           "--tick", "0", "--no-progress", "--snapshot-out", str(snap), *(["--config", config] if config else []),
           "--snapshot-at", ",".join(f"{d.isoformat()}T00:00:00+00:00" for d in months)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(r.stderr)
    print(r.stderr.strip().replace("\n", "; "))
    score: dict[tuple[str, str], float] = {}
    with snap.open() as f:
        for row in csv.DictReader(f):
            score[(row["at"][:10], row["entity_id"])] = float(row["score"])
    # per month: first inspection of each restaurant inside the month; label = major/critical found
    past = defaultdict(int)
    k = 0
    pooled = {"riskwatch": ([], []), "past violations": ([], [])}
    ranked_entities: list[str] = []
    monthly = {name: [] for name in pooled}
    top = {name: [0, 0] for name in pooled}
    for mstart in months:
        mend = date(mstart.year + (mstart.month == 12), mstart.month % 12 + 1, 1)
        while k < len(rows) and date.fromisoformat(rows[k][0]) < mstart:
            past[rows[k][2]] += rows[k][3] + rows[k][4] + rows[k][5]
            k += 1
        seen, cand = set(), []
        j = k
        while j < len(rows) and date.fromisoformat(rows[j][0]) < mend:
            d, rid, ent, mi, ma, cr, kind = rows[j]
            if kind == "routine" and ent not in seen:
                seen.add(ent)
                cand.append((ent, (ma + cr) > 0))
            j += 1
        if len(cand) < 10:
            continue
        labels = [y for _, y in cand]
        ranked_entities.extend(e for e, _ in cand)
        key = mstart.isoformat()
        for name, sc in (("riskwatch", [score.get((key, e), 0.0) for e, _ in cand]),
                         ("past violations", [float(past[e]) for e, _ in cand])):
            pooled[name][0].extend(sc)
            pooled[name][1].extend(labels)
            a_m = auc(sc, labels)
            if a_m == a_m:
                monthly[name].append(a_m)
            hit, tot = top_share(sc, labels)
            top[name][0] += hit
            top[name][1] += tot
    n = len(pooled["riskwatch"][1])
    print(f"{len(rows):,} inspections, {len(months)} month starts, {n:,} ranked inspections, "
          f"base rate of major/critical {sum(pooled['riskwatch'][1]) / n:.1%}")
    for name in pooled:
        print(f"{name:16s} pooled AUC {auc(*pooled[name]):.3f}   median monthly AUC "
              f"{statistics.median(monthly[name]):.3f}   failures in top 20%: "
              f"{top[name][0] / top[name][1]:.1%}")
    d, lo, hi = auc_difference(pooled["riskwatch"][0], pooled["past violations"][0], pooled["riskwatch"][1],
                               ranked_entities)
    print(f"pooled AUC riskwatch - past violations {d:+.3f}, 95% interval {lo:+.3f} to {hi:+.3f} "
          f"(1,000 bootstrap resamples of whole entities)")


if __name__ == "__main__":
    main()
