"""The config change in force when Redis loses it: the workers write theirs back, and a change made
meanwhile, numbered again from 1, is applied by every worker, not only by those started later."""

from __future__ import annotations

import asyncio
import os
import signal

from .api_helpers import auth, client
from .conftest import own_redis_stack, wait_for
from .helpers import OwnRedis

OPS = auth("ops")


def _change(c, cfg: dict, version: str, min_delta: float) -> int:
    cfg["version"], cfg["scoring"]["min_delta"] = version, min_delta
    r = c.put("/v1/config", json={"config": cfg, "reason": "tuning"}, headers=OPS)
    assert r.status_code == 202, r.text
    return r.json()["seq"]


def _in_force(c) -> tuple[int, str]:
    got = c.get("/v1/config", headers=OPS).json()
    return got["seq"], got["version"]


def test_the_workers_keep_the_config_in_force_through_a_redis_that_lost_it(services, tmp_path):
    """Until 2026-12-07, after Redis restarted without its data the API showed the config file in force
    while the worker ran change 2; the next change got number 1 again, "sent to workers", which the
    running worker ignored and a worker started afterwards ran."""
    red = OwnRedis(tmp_path / "redis")
    s, workers = own_redis_stack(services, red, tmp_path, "cfr")
    try:
        a = workers.start()
        with client(s) as c:
            cfg = c.get("/v1/config", headers=OPS).json()["config"]
            assert _change(c, cfg, "one", 2.0) == 1 and _change(c, cfg, "two", 3.0) == 2
            wait_for(lambda: workers.metric(a, "riskwatch_config_change") == 2, 60, "change 2 applied", workers.logs)

            # Redis restarts without its data while the worker runs: the worker writes change 2 back
            red.restart()
            wait_for(lambda: _in_force(c) == (2, "two"), 30, "change 2 in force again", workers.logs)
            assert "wrote back change 2 (config two)" in workers.log(a)
            assert _change(c, cfg, "three", 4.0) == 3  # numbered after it
            wait_for(lambda: workers.metric(a, "riskwatch_config_change") == 3, 60, "change 3 applied", workers.logs)

            # again, and ops changes the config before the worker wrote its change back (it is paused)
            pid = workers.procs[a][0].pid
            os.killpg(pid, signal.SIGSTOP)
            try:
                red.restart()
                assert _in_force(c)[0] == 0  # the API shows the config file in force
                assert _change(c, cfg, "four", 5.0) == 1  # Redis lost the numbering
            finally:
                os.killpg(pid, signal.SIGCONT)
            wait_for(lambda: "config four (change 1) was applied through the API after change 3" in workers.log(a),
                     60, "the worker to apply change 4, numbered 1", workers.logs)
            assert workers.metric(a, "riskwatch_config_change") == 1
            assert _in_force(c) == (1, "four")
            assert _change(c, cfg, "five", 6.0) == 4  # numbered after every change the workers took
            wait_for(lambda: workers.metric(a, "riskwatch_config_change") == 4, 60, "change 5 applied", workers.logs)
            b = workers.start()  # a worker started now runs the same
            wait_for(lambda: workers.metric(b, "riskwatch_config_change") == 4, 60, "a new worker on change 5",
                     workers.logs)
            assert workers.metric(a, 'riskwatch_config_repairs_total{action="adopted"}') == 1
    finally:
        workers.stop_all()
        red.stop()


def test_reconcile_writes_back_leaves_or_adopts_by_number_and_time(redis_url):
    """Each case of :func:`reconcile` against a real Redis."""
    import orjson
    import redis.asyncio as aioredis

    from riskwatch.config import CONFIG_SEQ, CONFIG_VERSIONS, CURRENT_CONFIG
    from riskwatch.streams.config_repair import reconcile

    def cmd(seq: int, at: float, version: str) -> dict:
        return {"type": "config_change", "seq": seq, "at": at, "version": version, "config": {"version": version}}

    async def run() -> list:
        r = aioredis.from_url(redis_url)
        out = []
        try:
            mine = cmd(5, 1000.0, "mine")
            out.append(await reconcile(r, mine, 5))  # Redis holds none: written back, numbering raised
            out.append((orjson.loads(await r.get(CURRENT_CONFIG))["version"], int(await r.get(CONFIG_SEQ)),
                        await r.hexists(CONFIG_VERSIONS, "5")))
            out.append(await reconcile(r, mine, 5))  # the same
            await r.set(CURRENT_CONFIG, orjson.dumps(cmd(4, 900.0, "older")))  # a replica that missed change 5
            out.append(await reconcile(r, mine, 5))
            out.append(orjson.loads(await r.get(CURRENT_CONFIG))["version"])
            await r.set(CURRENT_CONFIG, orjson.dumps(cmd(6, 1100.0, "next")))  # its command on its way
            out.append(await reconcile(r, mine, 5))
            await r.flushall()
            await r.set(CURRENT_CONFIG, orjson.dumps(cmd(1, 1200.0, "later")))  # made after Redis lost it all
            await r.set(CONFIG_SEQ, 1)
            out.append(await reconcile(r, mine, 5))
            out.append(int(await r.get(CONFIG_SEQ)))  # raised: the next change is numbered 6
            out.append(await reconcile(r, None, 0))  # a worker on the config file: its command is on the way
            await r.flushall()
            await reconcile(r, mine, 5)  # written back by a worker: no command comes for it
            out.append(await reconcile(r, None, 0))
        finally:
            await r.aclose()
        return out

    wrote, stored, same, older, older_now, ahead, later, seq, on_file, on_file_restored = asyncio.run(run())
    assert wrote == ("wrote", None) and stored == ("mine", 5, True)
    assert same[0] == "same" and older == ("wrote", None) and older_now == "mine"
    assert ahead[0] == "ahead" and ahead[1]["version"] == "next"
    assert later[0] == "adopt" and later[1]["version"] == "later" and seq == 5
    assert on_file[0] == "ahead" and on_file[1]["version"] == "later"
    assert on_file_restored[0] == "adopt" and on_file_restored[1]["version"] == "mine"
