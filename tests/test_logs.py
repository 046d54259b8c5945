"""riskwatch.logs.RepeatLimiter: pure logic with a fake clock, and the formatter the worker logs through."""

from __future__ import annotations

import io
import logging

from mode.utils.logging import ExtensionFormatter

from riskwatch.logs import RepeatLimiter, limit_repeats


def _rec(msg, *args, level=logging.ERROR, name="aiokafka.client"):
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_record_per_kind_and_period_passes_and_the_next_carries_the_count():
    t = [0.0]
    f = RepeatLimiter(every=10.0, clock=lambda: t[0])
    passed = []
    for i in range(30):  # one a second for 30 s
        t[0] = float(i)
        r = _rec("Unable connect to node with id %s: %s", 111, "refused")
        if f.filter(r):
            passed.append((i, r.getMessage()))
    assert [i for i, _ in passed] == [0, 10, 20]
    assert passed[1][1] == "Unable connect to node with id 111: refused (9 more like this in the last 10 s not shown)"


def test_other_kinds_other_loggers_and_info_records_are_not_held_back():
    f = RepeatLimiter(every=10.0, clock=lambda: 0.0)
    assert f.filter(_rec("a %s", 1))
    assert not f.filter(_rec("a %s", 2))
    assert f.filter(_rec("b %s", 1))  # another template
    assert f.filter(_rec("a %s", 1, name="aiokafka.conn"))  # another logger
    assert all(f.filter(_rec("a %s", i, level=logging.INFO)) for i in range(5))


def test_a_summarised_record_formats_through_the_worker_formatter_even_with_a_percent_sign():
    t = [0.0]
    f = RepeatLimiter(every=10.0, clock=lambda: t[0])
    f.filter(_rec("fetch failed: %s", "50% of partitions"))
    f.filter(_rec("fetch failed: %s", "50% of partitions"))
    t[0] = 11.0
    r = _rec("fetch failed: %s", "50% of partitions")
    assert f.filter(r)
    out = ExtensionFormatter(stream=io.StringIO(), fmt="%(message)s").format(r)  # mode's, as Faust sets up
    assert out == "fetch failed: 50% of partitions (1 more like this in the last 11 s not shown)"


def test_limit_repeats_reaches_the_loggers_aiokafka_modules_log_to():
    limiter = limit_repeats()
    try:
        for name in ("aiokafka", "aiokafka.client", "aiokafka.conn", "aiokafka.consumer.fetcher",
                     "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender"):
            assert limiter in logging.getLogger(name).filters, name
    finally:
        for lg in [logging.getLogger("aiokafka"), *logging.Logger.manager.loggerDict.values()]:
            if isinstance(lg, logging.Logger) and limiter in lg.filters:
                lg.removeFilter(limiter)
