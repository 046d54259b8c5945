"""How a file's lines become events, for ``riskwatch import`` and ``riskwatch replay``: JSON lines, or
CSV rows through a column mapping (``--map field=column``; dotted fields build nested objects, e.g.
``violations.critical=crit``) and ``--type`` (or a ``type`` column), and the command-line options that
say so (:func:`add_file_arguments`, :func:`from_args`).

Exports from other systems rarely carry ISO-8601 times with an offset (the
CFPB's ``8/30/2013``, NYC 311's ``05/01/2022 12:00:03 AM``): ``--ts-format``
(a ``strptime`` format) reads the time fields of CSV rows (``ts``,
``expires_at``) and ``--tz`` (an IANA zone or a fixed offset) places those
without an offset; ``--set field=value`` gives every row a constant (say
``kind=routine``). A cell that does not match is rejected naming its field.

No broker, Redis or settings here: ``replay`` reads files without them.

>>> row_to_event({"id": "c9", "biz": "E1", "when": "2026-01-01T00:00:00+00:00", "cat": "food", "sev": ""},
...              {"complaint_id": "id", "entity_id": "biz", "ts": "when", "category": "cat", "severity": "sev"},
...              "complaint")
{'type': 'complaint', 'complaint_id': 'c9', 'entity_id': 'E1', 'ts': '2026-01-01T00:00:00+00:00', 'category': 'food'}
>>> ny = TimeReader("%m/%d/%Y %I:%M:%S %p", parse_zone("America/New_York"))
>>> ev = {"ts": "05/01/2022 12:00:03 AM", "expires_at": "1/15/2023 1:30:00 PM"}
>>> ny.convert(ev), ev
([], {'ts': '2022-05-01T00:00:03-04:00', 'expires_at': '2023-01-15T13:30:00-05:00'})
>>> [str(e) for e in ny.convert({"ts": "2022-05-01"})]
["ts: '2022-05-01' does not match --ts-format '%m/%d/%Y %I:%M:%S %p' [time_format]"]
>>> [str(e) for e in TimeReader("%m/%d/%Y", None).convert({"ts": "8/30/2013"})]
["ts: '8/30/2013' has no UTC offset: give its zone with --tz [time_zone]"]
>>> import argparse
>>> p = argparse.ArgumentParser(); add_file_arguments(p)
>>> r = from_args(p.parse_args(["--type", "complaint", "--map", "entity_id=biz", "--tz", "+08:00"]), "x.csv")
>>> r.fmt, r.mapping, r.etype, str(r.times.zone)
('csv', {'entity_id': 'biz'}, 'complaint', 'UTC+08:00')
>>> from_args(p.parse_args(["--map", "entity_id"]), "x.csv")
Traceback (most recent call last):
...
ValueError: --map 'entity_id': use field=column
>>> from_args(p.parse_args(["--tz", "+08:00"]), "x.jsonl")
Traceback (most recent call last):
...
ValueError: --map, --type, --ts-format, --tz, --set and --columns apply to CSV files (JSON lines carry ISO-8601 times and every field)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import IO, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ..errors import FieldError

__all__ = ["FileReading", "TimeReader", "add_file_arguments", "from_args", "parse_zone", "row_to_event", "text_of"]

TIME_FIELDS = ("ts", "expires_at")
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_zone(text: str) -> tzinfo:
    """``--tz``: an IANA zone (``Asia/Shanghai``, DST rules and all), ``UTC``/``Z`` or a fixed offset
    (``+08:00``). ValueError naming what is wrong."""
    if text in ("UTC", "Z"):
        return timezone.utc
    m = _OFFSET.match(text)
    if m:
        h, mi = int(m[2]), int(m[3])
        if h > 23 or mi > 59:
            raise ValueError(f"--tz {text!r}: an offset is +HH:MM, at most +23:59")
        return timezone((-1 if m[1] == "-" else 1) * timedelta(hours=h, minutes=mi))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"--tz {text!r}: not a time zone (an IANA name such as Asia/Shanghai, or +08:00)") from exc


class TimeReader:
    """Rewrites the time fields of an event read from CSV as ISO-8601 with an offset: parsed with
    ``fmt`` (``strptime``; None: ISO-8601), placed in ``zone`` when they carry no offset."""

    def __init__(self, fmt: str | None, zone: tzinfo | None) -> None:
        self.fmt = fmt
        self.zone = zone

    def convert(self, ev: dict) -> list[FieldError]:
        errors = []
        for field in TIME_FIELDS:
            v = ev.get(field)
            if not isinstance(v, str):
                continue
            try:
                t = datetime.strptime(v.strip(), self.fmt) if self.fmt else datetime.fromisoformat(v.strip())
            except ValueError:
                what = f"--ts-format {self.fmt!r}" if self.fmt else "ISO-8601"
                errors.append(FieldError(field, "time_format", f"{v!r} does not match {what}"))
                continue
            if t.tzinfo is None:
                if self.zone is None:
                    errors.append(FieldError(field, "time_zone", f"{v!r} has no UTC offset: give its zone with --tz"))
                    continue
                t = t.replace(tzinfo=self.zone)  # in a DST change's repeated hour: the first (fold 0)
            ev[field] = t.isoformat()
        return errors


def row_to_event(row: dict, mapping: dict[str, str], etype: str | None, constants: dict | None = None) -> dict:
    """A CSV row as an event: ``mapping`` is field -> column; empty cells are left out; ``constants``
    (field -> value, dotted fields nest) are set on every row."""
    ev: dict = {"type": etype or row.get("type")}
    for field, v in (constants or {}).items():
        _put(ev, field, v)
    for field, col in (mapping or {k: k for k in row if k != "type"}).items():
        v = row.get(col)
        if v is None or v == "":
            continue
        _put(ev, field, v)
    return ev


def _put(ev: dict, field: str, v) -> None:
    node = ev
    *parents, leaf = field.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = v


def text_of(raw: IO[bytes]) -> IO[str]:
    """An import file's text. A byte order mark, which Excel writes at the start of a "CSV UTF-8" file,
    is dropped: read as plain UTF-8 it became part of the first column's name, and a mapping to that
    column found nothing (since 2026-12-06; likewise for a first JSON line)."""
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


@dataclasses.dataclass
class FileReading:
    """How a file's lines become events: ``fmt`` "jsonl" or "csv"; for CSV, ``mapping`` (field -> column;
    empty: the columns are the fields), ``etype`` (every row's type, else a ``type`` column), ``constants``
    (field -> value on every row), ``columns`` (the column names of a file without a header row) and
    ``times`` (see :class:`TimeReader`). Built from the command line by
    :func:`from_args`."""

    fmt: str = "jsonl"
    mapping: dict[str, str] = dataclasses.field(default_factory=dict)
    etype: str | None = None
    constants: dict[str, str] = dataclasses.field(default_factory=dict)
    columns: list[str] | None = None
    times: TimeReader | None = None

    def items(self, f: IO[str]) -> Iterator[tuple[int, object, str | list | None]]:
        """(line number, event or line, errors) of each line of ``f``.

        >>> rows = io.StringIO("E1,Shop,1 Main St\\nE2,Stall,\\n")
        >>> r = FileReading("csv", {"entity_id": "id", "name": "n", "address": "a"}, "entity", columns=["id", "n", "a"])
        >>> [ev for _, ev, _ in r.items(rows)]
        [{'type': 'entity', 'entity_id': 'E1', 'name': 'Shop', 'address': '1 Main St'}, {'type': 'entity', 'entity_id': 'E2', 'name': 'Stall'}]
        """
        if self.fmt == "csv":
            first = 1 if self.columns else 2  # line 1 is the header, unless the columns are given
            for i, row in enumerate(csv.DictReader(f, fieldnames=self.columns), start=first):
                ev = row_to_event(row, self.mapping, self.etype, self.constants)
                errors = self.times.convert(ev) if self.times is not None else []
                yield i, ev, [e.as_dict() for e in errors] or None
            return
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield i, orjson.loads(line), None
            except orjson.JSONDecodeError as exc:
                yield i, line.rstrip("\r\n"), f"line is not valid JSON: {exc}"  # the text, for --rejects


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


def from_args(args: argparse.Namespace, name: str) -> FileReading:
    """The options of :func:`add_file_arguments` for the file ``name`` (its suffix gives the format unless
    ``--format`` does); ValueError naming the option that is wrong."""
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
