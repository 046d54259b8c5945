"""``riskwatch import FILE``: backfill a JSON-lines or CSV file into the input topics.

Each event goes to the topic of its ``type`` (``--topic-from-type``, the only
mode), in batch envelopes per partition, acks=all. The file is read as
:mod:`riskwatch.ingest.reading` says (CSV: column mapping, constants, time
format and zone). Invalid lines are reported by line number (and written to
``--rejects FILE`` as JSON lines with their errors and the event as read, or the
line's text when it is not JSON: ``jq -c .event`` gives a file to fix and import);
a progress bar shows on a terminal.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO

import orjson

from ..settings import Settings
from .plan import group, validate
from .producer import IngestProducer
from .reading import FileReading, text_of

__all__ = ["import_file"]


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
