"""One draw per task, period and region: what makes a verifiable draw binding.

The commitment (:mod:`.draw`) proves that a draw's seed was fixed before its result was known. It
proves nothing if ops can commit and execute as many draws as they like for the same checks and keep
the selection they prefer. Until 2026-12-07 they could: two draws for December in one district were
both taken, both executed, each with its own public result. A draw now names its inspection task
(``task``, ``routine`` by default) and is refused (409) while another draw of the same task covers an
overlapping period and region: the same period, a day within a month drawn for (or the month of a day
drawn for), and the same region or the whole jurisdiction (no region) on either side. A committed
draw can be withdrawn before it is executed, with a reason (its seed is then disclosed, so anyone can
see what it would have drawn); an executed draw stands.

A scope is ``task|period|region`` (``*``: no region), kept in ``rw:draws:scopes`` (scope -> draw id).
"""

from __future__ import annotations

__all__ = ["SCOPES", "overlapping", "scope"]

SCOPES = "rw:draws:scopes"


def scope(task: str, period: str, region: str | None) -> str:
    """A draw's scope, as kept.

    >>> scope("routine", "2026-12", None)
    'routine|2026-12|*'
    """
    return f"{task}|{period}|{region or '*'}"


def _overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)  # "2026-12" and "2026-12-15"; "2026-12" and "2026-12"


def overlapping(new: str, held: dict[str, str]) -> list[tuple[str, str]]:
    """The scopes of ``held`` (scope -> draw id) that ``new`` overlaps, with their draws.

    >>> held = {"routine|2026-12|110101": "d1", "food|2026-12|*": "d2", "routine|2027-01-05|*": "d3"}
    >>> overlapping("routine|2026-12|110101", held)
    [('routine|2026-12|110101', 'd1')]
    >>> overlapping("routine|2026-12-20|*", held)      # the whole jurisdiction covers the district
    [('routine|2026-12|110101', 'd1')]
    >>> overlapping("routine|2026-12|110102", held)    # another district, another task
    []
    >>> overlapping("food|2026-12-01|310104", held)
    [('food|2026-12|*', 'd2')]
    >>> overlapping("routine|2027-01|*", held), overlapping("routine|2027-01-06|*", held)
    ([('routine|2027-01-05|*', 'd3')], [])
    """
    task, period, region = new.split("|")
    out = []
    for s, did in sorted(held.items()):
        t, p, r = s.split("|")
        if t == task and _overlap(p, period) and (r == region or "*" in (r, region)):
            out.append((s, did))
    return out
