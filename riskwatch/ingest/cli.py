"""Command-line verbs for ingestion: the HTTP gateway, the MQTT bridge, file import."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

__all__ = ["add_parsers"]


def cmd_ingest(args) -> int:
    import uvicorn

    from ..logs import limit_repeats
    from ..settings import Settings
    from .http import create_ingest_api

    s = Settings()
    limit_repeats()  # the Kafka producer's errors while the broker is away
    uvicorn.run(create_ingest_api(s), host=s.ingest_host, port=s.ingest_port, log_level="warning",
                **s.uvicorn_tls())
    return 0


def cmd_ingest_mqtt(args) -> int:
    from prometheus_client import start_http_server

    from ..logs import limit_repeats
    from ..settings import Settings
    from .mqtt import MqttBridge

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    limit_repeats()  # the Kafka producer's errors while the broker is away
    s = Settings()
    bridge = MqttBridge(s)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=s.metrics_host, registry=bridge.registry)

    async def main():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, bridge.stop.set)
        await bridge.run()

    asyncio.run(main())
    return 0


def cmd_import(args) -> int:
    import redis.exceptions as rex

    from ..settings import Settings
    from ..times import iso_seconds
    from . import imports

    path = Path(args.file)
    if not path.is_file():
        print(f"cannot read {path}", file=sys.stderr)
        return 2
    if args.from_line < 1:
        print(f"--from-line {args.from_line}: lines are numbered from 1", file=sys.stderr)
        return 2
    if not args.give_up_after > 0:
        print(f"--give-up-after {args.give_up_after}: give the seconds, above 0", file=sys.stderr)
        return 2
    from ..logs import limit_repeats

    limit_repeats()  # aiokafka's line per failed connect while the broker is away: one per 10 s, counted
    settings = Settings()
    sha256 = imports.digest(path)
    running = imports.Running(settings, sha256)
    try:
        holder = running.take()
    except (rex.RedisError, OSError):
        holder, running = None, None  # said below: Redis does not answer
    if holder is not None:
        print(f"{path} is being imported: since {iso_seconds(holder['at'])} by {holder['actor']} (process "
              f"{holder['pid']}). Wait for it to end; an import that died leaves its claim for at most 2 "
              f"minutes", file=sys.stderr)
        return 2
    try:  # checked under the claim: an import of the same bytes ending just before is on record then
        return _checked_import(args, settings, path, sha256)
    finally:
        if running is not None:
            running.release()


def _checked_import(args, settings, path, sha256: str) -> int:
    import redis.exceptions as rex

    from ..times import iso_seconds
    from . import imports
    from .reading import from_args

    try:
        before = imports.earlier(settings, sha256)
    except (rex.RedisError, OSError) as exc:
        before = None
        print(f"warning: Redis does not answer ({exc}): cannot check whether this file was imported before; "
              f"importing it", file=sys.stderr)
    resumed = before is not None and before.get("next_line") == args.from_line  # the rest of a stopped import
    if before is not None and not args.again and not resumed:
        if before.get("next_line") is not None:
            print(f"{path} was imported up to line {before['next_line'] - 1}: {iso_seconds(before['at'])} by "
                  f"{before['actor']}, {before['accepted']} events, then it stopped. --from-line "
                  f"{before['next_line']} sends the rest (--again sends from --from-line anyway)", file=sys.stderr)
        else:
            print(f"{path} was imported before: {iso_seconds(before['at'])} by {before['actor']}, "
                  f"{before['accepted']} events (file {before['file']}, sha256 {sha256[:12]}...). Sent again, "
                  f"complaints, inspections and records older than each entity's newest would count twice. "
                  f"--again sends it anyway", file=sys.stderr)
        return 2
    try:
        how = from_args(args, path.name)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    return _import(args, settings, path, how, sha256, before, resumed)


def _import(args, settings, path, how, sha256: str, before: dict | None, resumed: bool) -> int:
    import redis.exceptions as rex

    from . import imports
    from .file_import import ImportProgress, import_file

    rejects = open(args.rejects, "w", encoding="utf-8") if args.rejects else None
    done = ImportProgress()
    earlier_ok, earlier_bad = (before["accepted"], before["rejected"]) if resumed else (0, 0)
    stopped: str | None = None
    try:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        asyncio.run(import_file(settings, path, how, rejects, progress, from_line=args.from_line, done=done,
                                give_up_after=args.give_up_after))
    except KeyboardInterrupt:
        stopped = "interrupted"
    except Exception as exc:  # the broker did not take a chunk within --give-up-after (or a bug): say where
        stopped = f"{type(exc).__name__}: {exc}"
    finally:
        if rejects:
            rejects.close()
    ok, bad = earlier_ok + done.accepted, earlier_bad + done.rejected
    if stopped is not None:
        print(f"riskwatch import: stopped at line {done.next_line} ({stopped}). Every line before it is in: "
              f"{ok} events imported, {bad} rejected. Send the rest with the same options and "
              f"--from-line {done.next_line}"
              + (f"; lines {done.next_line}-{done.upto} were being sent and may be partly in (sent again, an "
                 f"entity recognises them among its newest items)" if done.upto else ""), file=sys.stderr)
    else:
        print(f"imported {ok} events, rejected {bad}")
    if ok or stopped is not None:
        try:
            imports.record(settings, sha256, path, ok, bad, before is not None and not resumed,
                           next_line=done.next_line if stopped is not None else None,
                           from_line=before.get("from_line", 1) if resumed else args.from_line)
        except (rex.RedisError, OSError) as exc:
            print(f"warning: Redis does not answer ({exc}): this import is not on record, and a second "
                  f"import of the file will not be refused", file=sys.stderr)
    if stopped is not None:
        return 130 if stopped == "interrupted" else 1
    return 0 if ok or not bad else 2


def add_parsers(sub) -> None:
    from .reading import add_file_arguments

    i = sub.add_parser("ingest", help="HTTP ingest gateway: POST /v1/events (RISKWATCH_INGEST_HOST/PORT)")
    i.set_defaults(func=cmd_ingest)

    q = sub.add_parser("ingest-mqtt", help="MQTT bridge: sensor readings into rw.sensor-readings")
    q.add_argument("--loglevel", default="info")
    q.add_argument("--metrics-port", type=int, default=0)
    q.set_defaults(func=cmd_ingest_mqtt)

    f = sub.add_parser("import", help="backfill a JSON-lines or CSV file into the input topics")
    f.add_argument("file")
    f.add_argument("--topic-from-type", action="store_true", default=True,
                   help="each event to the topic of its type (the only mode; accepted for clarity)")
    add_file_arguments(f)
    f.add_argument("--rejects", default=None, help="write rejected lines and their errors here (JSON lines)")
    f.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    f.add_argument("--again", action="store_true",
                   help="import a file whose exact bytes were imported before (refused otherwise)")
    f.add_argument("--from-line", type=int, default=1, metavar="N",
                   help="send from line N on: the rest of an import that stopped there (it says N)")
    f.add_argument("--give-up-after", type=float, default=120.0, metavar="S",
                   help="seconds a chunk of lines may wait for the broker, tries again included, before the "
                        "import stops and says the line to go on from (default 120)")
    f.set_defaults(func=cmd_import)

