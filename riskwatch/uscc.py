"""Unified Social Credit Codes (统一社会信用代码, GB 32100-2015).

An USCC has 18 characters from a 31-symbol alphabet (digits and capitals
without I, O, Z, S, V): registration authority (1), entity type (1),
administrative division (6 digits), organisation code (9) and a check
character computed modulo 31 with weights ``3**i mod 31``.

>>> check_character("91350100M000100Y4")
'3'
>>> validate("91350100M000100Y43")
'91350100M000100Y43'
>>> validate("91350100M000100Y44")
Traceback (most recent call last):
...
ValueError: check character is '4', expected '3'
"""

from __future__ import annotations

import random
from functools import lru_cache
from operator import mul

__all__ = ["ALPHABET", "check_character", "validate", "generate"]

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_character(first17: str) -> str:
    """The 18th character for the 17 given ones."""
    total = sum(map(mul, map(_VALUE.__getitem__, first17), _WEIGHTS))
    return ALPHABET[(31 - total % 31) % 31]


@lru_cache(maxsize=1 << 18)  # ids repeat on every event of an entity; failures are not cached
def validate(code: str) -> str:
    """Return ``code`` if it is a well-formed USCC, else raise ``ValueError`` naming the rule."""
    if len(code) != 18:
        raise ValueError(f"must be 18 characters, got {len(code)}")
    bad = [c for c in code if c not in _VALUE]
    if bad:
        raise ValueError(
            f"character {bad[0]!r} is not allowed (digits and capitals except I, O, Z, S, V)"
        )
    if not code[2:8].isdigit():
        raise ValueError("characters 3-8 must be the 6-digit administrative division code")
    expected = check_character(code[:17])
    if code[17] != expected:
        raise ValueError(f"check character is {code[17]!r}, expected {expected!r}")
    return code


def generate(rng: random.Random, region: str = "110105", authority: str = "91") -> str:
    """A random, valid USCC in ``region`` (for simulators and tests).

    >>> import random
    >>> validate(generate(random.Random(1))) == generate(random.Random(1))
    True
    """
    body = "".join(rng.choice(ALPHABET) for _ in range(9))
    first17 = authority + region + body
    return first17 + check_character(first17)
