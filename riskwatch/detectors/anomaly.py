"""An online anomaly score in [0, 1] for one numeric series, in ~170 bytes.

Three views of each reading, each turned into a raw surprise:

- **level**: the deviation of the value (and of a fast average) from a slow,
  protected baseline, in standard deviations (the baseline learns slowly
  from readings it flags, as river's ``ThresholdFilter(protect_anomaly_detector=True)``);
- **shape**: how far the recent distribution (a short exponential window's
  mean and variance) has moved from the long-run one, as the Kullback-Leibler
  divergence of two Gaussians: catches a series that goes flat, starts to
  oscillate or shifts level even when no single reading is extreme;
- **daily profile**: the deviation from the usual level at this time of day
  (``slots`` slots per UTC day, event time), so a night-time peak that is
  normal by day, or a missing daily cycle, stands out.

Each surprise goes through its own *anomaly likelihood* (Numenta's idea):
how unusual its recent mean is against the long-run distribution of that
surprise for this series, so noisy and calm series are judged on one scale.
The score is the largest of the three. After it fires, a refractory period
damps repeats, so one incident is one signal. A firing about a day after an
earlier one (within ``recurrence_window_s``) is a daily routine, not an
incident (a nightly backup, a defrost cycle): it scores a quarter of its
likelihood (at most 0.25), below the firing level (0.5). The last three
firings are remembered, as minutes of event time modulo 65535.

The state is two strings: the moments packed as float32 in base64, and the
profile as two characters (4096 levels of the series' observed range) per
slot, so two series fit the detector contract's 512 bytes. Parameters were
tuned on the NAB corpus; the README gives the cross-validated figure.

>>> s = AnomalyScorer()
>>> import math
>>> st, out = s.new_state(), []
>>> for i in range(1500):  # a calm daily cycle, one reading per 5 minutes
...     out.append(s.score(st, i, 10 + math.sin(i / 288 * 2 * math.pi), i * 300.0))
>>> max(out[1000:]) < 0.5
True
>>> for j in range(5):  # a sustained jump fires once
...     out.append(s.score(st, 1500 + j, 14.0, (1500 + j) * 300.0))
>>> max(out[-5:]) > 0.5, sum(x > 0.5 for x in out[-5:])
(True, 1)
"""

from __future__ import annotations

import binascii
import re
import struct
from math import erfc, log, log10, sqrt
from typing import Annotated

from pydantic import Field

from .base import ParamsModel

__all__ = ["AnomalyScorer", "AnomalyParams"]

# a profile slot is two characters of this alphabet (4096 levels over the
# series' observed range [lo, hi]); "  " is a slot not seen yet
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_LEVELS = 64 * 64 - 1
_UNSET = "  "
_DECODE = {a + b: i * 64 + j for i, a in enumerate(_ALPHABET) for j, b in enumerate(_ALPHABET)}
_ENCODE = {v: k for k, v in _DECODE.items()}
_PAIRS = re.compile("..", re.S)
_RAMP = 1500  # a view's first surprises: its likelihood learns at 1/k (at least likelihood_alpha)


class AnomalyParams(ParamsModel):
    # level
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.003
    fast_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.6
    protect_z: Annotated[float, Field(gt=0)] = 4.0
    protect_factor: Annotated[float, Field(gt=0, le=1)] = 0.1
    z_cap: Annotated[float, Field(gt=0)] = 10.0
    # shape: short vs long window
    shape_short_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.2
    shape_long_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.003
    shape_warmup: Annotated[int, Field(ge=1)] = 150
    # daily profile
    slots: Annotated[int, Field(ge=1, le=96)] = 24
    slot_alpha: Annotated[float, Field(gt=0, le=1)] = 0.05
    residual_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.001
    # anomaly likelihood and firing
    likelihood_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.001
    likelihood_smooth: Annotated[float, Field(gt=0, le=1)] = 0.3
    log_scale: Annotated[float, Field(gt=0)] = 5.0
    warmup: Annotated[int, Field(ge=2)] = 50
    fire_at: Annotated[float, Field(gt=0, lt=1)] = 0.4
    refractory: Annotated[int, Field(ge=0, le=65535)] = 100
    hold_factor: Annotated[float, Field(ge=0, le=1)] = 0.0
    recurrence_window_s: Annotated[float, Field(ge=0, le=43200)] = 5400.0  # 0: off


