"""The spot-check draw (pure): weighting toward high-risk tiers, control share, determinism."""

from statistics import mean

from riskwatch.draw import draw

RATIOS = {"A": 0.03, "C": 0.15, "D": 0.4}
POP = [(f"E{i:04d}", t, RATIOS[t]) for i, t in enumerate("D" * 10 + "C" * 30 + "A" * 260)]


def _risk_d(seed: str) -> int:
    r = draw(seed, "2026-12", POP, 40, 0.25, ["li", "wang", "zhao"])
    return sum(1 for x in r["selected"] if x["stratum"] == "risk" and x["tier"] == "D")


def test_risk_stratum_is_weighted_by_spotcheck_ratio():
    # 30 risk picks of 300: uniform sampling would average 1 D entity; ratio weighting ~5.7
    counts = [_risk_d(f"seed{k}") for k in range(300)]
    assert mean(counts) > 4.5, mean(counts)


def test_control_share_and_determinism():
    a = draw("s", "2026-12", POP, 40, 0.25, ["li", "wang"])
    assert a == draw("s", "2026-12", list(reversed(POP)), 40, 0.25, ["li", "wang"])
    assert sum(1 for x in a["selected"] if x["stratum"] == "control") == 10
    assert a != draw("t", "2026-12", POP, 40, 0.25, ["li", "wang"])
