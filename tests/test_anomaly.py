"""The sensor anomaly scorer's three views, each shown by a series only it can catch, and its
daily-recurrence rule."""

import math
import random

import orjson

from riskwatch.detectors.anomaly import AnomalyScorer

STEP = 300.0  # one reading per 5 minutes
DAY = int(86400 / STEP)


def _feed(scorer, st, values, start=0):
    return [scorer.score(st, start + i, x, (start + i) * STEP) for i, x in enumerate(values)]


def _cycle(i, rng):
    return 20 + 10 * math.sin(2 * math.pi * i / DAY) + rng.gauss(0, 0.3)


def test_daily_profile_flags_a_cycle_out_of_phase():
    rng = random.Random(1)
    s = AnomalyScorer()
    st = s.new_state()
    calm = _feed(s, st, [_cycle(i, rng) for i in range(6 * DAY)])
    assert max(calm[3 * DAY:]) < 0.5
    # from midnight on, the cycle runs upside down: same range, same smoothness, wrong hour
    inverted = [40 - _cycle(i, rng) for i in range(6 * DAY, 6 * DAY + DAY // 2)]
    assert max(_feed(s, st, inverted, 6 * DAY)) > 0.5


def test_shape_flags_a_series_that_goes_flat_inside_its_range():
    rng = random.Random(2)
    s = AnomalyScorer(slots=1)  # no daily profile: only level and shape could fire
    st = s.new_state()
    noisy = _feed(s, st, [50 + rng.gauss(0, 5) for _ in range(3000)])
    assert max(noisy[1000:]) < 0.5
    flat = _feed(s, st, [50.0] * 200, 3000)  # the mean does not move; the variance collapses
    assert max(flat) > 0.5


def test_extreme_values_score_in_range_and_state_stays_small():
    s = AnomalyScorer()
    st = s.new_state()
    values = [1.0, 1e300, -1e300, 0.0, 5e-324, 42.0] * 100
    scores = _feed(s, st, values)
    assert all(0.0 <= x <= 1.0 for x in scores)
    assert len(orjson.dumps(st)) <= 168


def test_state_round_trips_through_json_mid_series():
    rng = random.Random(3)
    values = [_cycle(i, rng) for i in range(2 * DAY)]
    s = AnomalyScorer()
    a = s.new_state()
    whole = _feed(s, a, values)
    b = s.new_state()
    first = _feed(s, b, values[:DAY])
    b = orjson.loads(orjson.dumps(b))
    assert first + _feed(s, b, values[DAY:], DAY) == whole


def test_a_series_kept_by_the_one_view_score_is_taken_over():
    """States written before the three-view score (12 numbers per series) keep their timing and relearn."""
    from types import SimpleNamespace

    from riskwatch.detectors.sensors import SensorDetector

    d = SensorDetector()
    old = {"temperature@f1": [1000.0, 300.0, -1.0, 0.12, 80, 4.1, 0.02, 4.0, 0.9, 1.1, 0.95, 3]}
    sig = d.update(old, SimpleNamespace(device_id="f1", metric="temperature", value=4.2), 1300.0, 1300.0, {}, None)
    s = old["temperature@f1"]
    assert len(s) == 6 and s[0] == 1300.0 and s[1] == 300.0 and s[4] == 1
    assert sig["silence"][0] == 0.0
    assert len(orjson.dumps(old)) < 256


def _spiky_days(rng, days, spike_hours):
    """A calm series with a 3-reading spike at each (day, hour) in ``spike_hours``."""
    out = []
    for i in range(days * DAY):
        day, minute = divmod(i, DAY)
        x = 50 + rng.gauss(0, 1)
        for d, h in spike_hours:
            if day == d and 0 <= minute - h * 12 < 3:
                x += 25
        out.append(x)
    return out


def _fired_on(scores, day):
    return max(scores[day * DAY:(day + 1) * DAY])


def test_a_spike_at_the_same_hour_every_day_fires_on_the_first_day_only():
    spikes = [(d, 2) for d in range(3, 8)] + [(8, 14)]  # 02:00 on days 3-7, then 14:00 on day 8
    values = _spiky_days(random.Random(4), 9, spikes)
    routine = _feed(AnomalyScorer(), AnomalyScorer().new_state(), values)
    assert _fired_on(routine, 3) > 0.5                        # new: an incident
    for d in range(4, 8):  # the same hour again: a routine, elevated but not firing
        assert _fired_on(routine, d) < 0.5
        assert max(routine[d * DAY + 24:d * DAY + 27]) > 0.1
    assert _fired_on(routine, 8) > 0.5                        # another hour: an incident again
    off = AnomalyScorer(recurrence_window_s=0)
    every = _feed(off, off.new_state(), values)
    assert all(_fired_on(every, d) > 0.5 for d in range(3, 9))  # without the rule each spike fires


def test_a_state_packed_before_the_recurrence_rule_is_read_and_upgraded():
    import binascii

    from riskwatch.detectors.anomaly import _PACK, _PACK_V1

    rng = random.Random(5)
    values = [_cycle(i, rng) for i in range(3 * DAY)]
    s = AnomalyScorer()
    new = s.new_state()
    _feed(s, new, values[:DAY])
    fields = list(_PACK.unpack(binascii.a2b_base64(new[0])))
    new[0] = binascii.b2a_base64(_PACK.pack(fields[0], 0, 0, 0, *fields[4:]), newline=False).decode()
    old = [binascii.b2a_base64(_PACK_V1.pack(fields[0], *fields[4:]), newline=False).decode(), new[1]]
    assert len(old[0]) < len(new[0])
    assert _feed(s, old, values[DAY:], DAY) == _feed(s, new, values[DAY:], DAY)
    assert old == new  # written back in the current layout


def test_a_daily_excursion_past_a_hard_limit_still_breaches_every_day():
    """The recurrence rule damps the anomaly score only: limits are the regulator's, not learned."""
    from types import SimpleNamespace

    from riskwatch.detectors.sensors import SensorDetector

    d = SensorDetector(limits={"temperature": {"max": 70.0, "min_duration_s": 600}})
    st = d.new_state()
    values = _spiky_days(random.Random(6), 8, [(day, 2) for day in range(3, 8)])  # 75 at 02:00 daily
    breach_days, anomaly_days = set(), set()
    for i, x in enumerate(values):
        sig = d.update(st, SimpleNamespace(device_id="f1", metric="temperature", value=x), i * STEP, i * STEP, {}, None)
        if sig["limit_breach"][0] >= 1.0:
            breach_days.add(i // DAY)
        if sig.get("anomaly", (0.0,))[0] > 0.5:
            anomaly_days.add(i // DAY)
    assert breach_days == {3, 4, 5, 6, 7}
    assert 3 in anomaly_days and not anomaly_days & {4, 5, 6, 7}  # the anomaly score sees a routine


def test_a_change_of_slots_restarts_the_daily_profile():
    """``slots`` is a config parameter ops can change while states hold profiles of the old length.
    Until 2026-11-28 a reading in a slot past the old profile's end raised KeyError (the worker
    dead-lettered every later reading of every series, engine_error)."""
    old, st = AnomalyScorer(slots=24), None
    st = old.new_state()
    for n in range(300):
        old.score(st, n, 10 + math.sin(n / 12), n * 600.0)
    for slots in (48, 12):
        new, s2 = AnomalyScorer(slots=slots), [st[0], st[1]]
        out = [new.score(s2, n, 10 + math.sin(n / 12), n * 600.0) for n in range(300, 600)]
        assert len(s2[1]) == 2 * slots and all(0.0 <= x <= 1.0 for x in out)
