"""``riskwatch import FILE``: backfill a JSON-lines or CSV file into the input topics.

Each event goes to the topic of its ``type`` (``--topic-from-type``, the only
mode), in batch envelopes per partition, acks=all. CSV rows become events
through a column mapping (``--map field=column``; dotted fields build nested
objects, e.g. ``violations.critical=crit``) and ``--type`` (or a ``type``
column). Invalid lines are reported by line number (and written to
``--rejects FILE`` as JSON lines with their errors and the event as read, or the
line's text when it is not JSON: ``jq -c .event`` gives a file to fix and import);
a progress bar shows on a terminal.

Exports from other systems rarely carry ISO-8601 times with an offset (the
CFPB's ``8/30/2013``, NYC 311's ``05/01/2022 12:00:03 AM``): ``--ts-format``
(a ``strptime`` format) reads the time fields of CSV rows (``ts``,
``expires_at``) and ``--tz`` (an IANA zone or a fixed offset) places those
without an offset; ``--set field=value`` gives every row a constant (say
``kind=routine``). A cell that does not match is rejected naming its field.

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
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import re
import sys
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ..errors import FieldError
from ..settings import Settings
from .plan import group, validate
from .producer import IngestProducer

__all__ = ["FileReading", "TimeReader", "import_file", "parse_zone", "row_to_event", "text_of"]

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
    :func:`riskwatch.ingest.csv_args.reading`."""

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


async def import_file(settings: Settings, path: Path, reading: FileReading, rejects: IO[str] | None,
                      progress: bool, chunk: int = 5000) -> tuple[int, int]:
    """(accepted, rejected). Sends ``chunk`` lines at a time and waits for the broker's acks."""
    from ..config import applied_config

    scheme = applied_config(settings).entity_id_scheme
    producer = IngestProducer(settings, max_inflight=chunk * 2, timeout=30.0, cooldown=0.0)
    accepted = rejected = 0
    size = path.stat().st_size
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, desc=f"import {path.name}")
    raw = path.open("rb")
    f = text_of(raw)
    try:
        buf = []
        last = 0

        async def flush():
            nonlocal accepted, rejected
            ok, bad = validate(buf, scheme, settings.max_event_future_s)
            raws = {i: raw for i, raw, _err in buf}
            if reading.fmt == "csv":  # CSV cells are strings: send the validated, typed event
                ok = [(i, ev, ev.model_dump(mode="json", exclude_unset=True)) for i, ev, _raw in ok]
            for i, errs in bad:
                rejected += 1
                msg = "; ".join(f"{e['field']}: {e['message']} [{e['rule']}]" for e in errs)
                print(f"line {i}: {msg}", file=sys.stderr)
                if rejects is not None:  # with what was refused, to fix and import again (until 2026-12-05
                    # the line number and errors only: the rejected lines had to be dug out of the file)
                    raw = raws.get(i)
                    entry = {"line": i, "errors": errs, **({"text": raw} if isinstance(raw, str) else {"event": raw})}
                    rejects.write(orjson.dumps(entry).decode() + "\n")
            for attempt in range(5):
                try:
                    await producer.send(group(ok, settings.partitions), len(ok))
                    break
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(2 ** attempt)
            accepted += len(ok)
            buf.clear()

        for item in reading.items(f):
            buf.append(item)
            if len(buf) >= chunk:
                await flush()
                if bar is not None:
                    pos = raw.tell()
                    bar.update(pos - last)
                    last = pos
        if buf:
            await flush()
        if bar is not None:
            bar.update(size - last)
            bar.close()
    finally:
        f.close()
        await producer.close()
    return accepted, rejected
