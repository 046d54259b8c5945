"""``riskwatch`` command line: replay, simulate, check-config (and the runtimes).

Exit codes: 0 ok, 1 runtime failure, 2 invalid input or config.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from . import __version__
from .errors import ConfigError, EngineFailed

__all__ = ["main"]


def _load_config(path: str | None):
    from .config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"config {path or '(default)'} is invalid:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_check_config(args) -> int:
    cfg = _load_config(args.path)
    print(f"ok: version {cfg.version}, detectors {', '.join(cfg.detector_objects)}, "
          f"tiers {', '.join(t.name for t in cfg.tiers)}")
    return 0


def cmd_verify_draw(args) -> int:
    """Check a published draw (see :mod:`riskwatch.draw_verify`): 0 when every check holds, 1 when one
    does not, 2 when the file is not an executed draw with its population."""
    import orjson

    from .draw_verify import Unverifiable, verify_draw

    try:
        raw = sys.stdin.buffer.read() if args.path == "-" else open(args.path, "rb").read()
        rec = orjson.loads(raw)
        checks = verify_draw(rec)
    except OSError as exc:
        print(f"riskwatch verify-draw: {exc}", file=sys.stderr)
        return 2
    except orjson.JSONDecodeError as exc:
        print(f"riskwatch verify-draw: {args.path} is not JSON ({exc})", file=sys.stderr)
        return 2
    except Unverifiable as exc:
        print(f"riskwatch verify-draw: cannot verify: {exc}", file=sys.stderr)
        return 2
    for name, ok, what in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {what}")
    bad = [name for name, ok, _ in checks if not ok]
    if bad:
        print(f"the draw does not verify: {', '.join(bad)}")
    elif rec.get("status") == "withdrawn":
        print("the withdrawn draw verifies: its disclosed seed and its population are the committed ones "
              "(it drew nothing)")
    else:
        print("the draw verifies (inspector assignments also depend on last_inspector, published with the result: "
              "compare it with the draws executed before)")
    return 1 if bad else 0


def _progress(lines, size, enabled: bool):
    if not enabled:
        yield from lines
        return
    from tqdm import tqdm

    with tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, desc="replay") as bar:
        for line in lines:
            bar.update(len(line))
            yield line


def _progress_items(items, raw, size, enabled: bool):
    """Items read from ``raw`` (a binary file), with a bar of the bytes read so far."""
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    with tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, desc="replay") as bar:
        for i, item in enumerate(items):
            if i % 1000 == 0 and raw.seekable():
                bar.update(raw.tell() - bar.n)
            yield item
        bar.update((size or bar.n) - bar.n)


def cmd_replay(args) -> int:
    from .engine import Engine
    from .ingest.reading import from_args, text_of
    from .replay import Replay, open_lines, parse_times

    cfg = _load_config(args.config)
    if args.entity_id_scheme:
        cfg = cfg.model_copy(update={"entity_id_scheme": args.entity_id_scheme})
    files = []

    def opened(path, mode):
        if not path:
            return None
        f = open(path, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))
        files.append(f)
        return f

    try:
        snap_at = parse_times(args.snapshot_at) if args.snapshot_at else []
    except ValueError as exc:
        print(f"--snapshot-at: {exc}", file=sys.stderr)
        return 2
    if snap_at and not args.snapshot_out:
        print("--snapshot-at needs --snapshot-out FILE.csv", file=sys.stderr)
        return 2
    try:
        how = from_args(args, args.events)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        lines, size = open_lines(args.events)
    except OSError as exc:
        print(f"cannot read {args.events}: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer if args.out == "-" else opened(args.out, "wb")
    from . import gc_policy

    gc_policy.apply()  # the replay holds every entity's state: see gc_policy
    rp = Replay(Engine(cfg), out=out, trace=opened(args.trace_out, "wb"), gc_freeze_every=20_000,
                snapshots=opened(args.snapshot_out, "w"), snapshot_at=snap_at, tick_seconds=args.tick)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        if how.fmt == "csv":  # rows mapped as `riskwatch import` maps them
            summary = rp.run_items(_progress_items(how.items(text_of(lines)), lines, size, show))
        else:  # JSON lines as bytes: validated straight from JSON
            summary = rp.run(_progress(lines, size, show))
    except EngineFailed as exc:  # a bug: stop where it is, with what was written up to there
        import traceback

        traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(rp.summary.render(), file=sys.stderr)
        print(f"replay stopped: the engine failed at {exc}. That is a bug in riskwatch: please report it "
              "with this event. The outputs before it are written; no snapshot after it.", file=sys.stderr)
        return 1
    finally:
        for f in files:
            f.close()
    print(summary.render(), file=sys.stderr)
    return 0


def cmd_simulate(args) -> int:
    from .simulate import Simulation

    if args.live:  # event time = wall clock, paced at --rate; deterioration starts early
        from datetime import datetime, timezone

        if not args.rate:
            print("--live needs --rate", file=sys.stderr)
            return 2
        mix = None
        if args.quiet_per_hour is not None:  # complaints, inspections, records at every entity at this rate
            anyone = min(0.3, args.entities * args.quiet_per_hour / 3600.0 / args.rate)
            mix = (1.0 - anyone - args.deteriorating_share, anyone)
        sim = Simulation(n_entities=args.entities, seed=args.seed, bad_share=args.bad_share,
                         days=args.events / args.rate / 86400, start=datetime.now(timezone.utc),
                         id_scheme=args.entity_id_scheme, onset=(0.0005, 0.002), mix=mix,
                         closing_share=args.closing_share, closing=(0.0005, 0.003))
    else:
        sim = Simulation(n_entities=args.entities, seed=args.seed, bad_share=args.bad_share, days=args.days,
                         id_scheme=args.entity_id_scheme, closing_share=args.closing_share,
                         outbreaks=args.outbreaks)
    if args.truth:
        with open(args.truth, "wb") as f:
            for row in sim.truth():
                f.write(orjson.dumps(row) + b"\n")
    if args.kafka:
        import asyncio

        from .aio import use_event_loop
        from .settings import Settings
        from .streams.kafka import produce

        settings = Settings()
        use_event_loop(settings.event_loop)
        n = asyncio.run(produce(settings, sim.events(n_events=args.events, register=not args.no_register),
                                rate=args.rate or None,
                                batch_size=args.batch, max_delay=args.max_delay, live=args.live))
        print(f"produced {n} events", file=sys.stderr)
        return 0
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
    for ev in sim.events(n_events=args.events, register=not args.no_register):
        out.write(orjson.dumps(ev) + b"\n")
    out.flush()
    return 0


def cmd_api(args) -> int:
    import uvicorn

    from .api.app import create_api
    from .logs import limit_repeats
    from .settings import Settings

    s = Settings()
    limit_repeats()  # the Kafka clients' errors while the broker is away
    uvicorn.run(create_api(s), host=s.api_host, port=s.api_port, log_level="warning", **s.uvicorn_tls())
    return 0


def cmd_up(args) -> int:
    from pathlib import Path

    from .up import up

    return up(Path(args.data_dir), args.demo, args.partitions, args.api_port, args.rate, args.entities)


def cmd_worker(args) -> int:
    import asyncio
    import logging

    from prometheus_client import start_http_server

    from . import datadir
    from .aio import use_event_loop
    from .logs import limit_repeats
    from .settings import Settings
    from .streams.app import create_app
    from .streams.kafka import PartitionMismatch, ensure_topics, until_reachable
    from .streams.stopping import Worker, run

    s = Settings()
    try:
        held = datadir.lock(s.data_dir / "worker")  # noqa: F841 - held until the worker exits
    except datadir.DataDirInUse as exc:
        print(f"riskwatch worker: {exc}", file=sys.stderr)
        return 2
    limit_repeats()  # aiokafka's errors while the broker is away: 43 lines a second measured
    loop_name = use_event_loop(s.event_loop)  # before Faust makes its loop
    loop = asyncio.new_event_loop()  # the policy's; Faust runs on it too
    asyncio.set_event_loop(loop)
    try:
        # before anything asks for them: a broker that creates topics on first use (Kafka's default)
        # made the state changelog with the delete policy, not compaction. No broker yet: wait for it
        # (Faust does not: it exited with "Unable to bootstrap", and so did the worker until 2026-12-07)
        loop.run_until_complete(until_reachable(lambda: ensure_topics(s), "riskwatch worker"))
    except PartitionMismatch as exc:
        print(f"riskwatch worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    app = create_app(s)
    logging.getLogger("riskwatch.worker").info("event loop: %s", loop_name)
    if s.worker_metrics_port:
        start_http_server(s.worker_metrics_port, addr=s.metrics_host, registry=app.riskwatch.metrics.registry)
    store = app.riskwatch_store
    worker = Worker(app, stop_timeout=s.stop_timeout_s, on_deadline=store.flush, loglevel=args.loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG at loglevel >= warning, so every
    # debug call in Faust and aiokafka built a log record (3% of the worker's time, py-spy)
    worker.spinner = None
    run(worker, store)
    return 0


def cmd_rebuild_view(args) -> int:
    import asyncio

    from .rebuild import rebuild_view
    from .settings import Settings

    counts = asyncio.run(rebuild_view(Settings(), flush=not args.no_flush))
    print(f"rebuilt the view from {counts['states']} entity states, {counts['entities']} entity records, "
          f"{counts['risk_changes']} risk changes, {counts['spotcheck_changes']} spot-check changes and "
          f"{counts['inspections']} inspection results; "
          f"{counts['from_state']} entities from their state alone (last risk change no longer in the topic); "
          f"{counts['objections']} objection records, {counts['audit']} audit entries, "
          f"{counts['config_history']} config changes, {counts['silences']} silences, {counts['imports']} file "
          f"imports and {counts['draws']} spot-check draws Redis had lost put back")
    if counts["refused"]:
        print(f"{counts['refused']} records on the output topics or the state changelog passed over: not what a "
              f"worker writes (not JSON, or a field missing or wrong)")
    return 0


def cmd_audit_check(args) -> int:
    """Compare the audit log in Redis with its copy on the audit topic: 0 when they agree, 1 when Redis
    lacks or differs from entries of the copy (see :func:`riskwatch.audit_topic.compare`)."""
    import asyncio

    from .audit_topic import compare, read_topic
    from .settings import Settings

    async def run() -> tuple[dict, int]:
        import redis.asyncio as aioredis

        s = Settings()
        r = aioredis.from_url(s.redis_url)
        try:
            topic, refused = await read_topic(s, s.topic("audit"))
            return await compare(r, topic), refused
        finally:
            await r.aclose()

    out, refused = asyncio.run(run())
    print(f"the audit log: {out['held']} entries in Redis, {out['on_topic']} on the topic"
          + (f" ({refused} records there passed over)" if refused else "")
          + f", {out['not_copied_yet']} newer than the copy")
    bad = False
    for key, what in (("missing", "on the topic, not in Redis (deleted, or lost with Redis and not written back "
                                  "yet: the API writes them back)"),
                      ("edited", "in both, with other content in Redis"),
                      ("not_on_topic", "in Redis, not on the topic, though older than its last")):
        if out[key]:
            bad = bad or key in ("missing", "edited")
            shown = ", ".join(out[key][:5]) + (f" and {len(out[key]) - 5} more" if len(out[key]) > 5 else "")
            print(f"{len(out[key])} {what}: {shown}")
    print("Redis differs from the copy" if bad else "Redis holds every entry of the copy, as copied")
    return 1 if bad else 0


def cmd_deadletter(args) -> int:
    import asyncio

    from .deadletters import read_dead_letters, render, replay, select
    from .replay import parse_times
    from .settings import Settings

    s = Settings()
    letters = asyncio.run(read_dead_letters(s, args.from_offset))
    since = parse_times(args.since)[0] if args.since else None
    shown = select(letters, args.reason, args.topic, since, args.from_offset)
    print(render(letters, shown, args.limit, args.from_offset))
    if args.replay and shown:
        sent, skipped = asyncio.run(replay(s, shown))
        print(f"replayed {sum(sent.values())} events ({', '.join(f'{t} {n}' for t, n in sent.items()) or 'none'}); "
              f"{skipped} not replayable (not an event)")
    return 0


def cmd_check_settings(args) -> int:
    import asyncio

    from .settings import Settings

    s = Settings()  # invalid: main() prints why, exit 2
    print(orjson.dumps(s.masked(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    if not args.connect:
        return 0
    from .preflight import reach

    results = asyncio.run(reach(s, args.timeout, mqtt=args.mqtt))
    for name, (ok, what) in results.items():
        print(f"{name:<6} {'ok    ' if ok else 'FAILED'} {what}", file=sys.stderr)
    return 0 if all(ok for ok, _ in results.values()) else 1


def cmd_topics(args) -> int:
    import asyncio

    from .settings import Settings
    from .streams.kafka import PartitionMismatch, ensure_topics

    try:
        asyncio.run(ensure_topics(Settings()))
    except PartitionMismatch as exc:
        print(f"riskwatch create-topics: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_hash_token(args) -> int:
    import secrets

    from .api.auth import TokenRegistry, token_entry

    given = sys.stdin.readline().strip() if not sys.stdin.isatty() else ""
    token = given or secrets.token_urlsafe(32)
    entry = token_entry(args.name, args.role, token, args.regions)
    try:
        TokenRegistry.parse(entry)  # the entry it prints is one the API takes
    except ValueError as exc:
        print(f"riskwatch hash-token: {str(exc).replace('RISKWATCH_API_TOKENS entry 1: ', '')}", file=sys.stderr)
        return 2
    if not given:
        print(f"generated token (give it to {args.name}; it is not stored): {token}", file=sys.stderr)
    print(entry)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .ingest.reading import add_file_arguments

    p = argparse.ArgumentParser(prog="riskwatch", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"riskwatch {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("check-config", help="validate a config file; exit 2 when invalid")
    c.add_argument("path", nargs="?", default=None)
    c.set_defaults(func=cmd_check_config)

    v = sub.add_parser("verify-draw", help="check a published spot-check draw (GET /v1/spotchecks/draws/<id>"
                                           "?population=true): seed, population, selection; exit 1 when not")
    v.add_argument("path", help="the draw's JSON, or - for stdin")
    v.set_defaults(func=cmd_verify_draw)

    r = sub.add_parser("replay", help="run the engine over recorded events (JSON lines, or CSV mapped as "
                                      "`riskwatch import` maps it)")
    r.add_argument("events", help="JSON-lines or CSV file (by its suffix, or --format), or - for stdin")
    r.add_argument("--config", default=None)
    r.add_argument("--out", default=None, help="write output events as JSON lines (- for stdout)")
    r.add_argument("--trace-out", default=None, help="per input event: every signal, score and tier")
    r.add_argument("--snapshot-at", default=None, help="comma-separated ISO-8601 event times")
    r.add_argument("--snapshot-out", default=None, help="CSV: entity_id,at,score,tier")
    r.add_argument("--tick", type=float, default=3600.0,
                   help="event-time seconds between ticks of entities with sensors (0: none)")
    r.add_argument("--entity-id-scheme", choices=("uscc", "opaque"), default=None)
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_file_arguments(r)
    r.set_defaults(func=cmd_replay)

    s = sub.add_parser("simulate", help="generate a realistic event stream (JSON lines)")
    s.add_argument("--entities", type=int, default=1000)
    s.add_argument("--events", type=int, default=10000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--bad-share", type=float, default=0.05)
    s.add_argument("--days", type=float, default=60.0)
    s.add_argument("--entity-id-scheme", choices=("uscc", "opaque"), default="uscc")
    s.add_argument("--out", default="-")
    s.add_argument("--truth", default=None, help="write the ground truth (JSON lines) here")
    s.add_argument("--kafka", action="store_true", help="produce to RISKWATCH_BROKER instead of a file")
    s.add_argument("--live", action="store_true",
                   help="event time starts now; --rate events/s on average, each sent at its event time")
    s.add_argument("--rate", type=float, default=0.0, help="events/s (0: as fast as possible)")
    s.add_argument("--quiet-per-hour", type=float, default=None,
                   help="--live: complaints, inspections and records per entity per hour at random entities; "
                        "deteriorating ones get --deteriorating-share of the feed on top, readings the rest "
                        "(default: the batch mix, 30%% of the feed at random entities and deteriorating ones)")
    s.add_argument("--deteriorating-share", type=float, default=0.005,
                   help="with --quiet-per-hour: share of the feed at deteriorating entities")
    s.add_argument("--closing-share", type=float, default=0.0,
                   help="share of the entities that do not deteriorate and close (an upsert with status closed, "
                        "then nothing from them): in the first minutes with --live, else in 10-90%% of the span")
    s.add_argument("--outbreaks", type=int, default=0,
                   help="peer groups (industry x region, 10 entities or more) with an outbreak in 70-90%% of the "
                        "span: 40%% of the group (8-40 entities) get one complaint each within 4 hours (the "
                        "truth's 'outbreak'); not with --live, whose groups have no 30 days of history")
    s.add_argument("--no-register", action="store_true",
                   help="feed events only (the entities were registered by an earlier run, same seed)")
    s.add_argument("--batch", type=int, default=500, help="events per batch envelope")
    s.add_argument("--max-delay", type=float, default=0.2, help="longest an event waits in a batch (s)")
    s.set_defaults(func=cmd_simulate)

    w = sub.add_parser("worker", help="run a stream worker (Faust) against RISKWATCH_BROKER")
    w.add_argument("--loglevel", default="warning")
    w.set_defaults(func=cmd_worker)

    a = sub.add_parser("api", help="serve the HTTP API (RISKWATCH_API_HOST/PORT)")
    a.set_defaults(func=cmd_api)

    u = sub.add_parser("up", help="start broker, Redis, worker and API (embedded unless RISKWATCH_* point elsewhere)")
    u.add_argument("--demo", action="store_true", help="feed simulated live traffic")
    u.add_argument("--data-dir", default=".data/run")
    u.add_argument("--partitions", type=int, default=4)
    u.add_argument("--api-port", type=int, default=8000)
    u.add_argument("--rate", type=float, default=300.0, help="demo events/s")
    u.add_argument("--entities", type=int, default=2000, help="demo population")
    u.set_defaults(func=cmd_up)

    ac = sub.add_parser("audit-check", help="compare the audit log in Redis with its copy on the audit topic "
                                            "(exit 1 when Redis lacks or differs from entries of the copy)")
    ac.set_defaults(func=cmd_audit_check)

    rv = sub.add_parser("rebuild-view", help="rebuild the Redis view from the Kafka topics")
    rv.add_argument("--no-flush", action="store_true", help="keep existing rw:* keys")
    rv.set_defaults(func=cmd_rebuild_view)

    dl = sub.add_parser("deadletter", help="list the dead-lettered events (by reason, source), --replay sends them back")
    dl.add_argument("--reason", action="append", help="only this reason (repeatable), e.g. value_error, in_future")
    dl.add_argument("--topic", help="only dead letters from this source topic")
    dl.add_argument("--since", help="only dead letters written at or after this ISO-8601 time")
    dl.add_argument("--from-offset", type=int, default=0, help="only from this dead-letter offset on")
    dl.add_argument("--limit", type=int, default=20, help="how many of the latest to show")
    dl.add_argument("--replay", action="store_true", help="send the selected events back to their input topics")
    dl.set_defaults(func=cmd_deadletter)

    cs = sub.add_parser("check-settings", help="print the RISKWATCH_* settings in force (secrets masked); exit 2 "
                        "when invalid; --connect: reach Kafka and Redis with them, exit 1 when one fails")
    cs.add_argument("--connect", action="store_true", help="try Kafka (TLS, SASL) and Redis (password) as set")
    cs.add_argument("--mqtt", action="store_true", help="with --connect: log in to the bridge's MQTT broker too")
    cs.add_argument("--timeout", type=float, default=10.0, help="seconds for each connection")
    cs.set_defaults(func=cmd_check_settings)

    t = sub.add_parser("create-topics", help="create the riskwatch topics on RISKWATCH_BROKER")
    t.set_defaults(func=cmd_topics)

    ht = sub.add_parser("hash-token", help="print name:role:sha256 for RISKWATCH_API_TOKENS (token from stdin)")
    ht.add_argument("name")
    ht.add_argument("role", choices=("viewer", "inspector", "ops", "admin", "ingest"))
    ht.add_argument("--regions", default=None,
                    help="limit the token to regions: '+'-separated region code prefixes (31, 3101, 310104)")
    ht.set_defaults(func=cmd_hash_token)

    from .alerts.cli import add_parsers as alert_parsers
    from .ingest.cli import add_parsers as ingest_parsers

    alert_parsers(sub)
    ingest_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # until 2026-12-06 a bad RISKWATCH_* variable ended every command with a pydantic traceback
        print(settings_errors(exc), file=sys.stderr)
        return 2


def settings_errors(exc) -> str:
    """A :class:`~riskwatch.settings.Settings` validation error as one line per variable.

    >>> from riskwatch.settings import Settings
    >>> try:
    ...     Settings(partitions=0)
    ... except Exception as exc:
    ...     print(settings_errors(exc))
    riskwatch: invalid settings:
      RISKWATCH_PARTITIONS: Input should be greater than or equal to 1 (got 0)
    """
    lines = ["riskwatch: invalid settings:"]
    for e in exc.errors():
        name = "RISKWATCH_" + "_".join(str(p) for p in e["loc"]).upper() if e["loc"] else ""
        msg = e["msg"].removeprefix("Value error, ")
        got = f" (got {e['input']!r})" if e["loc"] and not isinstance(e.get("input"), dict) else ""
        lines.append(f"  {name + ': ' if name else ''}{msg}{got}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
