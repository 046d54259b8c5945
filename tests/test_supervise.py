"""riskwatch up's restart policy (pure logic: processes and the clock are stand-ins)."""

from __future__ import annotations

from types import SimpleNamespace

from riskwatch.supervise import Child, Restarts, supervise


class _Proc:
    """A process that exits with ``code`` once ``life`` seconds of the fake clock have passed."""

    def __init__(self, clock, life: float, code: int = 1) -> None:
        self.clock, self.end, self.code, self.pid = clock, clock.t + life, code, id(self)
        self.returncode = None

    def poll(self):
        if self.returncode is None and self.clock.t >= self.end:
            self.returncode = self.code
        return self.returncode


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt


def _run(children, clock, services=(), until: float = 3600.0) -> int:
    return supervise(children, list(services), lambda: clock.t >= until, lambda name: "(log)", tick=0.5,
                     clock=clock, sleep=clock.sleep)


def test_a_process_that_exits_now_and_then_is_started_again_each_time(capsys):
    clock = _Clock()
    starts = []

    def spawn():
        starts.append(clock.t)
        return _Proc(clock, life=400.0)  # a crash every 400 s: never 6 within 600 s

    c = Child("worker", spawn, _Proc(clock, life=10.0))
    assert _run([c], clock, until=2000.0) == 0
    # backoff 1 s, then 2 s: one earlier restart within the last 600 s each time, never a loop
    assert [round(t) for t in starts] == [11, 413, 815, 1217, 1619]
    err = capsys.readouterr().err
    assert "worker exited with 1; starting it again in 1s (restart 1 of at most 5 within 600s)" in err


def test_a_crash_loop_stops_everything_with_status_1(capsys):
    clock = _Clock()
    c = Child("api", lambda: _Proc(clock, life=0.0), _Proc(clock, life=0.0))
    assert _run([c], clock) == 1
    assert clock.t < 60  # backoffs of 1, 2, 4, 8 and 16 s, then the sixth exit stops it all
    assert "api exited with 1, its 6th exit within 600s: a crash loop, so everything stops" in capsys.readouterr().err


def test_a_demo_feed_that_finished_is_left_alone_and_a_dead_service_stops_everything(capsys):
    clock = _Clock()
    demo = Child("demo", lambda: _Proc(clock, 0.0), _Proc(clock, life=5.0, code=0))
    assert _run([demo], clock, until=100.0) == 0 and demo.due is None
    broker = SimpleNamespace(name="broker", alive=lambda: clock.t < 50, proc=SimpleNamespace(returncode=-9),
                             log="broker.log")
    assert _run([demo], clock, services=[broker], until=1000.0) == 1
    assert "broker exited with -9; it holds everything in memory" in capsys.readouterr().err


def test_the_count_of_restarts_forgets_those_outside_the_window():
    r = Restarts(max_restarts=2, window_s=10.0)
    assert [r.delay(0.0), r.delay(1.0), r.delay(2.0)] == [1.0, 2.0, None]
    assert r.delay(11.5) == 1.0 and r.delay(12.0) == 2.0


def test_a_start_that_fails_is_tried_again_with_backoff_and_a_loop_of_them_stops_everything(capsys):
    """The embedded Redis is started again on its port (since 2026-12-07): that start can fail (the port
    taken meanwhile); until then a spawn that raised ended ``up`` with a traceback."""
    clock = _Clock()
    tries = []

    def spawn():
        tries.append(clock.t)
        if len(tries) < 3:
            raise RuntimeError("redis did not open port 6379")
        return _Proc(clock, life=10_000.0)

    c = Child("redis", spawn, _Proc(clock, life=10.0, code=-9))
    assert _run([c], clock, until=100.0) == 0 and c.due is None and len(tries) == 3
    err = capsys.readouterr().err
    assert "redis could not be started again (redis did not open port 6379); trying again in 2s" in err
    assert "redis started again" in err
    never = Child("redis", lambda: (_ for _ in ()).throw(RuntimeError("no")), _Proc(clock, life=0.0))
    assert _run([never], clock, until=10_000.0) == 1
    assert "redis could not be started again (no): everything stops" in capsys.readouterr().err
