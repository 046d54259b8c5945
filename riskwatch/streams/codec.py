"""Wire formats on Kafka.

A message value is either one event (a JSON object with ``type``) or a
*batch envelope* ``{"batch": [event, ...]}`` holding many events of one
partition: Faust costs ~200 us per message and the engine ~10 us per event,
so producers that can batch should. Output topics carry batch envelopes too.

>>> events, err = decode(b'{"batch": [{"type": "tick"}, {"type": "x"}]}')
>>> len(events), err
(2, None)
>>> decode(b'not json')[1].startswith("json_invalid")
True
"""

from __future__ import annotations

import base64
import time
from functools import lru_cache
from typing import Any

import orjson

from ..errors import FieldError

__all__ = ["decode", "encode_batch", "dead_letter", "partition_for"]


def decode(value: bytes | None) -> tuple[list[Any], str | None]:
    """The raw events in a message (dicts, not yet validated) or an error."""
    if not value:
        return [], "empty: message has no value"
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return [], f"json_invalid: {exc}"
    if isinstance(obj, dict) and "batch" in obj and "type" not in obj:
        batch = obj["batch"]
        if not isinstance(batch, list):
            return [], "batch: must be a list of events"
        return batch, None
    return [obj], None


def encode_batch(events: list[dict]) -> bytes:
    return orjson.dumps({"batch": events})


def dead_letter(original: Any, topic: str, partition: int, offset: int, errors: list[FieldError] | str,
                index: int | None = None) -> bytes:
    """A dead-letter record: the original (bytes or event), where it came from, and why."""
    if isinstance(original, (bytes, bytearray)):
        try:
            orig: dict = {"original": bytes(original).decode("utf-8")}
        except UnicodeDecodeError:
            orig = {"original_b64": base64.b64encode(original).decode()}
    else:
        orig = {"original": orjson.dumps(original).decode()}
    errs = ([{"field": "(message)", "rule": errors.split(":", 1)[0], "message": errors}]
            if isinstance(errors, str) else [e.as_dict() for e in errors])
    return orjson.dumps({**orig, "topic": topic, "partition": partition, "offset": offset, "index": index,
                         "errors": errs, "reason": errs[0]["rule"] if errs else "invalid",
                         "at": time.time()})


@lru_cache(maxsize=1 << 18)  # aiokafka's murmur2 is pure Python (~7 us); keys repeat
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as aiokafka and the Java client compute it."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions
