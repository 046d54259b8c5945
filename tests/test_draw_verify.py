"""``riskwatch verify-draw``: a published draw verifies, and every kind of tampering is caught."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from riskwatch.draw import draw, population_digest, seed_digest
from riskwatch.draw_verify import Unverifiable, verify_draw


def _record() -> dict:
    pop = [[f"E{i:03d}", "D" if i < 10 else "B" if i < 40 else "A", 0.4 if i < 10 else 0.05 if i < 40 else 0.03]
           for i in range(200)]
    last = {"E001": "li", "E002": "wang"}
    tuples = [tuple(p) for p in pop]
    return {"id": "draw-abc", "status": "executed", "period": "2026-12", "capacity": 20, "control_share": 0.25,
            "inspectors": ["li", "wang", "zhao"], "seed": "9f" * 32, "seed_sha256": seed_digest("9f" * 32),
            "population_sha256": population_digest(tuples), "population_size": 200, "population": pop,
            "last_inspector": last,
            "result": draw("9f" * 32, "2026-12", tuples, 20, 0.25, ["li", "wang", "zhao"], last)}


def _failed(rec: dict) -> list[str]:
    return [name for name, ok, _ in verify_draw(rec) if not ok]


def test_a_published_draw_verifies():
    assert _failed(_record()) == []


def test_each_kind_of_tampering_is_caught():
    rec = _record()
    assert _failed({**rec, "seed": "00" * 32}) == ["seed", "result"]  # another seed than the committed one
    pop = [list(p) for p in rec["population"]]
    pop[50][1], pop[50][2] = "D", 0.4  # an entity's tier raised after the commitment (the selection
    assert _failed({**rec, "population": pop})[0] == "population"  # may or may not move with it)
    assert _failed({**rec, "population": rec["population"][:-1]})[0] == "population"  # one left out
    sel = [dict(s) for s in rec["result"]["selected"]]
    sel[3]["inspector"] = "zhao" if sel[3]["inspector"] != "zhao" else "li"  # another inspector sent
    checks = {n: (ok, what) for n, ok, what in verify_draw({**rec, "result": {**rec["result"], "selected": sel}})}
    assert not checks["result"][0] and "first differences" in checks["result"][1]
    assert _failed({**rec, "capacity": 21}) == ["result"]  # parameters other than those published


@pytest.mark.parametrize("change,why", [
    ({"status": "committed", "seed": None}, "disclosed only when it is executed or withdrawn"),
    ({"population": "E001,E002"}, "not a list"),
    ({"result": None, "seed_sha256": None}, None),
])
def test_what_cannot_be_verified_says_why(change, why):
    rec = {**_record(), **change}
    rec = {k: v for k, v in rec.items() if v is not None}
    with pytest.raises(Unverifiable, match=why or "lacks seed_sha256, result"):
        verify_draw(rec)
    with pytest.raises(Unverifiable, match="save it with \\?population=true"):
        verify_draw({k: v for k, v in _record().items() if k != "population"})


def test_the_cli_exits_0_1_or_2(tmp_path):
    rec = _record()
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(orjson.dumps(rec))
    bad.write_bytes(orjson.dumps({**rec, "seed": "00" * 32}))

    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "riskwatch.cli", "verify-draw", *args], input=stdin,
                              capture_output=True, text=True, timeout=60)

    ok = run(str(good))
    assert ok.returncode == 0 and "the draw verifies" in ok.stdout and ok.stdout.count("ok  ") == 3, ok.stdout
    no = run(str(bad))
    assert no.returncode == 1 and "FAIL seed" in no.stdout and "does not verify: seed, result" in no.stdout
    assert run("-", stdin=orjson.dumps(rec).decode()).returncode == 0
    junk = run("-", stdin="not json")
    assert junk.returncode == 2 and "is not JSON" in junk.stderr
    assert run(str(tmp_path / "none.json")).returncode == 2


def test_a_withdrawn_draw_is_checked_for_its_seed_and_population(tmp_path):
    rec = {k: v for k, v in _record().items() if k not in ("result", "last_inspector")}
    rec["status"] = "withdrawn"
    assert [(n, ok) for n, ok, _ in verify_draw(rec)] == [("seed", True), ("population", True)]
    assert _failed({**rec, "seed": "00" * 32}) == ["seed"]
    path = tmp_path / "withdrawn.json"
    path.write_bytes(orjson.dumps(rec))
    out = subprocess.run([sys.executable, "-m", "riskwatch.cli", "verify-draw", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "the withdrawn draw verifies" in out.stdout, out.stdout + out.stderr
