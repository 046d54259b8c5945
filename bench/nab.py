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


def nab_config(anomaly: dict | None = None):
    data = load_config().model_dump()
    data["detectors"]["sensors"]["params"]["anomaly"].update(anomaly or {})
    data["entity_id_scheme"] = "opaque"
    data["detectors"]["sensors"]["params"]["limits"] = {}  # NAB series have no hard limits
    return config_from_dict(data)


def series_scores(engine: Engine, rows: list[tuple[str, float]], entity: str) -> list[float]:
    """The sensors detector's anomaly score after each (timestamp, value) row, in order."""
    state = None
    key = f"value@{entity}"
    out = []
    for stamp, value in rows:
        ts = datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc)
        ev = parse_event({"type": "sensor_reading", "entity_id": entity, "device_id": entity,
                          "metric": "value", "value": value, "ts": ts.isoformat()}, "opaque")
        state, _ = engine.process(state, ev)
        out.append(state["d"]["sensors"][key][SCORE])
    return out


def read_series(path: Path) -> list[tuple[str, float]]:
    with path.open(newline="") as f:
        return [(row["timestamp"], float(row["value"])) for row in csv.DictReader(f)]


def run_series(engine: Engine, path: Path, entity: str, out: Path) -> int:
    rows = read_series(path)
    scores = series_scores(engine, rows, entity)
    with out.open("w", newline="") as w:
        w.write("timestamp,value,anomaly_score,label\n")
        for (stamp, value), score in zip(rows, scores):
            w.write(f"{stamp},{value!r},{score},0\n")
    return len(rows)


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
