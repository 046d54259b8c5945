"""Claim keys in Redis: a value only its holder knows, so a holder that outlived the key's expiry
neither renews nor releases a claim someone took since (the API's :func:`riskwatch.api.context.claim`,
``riskwatch import``'s :class:`riskwatch.ingest.imports.Running`)."""

from __future__ import annotations

__all__ = ["RELEASE", "RENEW"]

# KEYS: the claim; ARGV: the holder's value
RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""
# KEYS: the claim; ARGV: the holder's value, seconds
RENEW = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("EXPIRE", KEYS[1], ARGV[2]) end
return 0
"""
