"""``riskwatch import FILE``: backfill a JSON-lines or CSV file into the input topics.

Each event goes to the topic of its ``type`` (``--topic-from-type``, the only
mode), in batch envelopes per partition, acks=all. CSV rows become events
through a column mapping (``--map field=column``; dotted fields build nested
objects, e.g. ``violations.critical=crit``) and ``--type`` (or a ``type``
column). Invalid lines are reported by line number (and written to
``--rejects FILE`` as JSON lines with their errors and the event as read, or the
line's text when it is not JSON: ``jq -c .event`` gives a file to fix and import);
a progress bar shows on a terminal.

>>> row_to_event({"id": "c9", "biz": "E1", "when": "2026-01-01T00:00:00+00:00", "cat": "food", "sev": ""},
...              {"complaint_id": "id", "entity_id": "biz", "ts": "when", "category": "cat", "severity": "sev"},
...              "complaint")
{'type': 'complaint', 'complaint_id': 'c9', 'entity_id': 'E1', 'ts': '2026-01-01T00:00:00+00:00', 'category': 'food'}
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from pathlib import Path
from typing import IO, Iterator

import orjson

from ..settings import Settings
from .plan import group, validate
from .producer import IngestProducer

__all__ = ["row_to_event", "import_file"]


def row_to_event(row: dict, mapping: dict[str, str], etype: str | None) -> dict:
    """A CSV row as an event: ``mapping`` is field -> column; empty cells are left out."""
    ev: dict = {"type": etype or row.get("type")}
    for field, col in (mapping or {k: k for k in row if k != "type"}).items():
        v = row.get(col)
        if v is None or v == "":
            continue
        node = ev
        *parents, leaf = field.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return ev


def _items(f: IO[str], fmt: str, mapping: dict[str, str], etype: str | None) -> Iterator[tuple[int, object, str | None]]:
    if fmt == "csv":
        for i, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
            yield i, row_to_event(row, mapping, etype), None
        return
    for i, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            yield i, orjson.loads(line), None
        except orjson.JSONDecodeError as exc:
            yield i, line.rstrip("\r\n"), f"line is not valid JSON: {exc}"  # the text, for --rejects


async def import_file(settings: Settings, path: Path, fmt: str, mapping: dict[str, str], etype: str | None,
                      rejects: IO[str] | None, progress: bool, chunk: int = 5000) -> tuple[int, int]:
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
    f = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    try:
        buf = []
        last = 0

        async def flush():
            nonlocal accepted, rejected
            ok, bad = validate(buf, scheme, settings.max_event_future_s)
            raws = {i: raw for i, raw, _err in buf}
            if fmt == "csv":  # CSV cells are strings: send the validated, typed event
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

        for item in _items(f, fmt, mapping, etype):
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
