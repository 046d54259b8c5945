"""Deliver outbox notifications over HTTP: signed, retried with backoff, dead-lettered.

Retry policy (:func:`classify`, :func:`backoff`): 2xx is done; 5xx, 408, 429
and connection errors / timeouts are retried with exponential backoff and full
jitter (``Retry-After`` honoured, capped at ``backoff_max``); any other 4xx
is not retried and goes straight to the dead-letter list, as does a
notification that ran out of ``max_attempts``.

>>> classify(503, None), classify(429, None), classify(400, None), classify(204, None), classify(None, "timeout")
('retry', 'retry', 'fail', 'ok', 'retry')
>>> import random
>>> rng = random.Random(1)
>>> all(0 <= backoff(a, 1.0, 60.0, None, rng) <= min(60.0, 2 ** (a - 1)) for a in range(1, 12))
True
>>> backoff(1, 1.0, 60.0, 7.0, rng), backoff(1, 1.0, 60.0, 600.0, rng)
(7.0, 60.0)
>>> parse_retry_after("3"), parse_retry_after("garbage")
(3.0, None)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from email.utils import parsedate_to_datetime

import httpx
import orjson

from ..aio import keep_running
from .config import AlertsConfig, Receiver
from .lifecycle import iso
from .metrics import AlertMetrics
from .outbox import Outbox
from .safety import check_url, unresolved
from .signing import HEADER, sign

__all__ = ["Deliverer", "classify", "backoff", "parse_retry_after"]

log = logging.getLogger("riskwatch.delivery")


REFUSED = "refused: "  # a URL the safety check refused at delivery time: not sent, not retried


def classify(status: int | None, error: str | None) -> str:
    """``ok``, ``retry`` or ``fail`` for a delivery's HTTP status, or its error when no response came.

    >>> classify(None, "timeout"), classify(None, "refused: 10.0.0.5 is not a public address"), classify(503, None)
    ('retry', 'fail', 'retry')
    """
    if status is None:
        return "retry" if error and not error.startswith(REFUSED) else "fail"
    if 200 <= status < 300:
        return "ok"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "fail"


def backoff(attempt: int, base: float, cap: float, retry_after: float | None, rng: random.Random) -> float:
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Deliverer:
    """Reads the outbox and posts; one task per notification, bounded per receiver."""

    def __init__(self, outbox: Outbox, config: AlertsConfig, metrics: AlertMetrics, seed: int | None = None) -> None:
        self.outbox = outbox
        self.config = config
        self.m = metrics
        self.rng = random.Random(seed)
        self.clients: dict = {}  # by the receiver's TLS context (None: httpx's default verification)
        self.sem: dict[str, asyncio.Semaphore] = {}
        self.inflight: dict[str, asyncio.Task] = {}
        # bounded: every in-flight notification holds a Redis connection now and then
        self.max_inflight = sum(r.concurrency for r in config.receivers) * 4 or 16
        self.stopping = asyncio.Event()

    def _sem(self, r: Receiver) -> asyncio.Semaphore:
        key = f"{r.name}/{r.concurrency}"  # a reloaded config may change a receiver's concurrency
        if key not in self.sem:
            self.sem[key] = asyncio.Semaphore(r.concurrency)
        return self.sem[key]

    async def run(self) -> None:
        """Deliver until stopped. Redis away (a restart, a failover) is waited out with backoff, and a
        Redis restarted without its data gets the outbox's consumer group again (``NOGROUP``): until
        2026-12-07 the first error ended the deliverer, and the dispatcher with it."""
        import redis.exceptions as rex

        def transient(exc: BaseException) -> bool:
            return (isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError))
                    or isinstance(exc, rex.ResponseError) and "NOGROUP" in str(exc))

        await keep_running(self._run, "deliverer: reading the outbox", transient, first=0.5, cap=5.0,
                           stopped=self.stopping.is_set, logger=log)

    async def _run(self) -> None:
        await self.outbox.ensure_group()
        last_claim = 0.0
        while not self.stopping.is_set():
            room = self.max_inflight - len(self.inflight)
            if room <= 0:
                await asyncio.sleep(0.01)
                continue
            if time.monotonic() - last_claim > max(1.0, self.outbox.claim_idle_ms / 3000):
                # ours left pending (a restart under the same name, a failed task), then a dead deliverer's
                last_claim = time.monotonic()
                self._spawn(await self.outbox.read(count=room, pending=True))
                self._spawn(await self.outbox.reclaim(count=max(1, self.max_inflight - len(self.inflight))))
                room = self.max_inflight - len(self.inflight)
                if room <= 0:
                    continue
            self._spawn(await self.outbox.read(count=room, block_ms=500))
            depth, dead = await self.outbox.depth()
            self.m.outbox_depth.set(depth)
            self.m.dead_size.set(dead)

    async def close(self) -> None:
        self.stopping.set()
        for t in list(self.inflight.values()):
            t.cancel()
        await asyncio.gather(*self.inflight.values(), return_exceptions=True)
        for client in self.clients.values():
            await client.aclose()

    def _client(self, r: Receiver) -> httpx.AsyncClient:
        """One client (connection pool) per TLS context: a receiver with its own CA or client certificate
        gets its own; the context is cached per set of files, so a reloaded config reuses it."""
        ctx = r.ssl_context()
        client = self.clients.get(ctx)
        if client is None:
            client = self.clients[ctx] = httpx.AsyncClient(
                follow_redirects=False, headers={"User-Agent": "riskwatch-dispatcher"},
                **({"verify": ctx} if ctx is not None else {}))
        return client

    def _spawn(self, entries) -> None:
        for entry_id, n in entries:
            if entry_id not in self.inflight:
                t = asyncio.create_task(self._deliver(entry_id, n))
                self.inflight[entry_id] = t
                t.add_done_callback(lambda _t, e=entry_id: self.inflight.pop(e, None))

    async def _deliver(self, entry_id: str, n: dict) -> None:
        try:
            await self._attempts(entry_id, n)
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis down or a bug: the entry stays pending and is picked up again
            log.exception("delivering %s failed; it stays in the outbox", n.get("id"))
            await asyncio.sleep(1.0)

    async def _attempts(self, entry_id: str, n: dict) -> None:
        try:
            r = self.config.receiver(n["receiver"])
        except StopIteration:
            await self.outbox.dead_letter(entry_id, n, f"receiver {n['receiver']!r} is not configured", 0)
            self.m.deliveries.labels(n["receiver"], "dead").inc()
            return
        while not self.stopping.is_set():
            attempt = await self.outbox.attempt(entry_id)
            async with self._sem(r):
                status, error, retry_after = await self._post(r, n)
            verdict = classify(status, error)
            what = f"HTTP {status}" if status is not None else error
            if verdict == "ok":
                await self.outbox.done(entry_id)
                self.m.deliveries.labels(r.name, "ok").inc()
                self.m.latency.labels(r.name).observe(max(0.0, time.time() - n["queued_at"]))
                return
            if n.get("resend") and (verdict == "fail" or attempt >= r.max_attempts
                                    or time.time() >= n["queued_at"] + r.alertmanager_resend):
                # a resend of open alerts: the next one (due by now) carries the same, so it is not kept
                log.warning("resend %s to %s dropped: %s after %d attempts", n["id"], r.name, what, attempt)
                await self.outbox.done(entry_id)
                self.m.deliveries.labels(r.name, "dropped").inc()
                return
            if verdict == "fail" or attempt >= r.max_attempts:
                why = f"{what} (not retried)" if verdict == "fail" else f"{what} after {attempt} attempts"
                log.warning("notification %s to %s dead-lettered: %s", n["id"], r.name, why)
                await self.outbox.dead_letter(entry_id, n, why, attempt)
                self.m.deliveries.labels(r.name, "dead").inc()
                return
            self.m.deliveries.labels(r.name, "retry").inc()
            self.m.retries.labels(r.name).inc()
            await self._wait(entry_id, backoff(attempt, r.backoff_base, r.backoff_max, retry_after, self.rng))

    async def _wait(self, entry_id: str, delay: float) -> None:
        """Sleep, touching the entry so no other deliverer reclaims it meanwhile."""
        step = max(0.5, self.outbox.claim_idle_ms / 3000)
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0 and not self.stopping.is_set():
            await asyncio.sleep(min(step, left))
            await self.outbox.touch(entry_id)

    async def _post(self, r: Receiver, n: dict) -> tuple[int | None, str | None, float | None]:
        url = r.alertmanager_url.rstrip("/") + "/api/v2/alerts" if n["kind"] == "alertmanager" else r.url
        problem = check_url(url, self.config.allow_private)
        if problem:  # DNS may have changed since the config was loaded. Until 2026-12-07 this was "HTTP 403"
            # in the dead letter, as if the receiver had answered, and a name that did not resolve for a
            # moment dead-lettered the notification at once: that one is tried again now
            return None, problem if unresolved(problem) else f"{REFUSED}{problem}", None
        body = n["body"].encode() if isinstance(n["body"], str) else orjson.dumps(n["body"])
        if n.get("valid_for"):  # firing Alertmanager alerts: valid for that long from now, however late this is
            ends = iso(time.time() + n["valid_for"])
            body = orjson.dumps([a if "endsAt" in a else dict(a, endsAt=ends) for a in orjson.loads(body)])
        headers = {"Content-Type": "application/json", "Idempotency-Key": n["id"]}
        if n["kind"] == "webhook":
            headers[HEADER] = sign(body, [s.get_secret_value() for s in r.secrets])
        try:
            resp = await self._client(r).post(url, content=body, headers=headers, timeout=r.timeout)
        except httpx.TimeoutException:
            return None, "timeout", None
        except (httpx.TransportError, OSError) as exc:
            # OSError: an ssl.SSLError that httpx lets through, as when a TLS 1.3 receiver refuses the
            # client certificate (the alert comes at the first read after the handshake); until 2026-12-06 it
            # escaped, the delivery task logged a traceback and the entry waited for the next claim, its
            # attempts still counted. The message says why (until then only the class did):
            # "[SSL: CERTIFICATE_VERIFY_FAILED] ...", "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] ..."
            return None, f"connection error: {type(exc).__name__}: {str(exc)[:200]}".rstrip(": "), None
        return resp.status_code, None, parse_retry_after(resp.headers.get("Retry-After"))
