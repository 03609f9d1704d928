"""Where a verified callback waits for its handler: in memory, or in a Redis stream.

The receiver acknowledges WeCom once :meth:`CallbackQueue.put` returns, so the queue
is what makes a callback durable. ``put`` also deduplicates: WeCom retries a
callback it thinks failed, and the retry must not be handled twice.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Protocol, runtime_checkable

import attrs

from ..errors import WeComInputError, WeComStoreError
from ._events import CallbackEvent

__all__ = ["CallbackQueue", "Delivery", "MemoryQueue"]


@attrs.frozen
class Delivery:
    """One callback handed to a worker.

    Attributes:
        event: the typed event, as the receiver decoded it (not parsed again).
        id: the queue's id for it (the stream entry id in Redis).
        attempt: 1 on first delivery, more when redelivered.
    """

    event: CallbackEvent
    id: str = ""
    attempt: int = 1

    @property
    def payload(self) -> str:
        """The decrypted XML the event was parsed from."""
        return self.event.xml


@runtime_checkable
class CallbackQueue(Protocol):
    """What :class:`CallbackReceiver` needs from a queue.

    ``redelivers`` says whether a callback whose handler failed (or whose worker
    died) is delivered again; ``touch_interval`` (seconds, or None) how often a
    running handler must call :meth:`touch` to keep its callback from being
    redelivered elsewhere (None: the queue renews its own). A queue should
    remember a key at least twice the crypto's ``max_age``; one with a
    ``dedup_ttl`` attribute is checked for it.
    """

    redelivers: bool
    touch_interval: float | None

    # A queue may also offer ``put_nowait(key, event) -> bool``, a put that never
    # waits; the receiver then calls it without setting a deadline.

    async def put(self, key: str, event: CallbackEvent) -> bool:
        """Queue ``event`` unless ``key`` was queued before; False for a duplicate.

        Returning means the event is as durable as the queue makes it: the
        receiver answers 200 then. Raises :class:`~wecom_async.WeComStoreError`
        when it cannot queue (full, or the store is down): WeCom should then retry.
        A put whose outcome was not learnt (a time-out) may be repeated with the
        same key; it must then count once.
        """
        ...

    async def get(self) -> Delivery | None:
        """The next callback, or None when none came within the queue's poll time."""
        ...

    async def ack(self, delivery: Delivery) -> None:
        """The handler succeeded: forget the callback."""
        ...

    async def nack(self, delivery: Delivery) -> None:
        """The handler failed: keep the callback for redelivery, where supported."""
        ...

    async def touch(self, delivery: Delivery) -> None:
        """The handler is still running: do not redeliver the callback yet."""
        ...

    async def join(self) -> None:
        """Wait until every queued callback was handled (where the queue can tell)."""
        ...


class _SeenKeys:
    """Dedup keys remembered for ``ttl`` seconds, at most ``size`` of them."""

    def __init__(self, ttl: float, size: int) -> None:
        self._ttl = ttl
        self._size = size
        self._expiry: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, key: str) -> bool:
        now = time.monotonic()
        while self._expiry and (
            len(self._expiry) >= self._size or next(iter(self._expiry.values())) <= now
        ):
            self._expiry.popitem(last=False)
        if key in self._expiry:
            return False
        self._expiry[key] = now + self._ttl
        return True

    def discard(self, key: str) -> None:
        self._expiry.pop(key, None)


class MemoryQueue:
    """An in-process queue (the default): fast, and lost with the process.

    A callback whose handler raises is logged with the event and not retried.

    Args:
        maxsize: callbacks waiting at most; past it ``put`` refuses (WeCom retries).
        dedup_ttl: seconds a callback's key is remembered, to drop WeCom's retries.
        dedup_size: keys remembered at most.
    """

    redelivers = False
    touch_interval: float | None = None

    def __init__(
        self, *, maxsize: int = 10_000, dedup_ttl: float = 3600.0, dedup_size: int = 100_000
    ) -> None:
        if maxsize < 1 or dedup_ttl <= 0 or dedup_size < 1:
            raise WeComInputError("maxsize, dedup_ttl and dedup_size must be positive")
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize)
        self.dedup_ttl = dedup_ttl
        self._seen = _SeenKeys(dedup_ttl, dedup_size)

    def __repr__(self) -> str:
        return f"<MemoryQueue waiting={self._queue.qsize()}>"

    async def put(self, key: str, event: CallbackEvent) -> bool:
        """Queue ``event`` unless ``key`` was queued before; False for a duplicate."""
        return self.put_nowait(key, event)

    def put_nowait(self, key: str, event: CallbackEvent) -> bool:
        """:meth:`put`, which never waits (the receiver calls this one, with no deadline).

        Raises:
            WeComStoreError: the queue is full.
        """
        if not self._seen.add(key):
            return False
        try:
            self._queue.put_nowait(Delivery(event))
        except asyncio.QueueFull:
            self._seen.discard(key)  # not queued: WeCom's retry must get in
            raise WeComStoreError("the callback queue is full") from None
        return True

    async def get(self) -> Delivery:
        """The next callback to handle (waits for one)."""
        return await self._queue.get()

    async def ack(self, delivery: Delivery) -> None:
        """The handler succeeded: forget the callback."""
        self._queue.task_done()

    async def nack(self, delivery: Delivery) -> None:
        """The handler failed: it is logged and dropped (no redelivery in memory)."""
        self._queue.task_done()

    async def touch(self, delivery: Delivery) -> None:
        """The handler is still running (nothing to renew in memory)."""
        pass

    async def join(self) -> None:
        """Wait until every queued callback was handled."""
        await self._queue.join()
