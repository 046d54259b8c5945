"""The default sensor detector, through the engine, over NAB series (no look-ahead).

    python bench/nab.py --nab ../shared/data/nab --out results/
    python ../shared/tools/nab_score.py --nab ../shared/data/nab --results results/riskwatch

One series = one entity (opaque ids), one ``sensor_reading`` per row, in row
order; the per-reading anomaly score the sensors detector computed is written
in NAB's result format: results/riskwatch/<category>/riskwatch_<file>.csv.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from riskwatch.config import config_from_dict, load_config  # noqa: E402
from riskwatch.detectors.sensors import SCORE  # noqa: E402
from riskwatch.engine import Engine  # noqa: E402
from riskwatch.events import parse_event  # noqa: E402

DETECTOR = "riskwatch"  # NAB forbids '_' in detector names


def nab_config():
    data = load_config().model_dump()
    data["entity_id_scheme"] = "opaque"
    data["detectors"]["sensors"]["params"]["limits"] = {}  # NAB series have no hard limits
    return config_from_dict(data)


def run_series(engine: Engine, path: Path, entity: str, out: Path) -> int:
    state = None
    key = f"value@{entity}"
    rows = 0
    with path.open(newline="") as f, out.open("w", newline="") as w:
        w.write("timestamp,value,anomaly_score,label\n")
        for row in csv.DictReader(f):
            ts = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=timezone.utc)
            ev = parse_event({"type": "sensor_reading", "entity_id": entity, "device_id": entity,
                              "metric": "value", "value": float(row["value"]), "ts": ts.isoformat()}, "opaque")
            state, _ = engine.process(state, ev)
            score = state["d"]["sensors"][key][SCORE]
            w.write(f"{row['timestamp']},{row['value']},{score},0\n")
            rows += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nab", required=True, help="a directory of NAB layout (data/<category>/*.csv)")
    ap.add_argument("--out", default="results/")
    a = ap.parse_args()
    data = Path(a.nab) / "data"
    if not data.is_dir():
        sys.exit(f"{data} not found")
    engine = Engine(nab_config())
    t0 = time.perf_counter()
    n = files = 0
    for cat in sorted(p for p in data.iterdir() if p.is_dir()):
        dest = Path(a.out) / DETECTOR / cat.name
        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted(cat.glob("*.csv")):
            n += run_series(engine, f, f"{cat.name}/{f.stem}", dest / f"{DETECTOR}_{f.name}")
            files += 1
    dt = time.perf_counter() - t0
    print(f"{files} series, {n:,} readings in {dt:.1f}s ({n / dt:,.0f} readings/s, validation included)")
    print(f"score with: python ../shared/tools/nab_score.py --nab {a.nab} --results {Path(a.out) / DETECTOR}")


if __name__ == "__main__":
    main()
