"""Streaming throughput and latency on the embedded broker, in one go.

    python bench/stream.py [--events 200000] [--entities 20000] [--worker-runs N]
                           [--latency-rate R] [--skip ceiling,baseline,worker,single,sustain,latency]

1. ceiling: a bare aiokafka consumer + orjson over single-event messages;
2. baseline: a bare Faust agent counting per entity in a dict, same messages;
3. riskwatch worker (engine, StateStore with changelog, outputs, Redis view) over the
   same events in batch envelopes, and over single-event messages;
4. sustain: the highest live rate one worker keeps up with, found on a ladder of live
   feeds (each step 25% above the last, each on a fresh broker and worker);
5. event->output latency p50/p99 of a fresh worker on a fresh broker and a live feed at
   half the prefilled rate of 3, and at half the live rate of 4 (the entity register is
   loaded before each measured live feed starts), twice: to the worker's hand-off of each
   output to its producer (the worker's histogram), and to the output being readable on its
   topic (a consumer in this process: what a downstream consumer sees).

The prefilled rate of 3 is a drain rate: a backlog of 500-event envelopes in rounds
of up to 200 messages, where each entity's state is written once for several of its
events. A live feed at that rate brings each entity's events a few at a time, so a
state is written for almost every event: 4 is the capacity a live feed can rely on.

Events are produced beforehand by separate processes. Prints events/s and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from riskwatch.aio import use_event_loop  # noqa: E402
from riskwatch.embedded import free_port, start_broker, start_redis  # noqa: E402
from riskwatch.settings import OUTPUT_TOPICS, Settings  # noqa: E402
from riskwatch.simulate import Simulation  # noqa: E402
from riskwatch.streams.kafka import ensure_topics  # noqa: E402

PY = sys.executable


def events(n_events, n_entities, seed=1):
    return Simulation(n_entities=n_entities, seed=seed, bad_share=0.05, days=60).events(n_events=n_events)


async def produce_single(broker: str, topic: str, n_events: int, n_entities: int) -> int:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20, max_batch_size=1 << 20)
    await p.start()
    k = 0
    for ev in events(n_events, n_entities):
        await p.send(topic, orjson.dumps(ev), key=ev["entity_id"].encode())
        k += 1
    await p.flush()
    await p.stop()
    return k


async def ceiling(broker: str, topic: str, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                         group_id=f"ceiling-{os.getpid()}", max_partition_fetch_bytes=8 << 20)
    await c.start()
    n, t0, counts = 0, None, {}
    while n < expected:
        batch = await c.getmany(timeout_ms=1000, max_records=10000)
        for msgs in batch.values():
            if t0 is None:
                t0 = time.perf_counter()
            for m in msgs:
                eid = orjson.loads(m.value)["entity_id"]
                counts[eid] = counts.get(eid, 0) + 1
            n += len(msgs)
    dt = time.perf_counter() - t0
    await c.stop()
    return n / dt


def bare_faust(broker: str, topic: str, expected: int, d: Path) -> float:
    res = d / "bare-faust.txt"
    p = subprocess.Popen([PY, str(ROOT / "bench" / "_bare_faust.py"), broker, topic, str(expected), str(res)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            lines = res.read_text().split("\n") if res.exists() else []
            got = {ln.split()[0]: float(ln.split()[1]) for ln in lines if ln.strip()}
            if "done" in got:
                return expected / (got["done"] - got["first"])
            time.sleep(0.2)
        raise RuntimeError("bare Faust agent did not finish")
    finally:
        p.terminate()
        p.wait(30)


def metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuShare:
    """CPU share (% of one core) of processes over a window: the embedded broker's fetches cost
    more as its partitions grow (see README: the embedded broker), which a live run must show."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.c0 = {k: cpu_seconds(p) for k, p in pids.items()}

    def __str__(self) -> str:
        dt = time.monotonic() - self.t0
        parts = []
        for k, p in self.pids.items():
            c1, c0 = cpu_seconds(p), self.c0[k]
            if c1 is not None and c0 is not None:
                parts.append(f"{k} {100 * (c1 - c0) / dt:.0f}%")
        return "CPU " + ", ".join(parts) if parts else "CPU n/a"