# packed fields (float32 unless noted), in order:
# hold, last three firings (uint16: minute of event time mod 65535, plus 1; 0 = none);
# level: mu, var, fast; shape: ms, vs, ml, vl; profile: rvar, lo, hi;
# likelihood per view (level, shape, profile): mean, var, short mean
_PACK = struct.Struct("<4H19f")
_PACK_V1 = struct.Struct("<H19f")  # before 2026-11-28.2: no firings (read, then written as _PACK)
_MINUTES = 65535
_DAY_MINUTES = 1440


class AnomalyScorer:
    """Pure scoring math over a two-string state; constructor arguments are :class:`AnomalyParams`."""

    def __init__(self, **params) -> None:
        p = AnomalyParams.model_validate(params)
        self.params = p
        for k in AnomalyParams.model_fields:
            setattr(self, k, getattr(p, k))
        self._slot_seconds = 86400.0 / p.slots
        self._recur_minutes = p.recurrence_window_s / 60.0
        self._likelihood = _likelihood_of(p.likelihood_smooth, p.log_scale, p.likelihood_alpha)
        # score() reads its constants with one unpack: attribute lookups were ~10% of its time
        self._k = (self.z_cap, self.fast_alpha, self.alpha, self.warmup, self.protect_z, self.protect_factor,
                   self.shape_short_alpha, self.shape_long_alpha, self.shape_warmup, self.residual_alpha,
                   self.slot_alpha, self.hold_factor, self.fire_at, self.refractory, self._recur_minutes,
                   self._slot_seconds, self.slots)

    def new_state(self) -> list:
        """[packed moments (base64), daily profile (2 characters per slot)]"""
        return ["", _UNSET * self.slots]

    def score(self, st: list, n: int, x: float, now: float) -> float:
        """Score reading ``x`` at event time ``now``, the series' ``n``-th (from 0); updates ``st``."""
        (z_cap, fast_alpha, alpha, warmup, protect_z, protect_factor, short_alpha, long_alpha, shape_warmup,
         residual_alpha, slot_alpha, hold_factor, fire_at, refractory, recur_minutes, slot_seconds, slots) = self._k
        x = -1e15 if x < -1e15 else (1e15 if x > 1e15 else x)  # float32 moments: keep squares finite
        i = 2 * (int(now % 86400.0 / slot_seconds) % slots)
        prof = st[1]
        if len(prof) != 2 * slots:  # `slots` changed by a config change: the daily profile starts again
            prof = _UNSET * slots  # (it raised KeyError on every later reading until 2026-11-28)
        if n == 0 or not st[0]:
            st[0] = binascii.b2a_base64(_PACK.pack(0, 0, 0, 0, x, 0.0, x, x, 0.0, x, 0.0, 0.0, x, x,
                                                   0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0), newline=False).decode()
            st[1] = prof[:i] + "AA" + prof[i + 2:]
            return 0.0
        packed = binascii.a2b_base64(st[0])
        if len(packed) == _PACK.size:
            (hold, f1, f2, f3, mu, var, fast, ms, vs, ml, vl, rvar, lo, hi,
             lm, lv, ls, gm, gv, gs, pm, pv, ps) = _PACK.unpack(packed)
        else:
            f1 = f2 = f3 = 0
            (hold, mu, var, fast, ms, vs, ml, vl, rvar, lo, hi,
             lm, lv, ls, gm, gv, gs, pm, pv, ps) = _PACK_V1.unpack(packed)
        lik_of = self._likelihood
        # level
        sd = sqrt(var) + 1e-3 * (abs(mu) + 1e-6) + 1e-9
        diff = x - mu
        z = abs(diff) / sd
        fast += fast_alpha * (x - fast)
        zf = abs(fast - mu) / sd
        raw = z if z > zf else zf
        lik, lm, lv, ls = lik_of(raw if raw < z_cap else z_cap, n - 1, lm, lv, ls)
        a = alpha
        if n >= warmup and z > protect_z:
            a *= protect_factor
        mu += a * diff
        var = (1 - a) * (var + a * diff * diff)
        # shape
        a = short_alpha
        d = x - ms
        ms += a * d
        vs = (1 - a) * (vs + a * d * d)
        a = long_alpha
        d = x - ml
        ml += a * d
        vl = (1 - a) * (vl + a * d * d)
        if n >= shape_warmup:
            eps = 1e-6 * (abs(ml) + 1e-3) ** 2 + 1e-12
            s2, l2 = vs + eps, vl + eps
            kl = 0.5 * log(l2 / s2) + (s2 + (ms - ml) ** 2) / (2 * l2) - 0.5
            g, gm, gv, gs = lik_of(kl, n - shape_warmup, gm, gv, gs)
            if g > lik:
                lik = g
        # daily profile
        if x < lo or x > hi:
            lo, hi, prof = _rescale(prof, lo, hi, x)
        span = hi - lo
        q = prof[i:i + 2]
        if q == _UNSET:
            m = x
        else:
            m = lo + _DECODE[q] * span / _LEVELS
            r = x - m
            sd = sqrt(rvar) + 1e-3 * (abs(m) + 1e-6) + 1e-9
            rz = abs(r) / sd
            p, pm, pv, ps = lik_of(rz if rz < z_cap else z_cap, n, pm, pv, ps)
            if p > lik:
                lik = p
            a = residual_alpha
            rvar = (1 - a) * (rvar + a * r * r)
            m += slot_alpha * r
        q = round((m - lo) / span * _LEVELS) if span > 0 else 0
        st[1] = prof[:i] + _ENCODE[0 if q < 0 else (_LEVELS if q > _LEVELS else q)] + prof[i + 2:]
        # fire
        if n < warmup:
            lik = 0.0
        elif hold > 0:
            hold -= 1
            lik *= hold_factor
        elif lik >= fire_at:
            hold = refractory
            minute = int(now // 60.0) % _MINUTES + 1
            w = recur_minutes
            if w and any(f and abs((minute - f) % _MINUTES - _DAY_MINUTES) <= w for f in (f1, f2, f3)):
                lik *= 0.5 * fire_at  # a daily routine: scores lik / 4, not firing
            f1, f2, f3 = minute, f1, f2
        st[0] = binascii.b2a_base64(_PACK.pack(hold, f1, f2, f3, mu, var, fast, ms, vs, ml, vl, rvar, lo, hi,
                                               lm, lv, ls, gm, gv, gs, pm, pv, ps), newline=False).decode()
        # calibrate: fire_at maps to 0.5, certainty (tail <= 10^-log_scale) to 1
        f = fire_at
        return 0.5 * lik / f if lik < f else 0.5 + 0.5 * (lik - f) / (1.0 - f)


def _likelihood_of(smooth: float, log_scale: float, alpha: float):
    """One view's anomaly likelihood as a closure over its parameters (a plain call is cheaper
    than a method reading them from ``self``):
    ``(raw surprise, k, mean, var, short mean) -> (likelihood in [0, 1], mean, var, short mean)``."""

    def likelihood(raw: float, k: int, m: float, v: float, sh: float) -> tuple[float, float, float, float]:
        sh += smooth * (raw - sh)
        # tail probability of the short mean, as -log10 scaled to [0, 1] so that
        # extreme tails stay ordered (1 - 1e-12 and 1 - 1e-20 are both 1.0 in floats)
        lik = -log10(0.5 * erfc((sh - m) / sqrt(2.0 * v + 1e-9)) + 1e-300) / log_scale
        la = alpha
        if k < _RAMP:
            r = 1.0 / (k + 1)  # a running mean first, then exponential forgetting
            if r > la:
                la = r
        rd = raw - m
        return (lik if lik < 1.0 else 1.0), m + la * rd, (1 - la) * (v + la * rd * rd), sh

    return likelihood


def _rescale(prof: str, lo: float, hi: float, x: float) -> tuple[float, float, str]:
    """Widen [lo, hi] to take ``x`` (with headroom: fewer rescales) and requantise the profile."""
    nlo, nhi = min(lo, x), max(hi, x)
    pad = 0.5 * max(nhi - nlo, 1e-3 * abs(x), 1e-9)  # float32 rounding must not rescale again
    nlo = nlo - pad if x < lo else nlo
    nhi = nhi + pad if x > hi else nhi
    nspan = nhi - nlo
    k = (hi - lo) / nspan  # old level -> new level: q * k + c
    c = (lo - nlo) / nspan * _LEVELS
    enc, dec = _ENCODE, _DECODE
    return nlo, nhi, "".join([
        q if q == _UNSET else enc[min(_LEVELS, max(0, round(dec[q] * k + c)))]
        for q in _PAIRS.findall(prof)])
