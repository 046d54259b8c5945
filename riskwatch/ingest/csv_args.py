"""How a file is read into events (:class:`~riskwatch.ingest.file_import.FileReading`), as
``riskwatch import`` and ``riskwatch replay`` take it on the command line: the format (JSON lines or
CSV) and, for CSV, the column mapping, constants, column names and time format.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_file_arguments(p)
>>> r = reading(p.parse_args(["--type", "complaint", "--map", "entity_id=biz", "--tz", "+08:00"]), "x.csv")
>>> r.fmt, r.mapping, r.etype, str(r.times.zone)
('csv', {'entity_id': 'biz'}, 'complaint', 'UTC+08:00')
>>> reading(p.parse_args(["--map", "entity_id"]), "x.csv")
Traceback (most recent call last):
...
ValueError: --map 'entity_id': use field=column
>>> reading(p.parse_args(["--tz", "+08:00"]), "x.jsonl")
Traceback (most recent call last):
...
ValueError: --map, --type, --ts-format, --tz, --set and --columns apply to CSV files (JSON lines carry ISO-8601 times and every field)
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .file_import import FileReading

__all__ = ["add_file_arguments", "reading"]


def add_file_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("jsonl", "csv"), default=None, help="default: from the file suffix")
    p.add_argument("--type", default=None, help="event type of every CSV row (else a 'type' column)")
    p.add_argument("--map", action="append", help="CSV: field=column (dotted fields nest)")
    p.add_argument("--set", action="append", help="CSV: field=value, the same on every row (e.g. kind=routine)")
    p.add_argument("--columns", default=None,
                   help="CSV without a header row: its column names, in order (id,name,address,...)")
    p.add_argument("--ts-format", default=None,
                   help="CSV: strptime format of the time fields (ts, expires_at), e.g. '%%m/%%d/%%Y'; "
                        "default ISO-8601")
    p.add_argument("--tz", default=None,
                   help="CSV: zone of times without a UTC offset (Asia/Shanghai, America/New_York, +08:00); "
                        "without it such times are rejected")


def reading(args: argparse.Namespace, name: str) -> FileReading:
    """The options of :func:`add_file_arguments` for the file ``name`` (its suffix gives the format unless
    ``--format`` does); ValueError naming the option that is wrong. (File reading is imported here, not
    with the parsers: every command builds those.)"""
    from .file_import import FileReading, TimeReader, parse_zone

    fmt = args.format or ("csv" if name.lower().endswith(".csv") else "jsonl")
    r = FileReading(fmt, etype=args.type)
    for m in args.map or []:
        key, sep, col = m.partition("=")
        if not sep or not key or not col:
            raise ValueError(f"--map {m!r}: use field=column")
        r.mapping[key] = col
    for m in args.set or []:
        key, sep, value = m.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {m!r}: use field=value")
        r.constants[key] = value
    if args.columns:
        r.columns = [c.strip() for c in args.columns.split(",")]
        if not all(r.columns) or len(set(r.columns)) != len(r.columns):
            raise ValueError(f"--columns {args.columns!r}: give each column a name, once (name,address,...)")
    if fmt != "csv" and (args.ts_format or args.tz or r.constants or r.columns or r.mapping or args.type):
        raise ValueError("--map, --type, --ts-format, --tz, --set and --columns apply to CSV files (JSON lines "
                         "carry ISO-8601 times and every field)")
    zone = parse_zone(args.tz) if args.tz else None  # ValueError naming the zone
    if args.ts_format or zone:
        r.times = TimeReader(args.ts_format, zone)
    return r
