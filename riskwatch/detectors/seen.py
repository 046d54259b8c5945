"""Ids a detector no longer keeps whole, remembered as fingerprints: an event sent again is recognised.

A detector keeps its newest few items whole (complaints and records for objections and
reasons, an inspection's last id). Until 2026-12-05 an item that had fallen out of them was
counted again when a producer sent it again (a file imported twice, a batch re-sent without
an idempotency key, a dead-letter replay run twice), and each such item, arriving late, took
the place of a newer one, so a history re-sent in order was counted again whole (an entity's
12 inspections imported twice counted 23).

A fingerprint is 6 bytes: the hour of the item's event time (24 bits, from 1970) and 24
bits of the CRC-32 of its id; an event sent again has the same id and the same time. The
newest ``keep`` by event time are held, newest first, as 8 base64 characters each (``keep``
16: 128 characters). An item older than all of them when they are full is not held: it is
not recognised when it comes again (counted again, at its decayed weight), and it does not
push a newer one out, so re-sending a long history costs only its oldest part.

>>> s = remember("", "c1", 3600.0 * 10, keep=2)
>>> s = remember(s, "c2", 3600.0 * 12, keep=2)
>>> remembers(s, "c1", 3600.0 * 10), remembers(s, "c1", 3600.0 * 11), remembers(s, "c3", 3600.0 * 12)
(True, False, False)
>>> s = remember(s, "c0", 3600.0 * 5, keep=2)  # older than both, and they are full: not held
>>> remembers(s, "c0", 3600.0 * 5), remembers(s, "c1", 3600.0 * 10)
(False, True)
>>> len(remember(s, "c3", 3600.0 * 20, keep=2))  # the newest two, 8 characters each
16
"""

from __future__ import annotations

import binascii
import zlib

__all__ = ["remember", "remembers"]

_HOURS = (1 << 24) - 1
_SIZE = 6


def _fingerprint(item_id: str, ts: float) -> bytes:
    hour = int(ts // 3600.0)
    hour = 0 if hour < 0 else (_HOURS if hour > _HOURS else hour)
    return ((hour << 24) | (zlib.crc32(item_id.encode()) & 0xFFFFFF)).to_bytes(_SIZE, "big")


def _held(packed: str) -> list[bytes]:
    raw = binascii.a2b_base64(packed)
    return [raw[i:i + _SIZE] for i in range(0, len(raw), _SIZE)]


def remembers(packed: str | None, item_id: str, ts: float) -> bool:
    """Whether ``packed`` holds the fingerprint of ``item_id`` at event time ``ts``."""
    return bool(packed) and _fingerprint(item_id, ts) in _held(packed)


def remember(packed: str | None, item_id: str, ts: float, keep: int) -> str:
    """``packed`` with ``item_id`` at ``ts`` added; the newest ``keep`` by event time stay."""
    fp = _fingerprint(item_id, ts)
    held = _held(packed) if packed else []
    if fp in held or keep <= 0 or (len(held) >= keep and fp < held[-1]):
        return packed or ""
    i = 0
    while i < len(held) and held[i] > fp:  # newest first
        i += 1
    held.insert(i, fp)
    del held[keep:]
    return binascii.b2a_base64(b"".join(held), newline=False).decode()
