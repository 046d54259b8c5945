"""Command-line verbs for alerts: the dispatcher, dead letters, redelivery, silences, config check."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import orjson

from ..times import iso_seconds
from .lifecycle import escalation_level

__all__ = ["add_parsers", "alert_lines"]


def _settings():
    from ..settings import Settings

    return Settings()


async def _with_redis(fn):
    import redis.asyncio as aioredis

    r = aioredis.from_url(_settings().redis_url)
    try:
        return await fn(r)
    finally:
        await r.aclose()


def cmd_dispatcher(args) -> int:
    from ..errors import ConfigError
    from .config import load_alerts_config
    from .dispatcher import run_dispatcher

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too much
    from ..logs import limit_repeats

    limit_repeats()  # the Kafka consumer's errors while the broker is away
    s = _settings()
    try:
        cfg = load_alerts_config(s.alerts_path)
    except ConfigError as exc:
        print("alerts config is invalid:\n  " + "\n  ".join(str(e) for e in exc.errors), file=sys.stderr)
        return 2
    for u in unknown_signals(cfg):  # not fatal: the engine config may change at run time
        logging.getLogger("riskwatch.dispatcher").warning("%s", u)
    from ..aio import use_event_loop

    use_event_loop(s.event_loop)
    asyncio.run(run_dispatcher(s, args.role, cfg))
    return 0


def cmd_check_alerts(args) -> int:
    from ..errors import ConfigError
    from .config import load_alerts_config

    try:
        cfg = load_alerts_config(args.path)
    except ConfigError as exc:
        print(f"alerts config {args.path or '(default)'} is invalid:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return 2
    unknown = unknown_signals(cfg)
    if unknown:
        print(f"alerts config {args.path or '(default)'} is invalid:", file=sys.stderr)
        for u in unknown:
            print(f"  {u}", file=sys.stderr)
        return 2
    print(f"ok: version {cfg.version}, rules {', '.join(r.name for r in cfg.rules)}, "
          f"receivers {', '.join(r.name for r in cfg.receivers) or '(none)'}")
    return 0


def unknown_signals(cfg) -> list[str]:
    """Rules that name signals the engine (its config in force at RISKWATCH_CONFIG_PATH) never raises."""
    from ..config import load_config
    from ..engine import Engine

    known = {"tier"} | set(Engine(load_config(_settings().config_path)).scorer.alerts)
    return [f"rules.{i}.signals: {sig!r} is not an alerting engine signal (known: {', '.join(sorted(known))})"
            for i, r in enumerate(cfg.rules) for sig in r.signals if sig not in known]


def cmd_dead(args) -> int:
    from .outbox import Outbox

    recs = asyncio.run(_with_redis(lambda r: Outbox(r, "cli").dead()))
    for rec in recs:
        n = rec["notification"]
        print(f"{n['id']}  {n['receiver']:<16} {n['kind']:<12} attempts={rec['attempts']:<3} {rec['error']}")
    print(f"{len(recs)} dead-lettered notification(s)", file=sys.stderr)
    return 0


def cmd_redeliver(args) -> int:
    from .outbox import Outbox

    if not args.id and not args.all:
        print("give a notification id or --all", file=sys.stderr)
        return 2
    n = asyncio.run(_with_redis(lambda r: Outbox(r, "cli").redeliver(None if args.all else args.id)))
    if not n and args.id:
        print(f"no dead-lettered notification {args.id} (riskwatch alerts dead lists them)", file=sys.stderr)
        return 1
    print(f"re-queued {n} notification(s)")
    return 0 if n else 1


def parse_matcher(text: str) -> dict | None:
    """``--match`` as a matcher: the label name, then the first operator (``=``, ``!=``, ``=~``, ``!~``),
    then the value, which may hold operators itself. None when there is no operator or no name.
    Until 2026-12-07 the operators were tried in turn, so ``summary=a=~b`` became ``summary=a`` ``=~ b``.

    >>> parse_matcher("summary=a=~b"), parse_matcher("region!~^11")
    ({'name': 'summary', 'op': '=', 'value': 'a=~b'}, {'name': 'region', 'op': '!~', 'value': '^11'})
    >>> parse_matcher("region"), parse_matcher("=1101"), parse_matcher("region!1101")
    (None, None, None)
    """
    at = min((i for i in (text.find("="), text.find("!")) if i >= 0), default=-1)
    if at <= 0:
        return None
    op = text[at:at + 2] if text[at:at + 2] in ("!=", "=~", "!~") else text[at]
    if op == "!":
        return None
    return {"name": text[:at], "op": op, "value": text[at + len(op):]}


def cmd_silence(args) -> int:
    from pydantic import ValidationError

    from ..errors import field_errors_from_pydantic
    from .config import parse_duration
    from .routing import SilenceSpec
    from .store import AlertStore

    matchers = []
    for m in args.match:
        matcher = parse_matcher(m)
        if matcher is None:
            print(f"--match {m!r}: use label=value (or != =~ !~)", file=sys.stderr)
            return 2
        matchers.append(matcher)
    now = time.time()
    try:
        spec = SilenceSpec(matchers=matchers, starts_at=now, ends_at=now + parse_duration(args.duration),
                           author=args.author, reason=args.reason)
    except ValidationError as exc:  # each field and rule, as check-config and the API name them
        print("invalid silence:\n  " + "\n  ".join(map(str, field_errors_from_pydantic(exc))), file=sys.stderr)
        return 2
    except ValueError as exc:  # the duration
        print(f"invalid silence: --for: {exc}", file=sys.stderr)
        return 2
    rec = asyncio.run(_with_redis(lambda r: AlertStore(r).add_silence(spec)))
    from ..times import iso_fields

    print(orjson.dumps(iso_fields(rec)).decode())
    return 0


def alert_lines(alerts: list[dict], limit: int | None = None) -> list[str]:
    """Open alerts as the CLI lists them: newest first (as ``GET /v1/alerts``), with the time each
    started in UTC. Until 2026-12-05 they came in the order of their ids, without a time.

    >>> a = {"id": "a1", "status": "firing", "severity": "critical", "rule": "tier_raised", "entity_id": "E1",
    ...      "count": 2, "starts_at": 0.0, "annotations": {"summary": "Shop raised to tier D"}}
    >>> alert_lines([a, dict(a, id="a2", starts_at=60.0)], limit=1)
    ['a2  1970-01-01T00:01:00Z  firing       critical tier_raised     E1  x2  Shop raised to tier D', '(1 of 2 shown)']
    >>> alert_lines([dict(a, escalated_at=1800.0, escalation=2)])[0]  # nobody acknowledged it (escalate_after)
    'a1  1970-01-01T00:00:00Z  firing       critical tier_raised     E1  x2  Shop raised to tier D  [escalation 2 at 1970-01-01T00:30:00Z]'
    """
    rows = sorted(alerts, key=lambda a: a["starts_at"], reverse=True)
    shown = rows[:limit] if limit else rows
    lines = [f"{a['id']}  {iso_seconds(a['starts_at'])}  {a['status']:<12} {a['severity']:<8} "
             f"{a['rule']:<15} {a['entity_id']}  x{a['count']}  {a['annotations']['summary']}"
             + (f"  [escalation {escalation_level(a)} at {iso_seconds(a['escalated_at'])}]"
                if a.get("escalated_at") else "") for a in shown]
    if len(shown) < len(rows):
        lines.append(f"({len(shown)} of {len(rows)} shown)")
    return lines


def cmd_alerts_list(args) -> int:
    from .store import AlertStore

    async def go(r):
        st = AlertStore(r)
        return list((await st.many(await st.open_ids(region=args.region, severity=args.severity))).values())

    alerts = asyncio.run(_with_redis(go))
    for line in alert_lines(alerts, args.limit):
        print(line)
    print(f"{len(alerts)} open alert(s)", file=sys.stderr)  # as `alerts dead` counts (an empty list said nothing)
    return 0


def add_parsers(sub) -> None:
    d = sub.add_parser("dispatcher", help="alert intake and webhook delivery (RISKWATCH_ALERTS_PATH)")
    d.add_argument("--role", choices=("all", "deliver"), default="all",
                   help="all: delivery, and the intake while this dispatcher holds the intake lease (others "
                        "stand by); deliver: delivery only")
    d.add_argument("--loglevel", default="info")
    d.set_defaults(func=cmd_dispatcher)

    c = sub.add_parser("check-alerts", help="validate an alerts config file; exit 2 when invalid")
    c.add_argument("path", nargs="?", default=None)
    c.set_defaults(func=cmd_check_alerts)

    a = sub.add_parser("alerts", help="inspect alerts, dead letters, redeliver, silence")
    asub = a.add_subparsers(dest="alerts_cmd", required=True)
    ls = asub.add_parser("list", help="open alerts")
    ls.add_argument("--region")
    ls.add_argument("--severity", choices=("info", "warning", "critical"))
    ls.add_argument("--limit", type=int, default=None, help="the newest N only")
    ls.set_defaults(func=cmd_alerts_list)
    asub.add_parser("dead", help="dead-lettered notifications").set_defaults(func=cmd_dead)
    rd = asub.add_parser("redeliver", help="re-queue dead-lettered notifications (same idempotency key)")
    rd.add_argument("id", nargs="?")
    rd.add_argument("--all", action="store_true")
    rd.set_defaults(func=cmd_redeliver)
    si = asub.add_parser("silence", help="mute matching alerts for a while (audited)")
    si.add_argument("--match", action="append", required=True, help="label=value, label!=v, label=~regex")
    si.add_argument("--for", dest="duration", default="2h")
    si.add_argument("--author", required=True)
    si.add_argument("--reason", required=True)
    si.set_defaults(func=cmd_silence)


