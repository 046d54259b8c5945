"""Does the risk ranking predict who fails the next inspection? (Boston, 2006-2015)

    python bench/inspections.py [--data ../shared/data/inspections/boston_keeping_it_fresh/AllViolations.csv]

Turns each inspection into an ``inspection`` event (minor = ``*``, major =
``**``, critical = ``***``; opaque entity ids), replays them in time order
through ``riskwatch replay`` with a snapshot at the start of every month, and
for the restaurants inspected during each month compares the ranking at the
month's start with whether that inspection found a major or critical
violation (what the model predicts). Baseline: rank by the number of
violations found before the month. Prints pooled AUC, the median of monthly
AUCs and the share of failures in the top 20% ranked, for both.
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

import orjson

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared/data/inspections/boston_keeping_it_fresh/AllViolations.csv"


def auc(scores: list[float], labels: list[bool]) -> float:
    """Mann-Whitney AUC with ties counted half."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return float("nan")
    return (sum(r for r, y in zip(ranks, labels) if y) - pos * (pos + 1) / 2) / (pos * neg)


def top_share(scores, labels, frac=0.2) -> tuple[int, int]:
    n = max(1, round(len(scores) * frac))
    ranked = sorted(zip(scores, labels), key=lambda p: -p[0])
    return sum(y for _, y in ranked[:n]), sum(labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT))
    a = ap.parse_args()
    src = Path(a.data)
    if not src.exists():
        sys.exit(f"{src} not found (the shared data set is beside the project checkout)")
    rows = []
    with src.open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append((r["date"], int(r[""]), r["restaurant_id"], int(r["*"]), int(r["**"]), int(r["***"])))
    rows.sort()
    tmp = Path(tempfile.mkdtemp(prefix="rw-insp-"))
    events = tmp / "events.jsonl"
    with events.open("wb") as f:
        for d, rid, ent, mi, ma, cr in rows:
            f.write(orjson.dumps({"type": "inspection", "inspection_id": str(rid), "entity_id": ent,
                                  "ts": f"{d}T12:00:00+00:00", "kind": "routine",
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
           "--tick", "0", "--no-progress", "--snapshot-out", str(snap),
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
            d, rid, ent, mi, ma, cr = rows[j]
            if ent not in seen:
                seen.add(ent)
                cand.append((ent, (ma + cr) > 0))
            j += 1
        if len(cand) < 10:
            continue
        labels = [y for _, y in cand]
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


if __name__ == "__main__":
    main()