def histogram(port: int, name: str) -> list[tuple[float, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    out = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return out


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1]
    target = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= target:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((target - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


def worker_env(broker, redis, prefix, d: Path, port: int) -> dict:
    return dict(os.environ, RISKWATCH_BROKER=broker, RISKWATCH_REDIS_URL=redis, RISKWATCH_TOPIC_PREFIX=prefix,
                RISKWATCH_APP_ID=prefix.strip("."), RISKWATCH_DATA_DIR=str(d / prefix),
                RISKWATCH_WORKER_METRICS_PORT=str(port), RISKWATCH_TICK_SECONDS="0")


def run_worker(broker, redis, prefix, d, expected) -> tuple[float, int, subprocess.Popen]:
    port = free_port()
    p = subprocess.Popen([PY, "-m", "riskwatch.cli", "worker"], env=worker_env(broker, redis, prefix, d, port),
                         stdout=(d / f"{prefix}log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    first = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        n = metric(port, "riskwatch_events_processed_total")
        now = time.monotonic()
        if n and first is None:
            first = (now, n)
        if n >= expected:
            return (n - first[1]) / (now - first[0]), port, p
        time.sleep(_poll_pause(first, now, n, expected))
    raise RuntimeError(f"worker {prefix} did not finish; see {d / (prefix + 'log')}")


def _poll_pause(first: tuple[float, float] | None, now: float, n: float, expected: float) -> float:
    """50 ms near the start and the end of a run, up to 0.5 s between. Each scrape of the worker's
    /metrics costs it ~3 ms of CPU under its GIL: polled every 50 ms throughout, a py-spy profile
    put 5.6% of the worker's samples in its metrics server (2026-12-04)."""
    if first is None or now <= first[0] or n <= first[1]:
        return 0.05
    left = (expected - n) / ((n - first[1]) / (now - first[0]))
    return min(0.5, max(0.05, left / 3))


def simulate_to_kafka(broker, prefix, n_events, n_entities, batch, rate=None, live=False, max_delay=0.2,
                      register=True):
    env = dict(os.environ, RISKWATCH_BROKER=broker, RISKWATCH_TOPIC_PREFIX=prefix)
    cmd = [PY, "-m", "riskwatch.cli", "simulate", "--kafka", "--events", str(n_events), "--entities",
           str(n_entities), "--seed", "1", "--batch", str(batch), "--max-delay", str(max_delay)]
    if rate:
        cmd += ["--rate", str(rate)]
    if live:
        cmd += ["--live"]
    if not register:
        cmd += ["--no-register"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=20_000)
    ap.add_argument("--single-events", type=int, default=20_000,
                    help="events for the riskwatch-on-single-messages run (slow by design)")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--latency-rate", type=float, default=0.0,
                    help="offered events/s for the latency run (default: half the measured worker rate)")
    ap.add_argument("--max-delay", type=float, default=0.02, help="producer batching delay in the latency run (s)")
    ap.add_argument("--latency-warmup", type=float, default=3.0,
                    help="seconds of the live feed reported apart (the producer process starting up)")
    ap.add_argument("--batch", type=int, default=500, help="events per envelope in the prefilled worker run")
    ap.add_argument("--worker-runs", type=int, default=1,
                    help="runs of the prefilled worker phase (their median is reported; the machine is noisy)")
    ap.add_argument("--sustain-from", type=float, default=4000.0, help="first live rate of the sustain ladder")
    ap.add_argument("--sustain-seconds", type=float, default=12.0, help="length of each sustain step (s)")
    ap.add_argument("--skip", default="",
                    help="comma-separated phases to skip: ceiling,baseline,worker,single,sustain,latency")
    a = ap.parse_args()
    use_event_loop(Settings().event_loop)  # the ceiling's consumer runs in this process: the worker's loop
    d = Path(tempfile.mkdtemp(prefix="rw-bench-"))
    brokers, redis = [start_broker(d / "broker")], start_redis(d / "redis")
    procs: list[subprocess.Popen] = []

    def fresh_broker() -> tuple[str, int]:
        """A new embedded broker for a live run (its fetches cost more as partitions grow, and in
        one run, with every earlier phase's data in it, it took 59% of a core at 3,125 events/s
        against 39-46% when fresh); the workers of earlier runs are stopped first."""
        for p in procs:
            _stop(p)
        brokers[-1].stop()
        brokers.append(start_broker(d / f"broker{len(brokers)}"))
        return brokers[-1].url, brokers[-1].proc.pid

    try:
        b = brokers[0].url
        total = sum(1 for _ in events(a.events, a.entities))  # upserts + feed (silent devices skip some)
        print(f"events: {a.events:,} feed + {a.entities:,} entity upserts on {a.entities:,} entities, 4 partitions")
        # 1-2: single-event messages, ceiling and bare Faust baseline
        skip = set(filter(None, a.skip.split(",")))
        single = "bench.single"
        ceil = base = rate = None
        asyncio.run(_create(b, single, 4))
        subprocess.run([PY, "-c", f"import asyncio,sys; sys.path.insert(0,{str(ROOT)!r}); "
                        f"from bench.stream import produce_single; "
                        f"asyncio.run(produce_single({b!r}, {single!r}, {a.events}, {a.entities}))"],
                       check=True, cwd=ROOT)
        if "ceiling" not in skip:
            ceil = asyncio.run(ceiling(b, single, total))
            print(f"ceiling   bare aiokafka consumer + orjson:       {ceil:10,.0f} events/s", flush=True)
        if "baseline" not in skip:
            base = bare_faust(b, single, total, d)
            print(f"baseline  bare Faust agent, dict count:          {base:10,.0f} events/s", flush=True)
        # 3: riskwatch worker on batch envelopes
        if "worker" not in skip:
            rates = []
            for i in range(a.worker_runs):  # each run: its own topics, a fresh worker and state store
                prefix = f"rwb{i}." if i else "rwb."
                asyncio.run(ensure_topics(Settings(broker=b, topic_prefix=prefix)))
                simulate_to_kafka(b, prefix, a.events, a.entities, batch=a.batch).wait()
                r, _, w = run_worker(b, redis.url, prefix, d, total)
                procs.append(w)
                _stop(w)
                rates.append(r)
            rate = statistics.median(rates)
            runs = f" (median of {len(rates)}: {', '.join(f'{r:,.0f}' for r in rates)})" if len(rates) > 1 else ""
            ratios = "".join(f"  = {rate / x:.2f}x the {name}" for x, name in
                             ((base, "bare Faust agent"), (ceil, "ceiling")) if x)
            print(f"riskwatch worker, batch envelopes of <={a.batch:<4d}      {rate:10,.0f} events/s{ratios}{runs}",
                  flush=True)
        # 3b: riskwatch worker on single-event messages
        if "single" not in skip:
            prefix1 = "rws."
            asyncio.run(ensure_topics(Settings(broker=b, topic_prefix=prefix1)))
            n1, e1 = a.single_events, min(a.entities, a.single_events // 10)
            simulate_to_kafka(b, prefix1, n1, e1, batch=1).wait()
            rate1, _, w1 = run_worker(b, redis.url, prefix1, d, sum(1 for _ in events(n1, e1)))
            procs.append(w1)
            print(f"riskwatch worker, single-event messages ({n1:,}): {rate1:10,.0f} events/s", flush=True)
            w1.terminate()
        # 4: the live rate one worker keeps up with
        live = sustain(a, redis.url, d, procs, fresh_broker) if "sustain" not in skip else None
        # 5: latency at half the sustained rates (or at --latency-rate), live event time
        if "latency" not in skip:
            if a.latency_rate or not (rate or live):
                latency(a, redis.url, d, a.latency_rate or 2000.0, "rwl.", procs, fresh_broker)
            else:
                for r, what, prefix in ((rate, "the prefilled rate", "rwl."), (live, "the live rate", "rwm.")):
                    if r:
                        print(f"at half {what} ({r:,.0f} events/s):", flush=True)
                        latency(a, redis.url, d, r / 2, prefix, procs, fresh_broker)
    finally:
        for p in procs:
            _stop(p)
        brokers[-1].stop()
        redis.stop()


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def live_worker(a, b: str, redis_url: str, d: Path, prefix: str, procs: list) -> int:
    """A fresh worker on its own topics, joined, with the entity register loaded; -> its metrics port
    (the worker is ``procs[-1]``)."""
    asyncio.run(ensure_topics(Settings(broker=b, topic_prefix=prefix)))
    port = free_port()
    w = subprocess.Popen([PY, "-m", "riskwatch.cli", "worker"], env=worker_env(b, redis_url, prefix, d, port),
                         stdout=(d / f"{prefix}log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(w)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _up(port):
        time.sleep(0.2)
    time.sleep(8)  # joined its group and got its partitions (session timeout is 8 s)
    # the entity register first (a burst of upserts, no outputs), then the measured live feed
    simulate_to_kafka(b, prefix, 0, a.entities, batch=500).wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and metric(port, "riskwatch_events_processed_total") < a.entities:
        time.sleep(0.2)
    return port


def sustain(a, redis_url: str, d: Path, procs: list, fresh_broker) -> float | None:
    """The highest live rate one worker keeps up with. Steps of --sustain-seconds, each 25% above
    the last, each on a fresh broker and worker (the embedded broker's fetches cost more as a
    partition grows: a step must not pay for the ones before it); a step is kept up with when
    the worker has processed all of it within 1 s of its end and the event->output p50 of its
    second half stayed under 250 ms (a worker that falls behind shows a lag that grows)."""
    kept = None
    r = a.sustain_from
    for step in range(1, 100):
        prefix = f"rwk{step}."
        b, broker_pid = fresh_broker()
        port = live_worker(a, b, redis_url, d, prefix, procs)
        pids = {"worker": procs[-1].pid, "broker": broker_pid}
        done0 = metric(port, "riskwatch_events_processed_total")
        feed = simulate_to_kafka(b, prefix, int(r * a.sustain_seconds), a.entities, batch=500, rate=r,
                                 live=True, max_delay=a.max_delay, register=False)
        t0 = time.monotonic()
        time.sleep(a.sustain_seconds / 2)
        h0 = histogram(port, "riskwatch_event_to_output_seconds")
        share = CpuShare(pids)
        _, err = feed.communicate()
        cpu = str(share)
        took = time.monotonic() - t0
        sent = int(err.rsplit("produced ", 1)[1].split()[0]) if "produced " in err else 0
        h = histogram(port, "riskwatch_event_to_output_seconds")
        late = [(le, c - c0) for (le, c), (_, c0) in zip(h, h0)]
        end = time.monotonic() + 1.0
        while (done := metric(port, "riskwatch_events_processed_total") - done0) < sent and time.monotonic() < end:
            time.sleep(0.05)
        p50, p99 = quantile(late, .5), quantile(late, .99)
        ok = sent > 0 and done >= sent and p50 < 0.25
        print(f"sustain   {r:8,.0f} events/s offered: sent {sent:,} in {took:.1f}s, processed {done:,.0f} "
              f"1 s after, second half p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({cpu}): "
              f"{'kept up' if ok else 'fell behind'}", flush=True)
        if not ok:
            break
        if took > a.sustain_seconds + 3:
            print("sustain   the feed itself could not offer more; stopping the ladder", flush=True)
            break
        kept = r
        r *= 1.25
    if kept:
        print(f"sustain   highest live rate kept up with:        {kept:10,.0f} events/s", flush=True)
    return kept


class OutputWatcher:
    """What a downstream consumer sees: an aiokafka consumer (in a thread, 10 ms fetch wait, as the
    worker's) reading the output topics from the start. For each output it records when it was
    received, its event time and its Kafka timestamp (set when the worker handed it to its producer),
    so the worker's own figure (event time -> hand-off, its histogram) and the producer's batching,
    the broker's append and the fetch (hand-off -> readable) come apart."""

    def __init__(self, broker: str, prefix: str) -> None:
        import threading

        self.broker = broker
        self.topics = [Settings(topic_prefix=prefix).topic(t) for t in OUTPUT_TOPICS.values()]
        self.seen: list[tuple[float, float, float]] = []  # (received, event time, Kafka timestamp), epoch s
        self._stop = False
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        self._started.wait(30)

    async def _run(self) -> None:
        from datetime import datetime

        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(*self.topics, bootstrap_servers=self.broker, auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=10, group_id=None)
        await c.start()
        self._started.set()
        parse = datetime.fromisoformat
        try:
            while not self._stop:
                got = await c.getmany(timeout_ms=100)
                now = time.time()
                for msgs in got.values():
                    for msg in msgs:
                        for o in orjson.loads(msg.value)["batch"]:
                            self.seen.append((now, parse(o["ts"]).timestamp(), msg.timestamp / 1000.0))
        finally:
            await c.stop()

    def stop(self) -> None:
        self._stop = True
        self._thread.join(10)

    def report(self, since: float) -> str:
        """Quantiles (exact, in ms) of the outputs received after ``since`` (epoch s)."""
        rows = [r for r in self.seen if r[0] >= since]
        if not rows:
            return "no outputs read from the output topics"

        def q(xs: list[float], p: float) -> float:
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000

        whole = [r - ts for r, ts, _ in rows]
        tail = [r - k for r, _, k in rows]
        return (f"read from the output topics by a consumer (10 ms fetch wait), {len(rows):,} outputs: event->readable "
                f"p50 {q(whole, .5):.0f} ms, p99 {q(whole, .99):.0f} ms; of which hand-off->readable (producer "
                f"linger, broker append, fetch) p50 {q(tail, .5):.0f} ms, p99 {q(tail, .99):.0f} ms")


def latency(a, redis_url: str, d: Path, offered: float, prefix2: str, procs: list, fresh_broker) -> None:
    """Event->output latency of a fresh worker on a fresh broker, live feed at ``offered`` events/s."""
    b, broker_pid = fresh_broker()
    port2 = live_worker(a, b, redis_url, d, prefix2, procs)
    pids = {"worker": procs[-1].pid, "broker": broker_pid}
    n2 = int(offered * a.latency_seconds)
    watcher = OutputWatcher(b, prefix2)
    t_start = time.monotonic()
    feed = simulate_to_kafka(b, prefix2, n2, a.entities, batch=500, rate=offered, live=True,
                             max_delay=a.max_delay, register=False)
    # the feed's first seconds are the producer process starting up (connecting, first
    # metadata): its own lag reaches 0.2-0.4 s there, so they are reported apart
    time.sleep(a.latency_warmup)
    t_warm = time.time()
    h0 = histogram(port2, "riskwatch_event_to_output_seconds")
    w0 = histogram(port2, "riskwatch_input_wait_seconds")
    share = CpuShare(pids)
    feed.wait()
    cpu = str(share)
    sent_for = time.monotonic() - t_start
    # until the worker has drained the feed (one behind it is still producing outputs, the slowest
    # ones): its count has not moved for a second, at most 60 s; then its last outputs are readable
    deadline = time.monotonic() + 60
    last, still = -1.0, 0
    while time.monotonic() < deadline and still < 5:
        time.sleep(0.2)
        n = metric(port2, "riskwatch_events_processed_total")
        still = still + 1 if n == last else 0
        last = n
    time.sleep(0.5)
    watcher.stop()
    h = histogram(port2, "riskwatch_event_to_output_seconds")
    steady = [(le, c - c0) for (le, c), (_, c0) in zip(h, h0)]
    waits = [(le, c - c0) for (le, c), (_, c0) in zip(histogram(port2, "riskwatch_input_wait_seconds"), w0)]
    rw = histogram(port2, "riskwatch_round_seconds")
    rn = histogram(port2, "riskwatch_round_messages")
    processed = metric(port2, "riskwatch_events_processed_total") - a.entities
    print(f"latency at {offered:,.0f} events/s offered for {a.latency_seconds:.0f}s (the producer took "
          f"{sent_for:.0f}s incl. start-up), {processed:,.0f} events, {h[-1][1]:,.0f} outputs: event->output "
          f"after the first {a.latency_warmup:.0f}s p50 {quantile(steady, .5) * 1000:.0f} ms, "
          f"p99 {quantile(steady, .99) * 1000:.0f} ms ({steady[-1][1]:,.0f} outputs; of the input messages, "
          f"send -> the worker's round start p50 {quantile(waits, .5) * 1000:.0f} ms, "
          f"p99 {quantile(waits, .99) * 1000:.0f} ms); whole feed "
          f"p50 {quantile(h, .5) * 1000:.0f} ms, p99 {quantile(h, .99) * 1000:.0f} ms "
          f"(producer batching up to {a.max_delay * 1000:.0f} ms included; histogram buckets interpolated); "
          f"worker rounds: {rw[-1][1]:,.0f}, messages per round p50 {quantile(rn, .5):.0f}, "
          f"wall p50 {quantile(rw, .5) * 1000:.1f} ms, p99 {quantile(rw, .99) * 1000:.1f} ms; "
          f"after the first {a.latency_warmup:.0f}s {cpu}")
    print(f"  after the first {a.latency_warmup:.0f}s, {watcher.report(t_warm)}", flush=True)


async def _create(broker: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


if __name__ == "__main__":
    main()
