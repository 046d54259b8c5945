"""Summarise a `make run` demo: tiers reached by deteriorating vs quiet entities, top reasons."""

import csv
import sys
from collections import Counter
from pathlib import Path

import orjson

d = Path(sys.argv[1] if len(sys.argv) > 1 else ".data")
truth = {r["entity_id"]: r["deteriorating"] for r in map(orjson.loads, (d / "demo-truth.jsonl").read_bytes().splitlines())}
snap = list(csv.DictReader((d / "demo-snapshot.csv").open()))
tiers = {True: Counter(), False: Counter()}
for r in snap:
    tiers[truth[r["entity_id"]]][r["tier"]] += 1
print("\ntiers at", snap[0]["at"] if snap else "-")
for label, key in (("deteriorating (hidden truth)", True), ("quiet", False)):
    print(f"  {label:30s}", dict(sorted(tiers[key].items())))
outs = [orjson.loads(x) for x in (d / "demo-outputs.jsonl").read_bytes().splitlines()]
ups = [o for o in outs if o["type"] == "spotcheck_change" and o["to_tier"] in ("C", "D")]
print(f"\n{len(ups)} escalations to C/D; the latest three:")
for o in ups[-3:]:
    why = ", ".join(f"{r['code']} {r['contribution']:.1f}" for r in o["reasons"][:3])
    print(f"  {o['ts']}  {o['entity_id']}  {o['from_tier']}->{o['to_tier']}  score {o['score']:.1f}  [{why}]")
print(f"\noutputs: {d / 'demo-outputs.jsonl'}   snapshot: {d / 'demo-snapshot.csv'}")
