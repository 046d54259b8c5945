"""What the name search index costs a worker's view write, and Redis memory.

    python bench/names.py [--entities 20000] [--rounds 5]

A real Redis server (the embedded one) and the workers' own round script
(``ViewWriter.write_round``), register data only, in rounds of 100 entities.
Three name sets of the same entities: made-up Chinese business names as the
simulator gives them (``simulate.business_name``: one word, found from any
character since 2026-12-06), four-word English names, and no index at all
(the same script with no name keys: the baseline). For each, per entity: a
new entity, the same name again (most upserts) and a rename; medians over
``--rounds`` rounds run in alternation; then ``MEMORY USAGE rw:names SAMPLES 0`` (every member) per
entity and per key.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from riskwatch import view  # noqa: E402
from riskwatch.embedded import start_redis  # noqa: E402
from riskwatch.simulate import INDUSTRIES, business_name  # noqa: E402
from riskwatch.uscc import generate  # noqa: E402

_WORDS = ("blue", "bottle", "coffee", "corner", "store", "golden", "dragon", "kitchen", "fresh", "market",
          "city", "pharmacy", "little", "garden", "star", "bakery")


def _names(style: str, ids: list[str], salt: int) -> list[str]:
    if style == "chinese":
        return [business_name(eid + "x" * salt, INDUSTRIES[i % len(INDUSTRIES)], "310104")
                for i, eid in enumerate(ids)]
    w = _WORDS
    return [" ".join(w[(i * 7 + k * 3 + salt) % len(w)] for k in range(4)).title() + f" {i}" for i in range(len(ids))]


async def _pass(r, ids: list[str], names: list[str]) -> float:
    """Seconds to write the register data of every entity, rounds of 100."""
    vw = view.ViewWriter({"A": 0.05})
    t0 = time.perf_counter()
    for i in range(0, len(ids), 100):
        ents = [{"entity_id": eid, "name": n, "industry": "catering", "region": "310104"}
                for eid, n in zip(ids[i:i + 100], names[i:i + 100])]
        await vw.write_round(r, [], lambda _: None, ents)
    return time.perf_counter() - t0


async def run(url: str, n: int, rounds: int) -> None:
    import random

    import redis.asyncio as aioredis

    rng = random.Random(5)
    ids = [generate(rng, "310104") for _ in range(n)]
    r = aioredis.from_url(url)
    real_entry = view._name_entry
    results: dict[str, dict[str, list[float]]] = {}
    memory: dict[str, tuple[int, int]] = {}
    for _ in range(rounds):
        for style in ("none", "english", "chinese"):
            view._name_entry = (lambda name: ([], "[]")) if style == "none" else real_entry
            base = "english" if style == "none" else style
            first, other = _names(base, ids, 0), _names(base, ids, 1)
            await r.flushdb()
            real_entry.cache_clear()  # a new entity's keys are computed too (cached for its next upserts)
            res = results.setdefault(style, {"new": [], "same": [], "renamed": []})
            res["new"].append(await _pass(r, ids, first) / n)
            if style != "none" and style not in memory:
                memory[style] = (await r.memory_usage("rw:names", samples=0) or 0, await r.zcard("rw:names"))
            res["same"].append(await _pass(r, ids, first) / n)
            res["renamed"].append(await _pass(r, ids, other) / n)
    view._name_entry = real_entry
    await r.aclose()
    base = {k: statistics.median(v) for k, v in results["none"].items()}
    print(f"{n} entities, rounds of 100, medians of {rounds} (µs per entity; ratio to no index)")
    for style in ("none", "english", "chinese"):
        row = {k: statistics.median(v) for k, v in results[style].items()}
        print(f"  {style:8} " + "  ".join(f"{k} {row[k] * 1e6:6.1f} ({row[k] / base[k]:.2f}x)" for k in row))
    for style, (size, keys) in memory.items():
        print(f"  rw:names, {style}: {size / 1024:.0f} KB, {keys} keys ({keys / n:.1f} an entity), "
              f"{size / max(keys, 1):.0f} bytes a key, {size / n:.0f} bytes an entity")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = start_redis(Path(tmp) / "redis")
        try:
            asyncio.run(run(svc.url, a.entities, a.rounds))
        finally:
            svc.stop()


if __name__ == "__main__":
    main()
