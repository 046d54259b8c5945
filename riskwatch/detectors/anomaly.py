"""An online anomaly score in [0, 1] for one numeric series, in a few floats.

Per reading: the deviation of the value from exponentially weighted moments
at two speeds (a slow baseline and a fast level), turned into a raw surprise;
then an *anomaly likelihood* (Numenta's idea): how unusual the recent mean
surprise is against the long-run distribution of surprises of this series,
so that noisy and calm series are judged on the same scale. After the score
fires, a refractory period damps repeats, so one incident is one signal.
The baseline learns slowly from readings it flags (``protect``), as river's
``ThresholdFilter(protect_anomaly_detector=True)`` does.

>>> s = AnomalyScorer()
>>> st = s.new_state()
>>> import math
>>> calm = [s.score(st, 10 + math.sin(i / 5)) for i in range(400)]
>>> max(calm[300:]) < 0.1
True
>>> shifted = [s.score(st, 14.0) for _ in range(5)]  # a sustained jump fires once
>>> max(shifted) > 0.5, sum(x > 0.5 for x in shifted)
(True, 1)
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from .base import ParamsModel

__all__ = ["AnomalyScorer", "AnomalyParams"]

_SQRT2 = math.sqrt(2.0)


class AnomalyParams(ParamsModel):
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    fast_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.3
    short_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.3
    long_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.002
    warmup: Annotated[int, Field(ge=2)] = 50
    protect_z: Annotated[float, Field(gt=0)] = 4.0
    protect_factor: Annotated[float, Field(gt=0, le=1)] = 0.1
    refractory: Annotated[int, Field(ge=0)] = 150
    fire_at: Annotated[float, Field(gt=0, lt=1)] = 0.2
    log_scale: Annotated[float, Field(gt=0)] = 10.0
    hold_factor: Annotated[float, Field(ge=0, le=1)] = 0.0
    z_cap: Annotated[float, Field(gt=0)] = 10.0


# state: [n, mu, var, fast, r_mu, r_var, r_short, hold]
N, MU, VAR, FAST, RMU, RVAR, RSHORT, HOLD = range(8)


class AnomalyScorer:
    """Pure scoring math over a list state; constructor arguments are :class:`AnomalyParams`."""

    def __init__(self, **params) -> None:
        p = AnomalyParams.model_validate(params)
        self.params = p
        for k in AnomalyParams.model_fields:
            setattr(self, k, getattr(p, k))

    def new_state(self) -> list:
        return [0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0]

    def score(self, st: list, x: float) -> float:
        n = st[N]
        if n == 0:
            st[:] = [1, x, 0.0, x, 0.0, 1.0, 0.0, 0]
            return 0.0
        mu, var = st[MU], st[VAR]
        sd = math.sqrt(var) + 1e-3 * (abs(mu) + 1e-6) + 1e-9
        z = abs(x - mu) / sd
        fast = st[FAST] + self.fast_alpha * (x - st[FAST])
        zf = abs(fast - mu) / sd
        raw = min(self.z_cap, max(z, zf))
        # anomaly likelihood: short mean surprise against the long-run distribution
        rshort = st[RSHORT] + self.short_alpha * (raw - st[RSHORT])
        rmu, rvar = st[RMU], st[RVAR]
        d = (rshort - rmu) / math.sqrt(rvar + 1e-6)
        # tail probability of the short mean, as -log10 scaled to [0, 1] so that
        # extreme tails stay ordered (1 - 1e-12 and 1 - 1e-20 are both 1.0 in floats)
        q = 0.5 * math.erfc(d / _SQRT2)
        lik = min(1.0, -math.log10(q + 1e-300) / self.log_scale)
        # learn (slowly from what we flag)
        a = self.alpha
        if n >= self.warmup and z > self.protect_z:
            a *= self.protect_factor
        diff = x - mu
        st[MU] = mu + a * diff
        st[VAR] = (1 - a) * (var + a * diff * diff)
        st[FAST] = fast
        la = self.long_alpha if n > 10 * self.warmup else max(self.long_alpha, 1.0 / (n + 1))
        rd = raw - rmu
        st[RMU] = rmu + la * rd
        st[RVAR] = (1 - la) * (rvar + la * rd * rd)
        st[RSHORT] = rshort
        st[N] = n + 1
        if n < self.warmup:
            return 0.0
        if st[HOLD] > 0:
            st[HOLD] -= 1
            lik *= self.hold_factor
        elif lik >= self.fire_at:
            st[HOLD] = self.refractory
        # calibrate: fire_at maps to 0.5, certainty (q <= 10^-log_scale) to 1
        f = self.fire_at
        return 0.5 * lik / f if lik < f else 0.5 + 0.5 * (lik - f) / (1.0 - f)
