"""``riskwatch import FILE``: backfill a JSON-lines or CSV file into the input topics.

Each event goes to the topic of its ``type`` (``--topic-from-type``, the only
mode), in batch envelopes per partition, acks=all. The file is read as
:mod:`riskwatch.ingest.reading` says (CSV: column mapping, constants, time
format and zone). Invalid lines are reported by line number (and written to
``--rejects FILE`` as JSON lines with their errors and the event as read, or the
line's text when it is not JSON: ``jq -c .event`` gives a file to fix and import);
a progress bar shows on a terminal.

An import the broker stops taking (``--give-up-after``, 120 s by default), or that is
interrupted (Ctrl-C), says where it stopped: :class:`ImportProgress` holds the
first line the broker has not acknowledged, and ``riskwatch import FILE
--from-line N`` sends the rest. Until 2026-12-07 it ended with a traceback and
no line: importing the file again sent its first part twice, and an entity
recognises an event sent again only among its newest (``imports.py``).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from ..settings import Settings
from .plan import group, validate
from .producer import IngestProducer
from .reading import FileReading, text_of

__all__ = ["ImportProgress", "import_file"]


@dataclass
class ImportProgress:
    """How far an import got: ``next_line`` is the first line the broker has not acknowledged (every
    line before it is in, or was rejected); ``upto`` the last line of the chunk being sent, if any."""

    next_line: int = 1
    upto: int | None = None
    accepted: int = 0
    rejected: int = 0


async def import_file(settings: Settings, path: Path, reading: FileReading, rejects: IO[str] | None,
                      progress: bool, chunk: int = 5000, from_line: int = 1,
                      done: ImportProgress | None = None, give_up_after: float = 120.0) -> tuple[int, int]:
    """(accepted, rejected). Sends ``chunk`` lines at a time, from line ``from_line``, and waits for the
    broker's acks, trying a chunk again (1, 2, 4, 8 s apart) for up to ``give_up_after`` seconds before it
    raises; ``done`` follows what the broker acknowledged (read it when this raises)."""
    done = done if done is not None else ImportProgress()
    done.next_line = from_line
    from ..config import applied_config

    scheme = applied_config(settings).entity_id_scheme
    producer = IngestProducer(settings, max_inflight=chunk * 2, timeout=min(30.0, give_up_after), cooldown=0.0)
    loop = asyncio.get_running_loop()
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
                msg = "; ".join(f"{e['field']}: {e['message']} [{e['rule']}]" for e in errs)
                print(f"line {i}: {msg}", file=sys.stderr)
                if rejects is not None:  # with what was refused, to fix and import again (until 2026-12-05
                    # the line number and errors only: the rejected lines had to be dug out of the file)
                    raw = raws.get(i)
                    entry = {"line": i, "errors": errs, **({"text": raw} if isinstance(raw, str) else {"event": raw})}
                    rejects.write(orjson.dumps(entry).decode() + "\n")
            deadline, attempt = loop.time() + give_up_after, 0
            while True:  # until 2026-12-07 five attempts of up to 30 s each: 2.5 minutes
                try:
                    await producer.send(group(ok, settings.partitions), len(ok))
                    break
                except Exception:
                    pause = min(2.0 ** attempt, 8.0)
                    if loop.time() + pause >= deadline:
                        raise
                    await asyncio.sleep(pause)
                    attempt += 1
                finally:  # without a connection to the broker nothing of this chunk went out
                    done.upto = buf[-1][0] if producer.started else None
            accepted += len(ok)
            rejected += len(bad)
            done.accepted, done.rejected, done.next_line, done.upto = accepted, rejected, buf[-1][0] + 1, None
            buf.clear()

        for item in reading.items(f):
            if item[0] < from_line:
                continue
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
