"""Produce accepted events to Kafka as batch envelopes, acks=all, with bounded in-flight work.

:meth:`IngestProducer.send` returns only when the broker acknowledged every
envelope; it raises :class:`~riskwatch.errors.Backpressure` (with
``retry_after``) instead of queueing without bound: when more than
``max_inflight`` events are already waiting for the broker, when the broker
did not acknowledge within ``timeout`` seconds, or while it recently failed.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from ..errors import Backpressure
from ..kafka_security import client_options
from ..settings import Settings

__all__ = ["IngestProducer"]


class IngestProducer:
    def __init__(self, settings: Settings, max_inflight: int = 50_000, timeout: float = 5.0,
                 cooldown: float = 2.0) -> None:
        self.s = settings
        self.max_inflight = max_inflight
        self.timeout = timeout
        self.cooldown = cooldown
        self.inflight = 0
        self.failed_at = 0.0
        self._p = None
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        """Whether a connection to the broker was made: before that, nothing can have been sent."""
        return self._p is not None

    async def _producer(self):
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        async with self._lock:
            if self._p is None:
                p = AIOKafkaProducer(**client_options(self.s), acks="all", linger_ms=5,
                                     max_batch_size=1 << 20, max_request_size=8 << 20,
                                     request_timeout_ms=int(self.timeout * 1000))
                try:
                    await asyncio.wait_for(p.start(), self.timeout)
                except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                    await p.stop()
                    self.failed_at = time.monotonic()
                    raise Backpressure(f"broker unavailable: {type(exc).__name__}", self.cooldown,
                                       "broker_unavailable") from exc
                self._p = p
        return self._p

    async def send(self, groups: dict[tuple[str, int], list[list[dict]]], n_events: int) -> None:
        """Send every envelope; return when all are acknowledged (or raise Backpressure)."""
        if not groups:
            return
        if time.monotonic() - self.failed_at < self.cooldown:
            raise Backpressure("broker failed moments ago", self.cooldown, "broker_failed_recently")
        if self.inflight + n_events > self.max_inflight:
            raise Backpressure(f"{self.inflight} events already waiting for the broker", 1.0, "inflight_limit")
        p = await self._producer()
        self.inflight += n_events

        async def all_acked():
            futures = [await p.send(self.s.topic(topic), orjson.dumps({"batch": chunk}), partition=part)
                       for (topic, part), chunks in groups.items() for chunk in chunks]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(all_acked(), self.timeout)
        except Exception as exc:  # timeout or a Kafka error: nothing acknowledged to the client
            self.failed_at = time.monotonic()
            raise Backpressure(f"broker did not acknowledge: {type(exc).__name__}", self.cooldown,
                              "broker_timeout") from exc
        finally:
            self.inflight -= n_events

    async def close(self) -> None:
        if self._p is not None:
            await self._p.stop()
