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
    from .file_import import import_file
    from .reading import from_args

    path = Path(args.file)
    if not path.is_file():
        print(f"cannot read {path}", file=sys.stderr)
        return 2
    settings = Settings()
    sha256 = imports.digest(path)
    try:
        before = imports.earlier(settings, sha256)
    except (rex.RedisError, OSError) as exc:
        before = None
        print(f"warning: Redis does not answer ({exc}): cannot check whether this file was imported before; "
              f"importing it", file=sys.stderr)
    if before is not None and not args.again:
        print(f"{path} was imported before: {iso_seconds(before['at'])} by {before['actor']}, {before['accepted']} "
              f"events (file {before['file']}, sha256 {sha256[:12]}...). Sent again, complaints, inspections "
              f"and records older than each entity's newest would count twice. --again sends it anyway",
              file=sys.stderr)
        return 2
    try:
        how = from_args(args, path.name)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    rejects = open(args.rejects, "w", encoding="utf-8") if args.rejects else None
    try:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        ok, bad = asyncio.run(import_file(settings, path, how, rejects, progress))
    finally:
        if rejects:
            rejects.close()
    print(f"imported {ok} events, rejected {bad}")
    if ok:
        try:
            imports.record(settings, sha256, path, ok, bad, before is not None)
        except (rex.RedisError, OSError) as exc:
            print(f"warning: Redis does not answer ({exc}): this import is not on record, and a second "
                  f"import of the file will not be refused", file=sys.stderr)
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
    f.set_defaults(func=cmd_import)

