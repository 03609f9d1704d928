"""Where a verified callback waits for its handler: in memory, or in a Redis stream.

The receiver acknowledges WeCom once :meth:`CallbackQueue.put` returns, so the queue
is what makes a callback durable. ``put`` also deduplicates: WeCom retries a
callback it thinks failed, and the retry must not be handled twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ..errors import WeComInputError, WeComStoreError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["CallbackQueue", "Delivery", "MemoryQueue", "RedisStreamQueue"]

logger = logging.getLogger("wecom_async")


@attrs.frozen
class Delivery:
    """One callback handed to a worker.

    Attributes:
        payload: the decrypted XML.
        id: the queue's id for it (the stream entry id in Redis).
        attempt: 1 on first delivery, more when redelivered.
    """

    payload: str = attrs.field(repr=False)
    id: str = ""
    attempt: int = 1


@runtime_checkable
class CallbackQueue(Protocol):
    """What :class:`CallbackReceiver` needs from a queue.

    ``redelivers`` says whether a callback whose handler failed (or whose worker
    died) is delivered again; ``touch_interval`` (seconds, or None) how often a
    running handler must call :meth:`touch` to keep its callback from being
    redelivered elsewhere.
    """

    redelivers: bool
    touch_interval: float | None

    async def put(self, key: str, payload: str) -> bool:
        """Queue ``payload`` unless ``key`` was queued before; False for a duplicate.

        Raises :class:`~wecom_async.WeComStoreError` when it cannot queue (full,
        or the store is down): WeCom should then retry.
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
        self._seen = _SeenKeys(dedup_ttl, dedup_size)

    def __repr__(self) -> str:
        return f"<MemoryQueue waiting={self._queue.qsize()}>"

    async def put(self, key: str, payload: str) -> bool:
        """Queue ``payload`` unless ``key`` was queued before; False for a duplicate."""
        if not self._seen.add(key):
            return False
        try:
            self._queue.put_nowait(Delivery(payload))
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


# Remember the key and add the entry in one step: a process that died between the
# two would otherwise leave a key that turns WeCom's retries away, and no entry.
_PUT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], '*', 'key', ARGV[3], 'xml', ARGV[1])
  return 1
end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(fields: Any, name: str) -> str:
    """A stream entry's field, whether the client decodes responses or not."""
    raw = name.encode()
    return _text(fields[raw] if raw in fields else fields[name])


class RedisStreamQueue:
    """A Redis stream shared by many workers (the ``[redis]`` extra).

    Every worker process behind the callback URL uses the same ``stream`` and
    ``group``, each with its own ``consumer`` name. A callback is added to the
    stream (once: the dedup key is set in the same script), read by one consumer
    of the group, and acknowledged (and deleted) only after its handler
    succeeded. A callback whose handler failed, or whose worker died, stays
    pending; once it has been idle ``claim_idle`` seconds any worker claims it
    (``XAUTOCLAIM``) and handles it again. While a handler runs, its worker
    renews the claim every ``claim_idle / 3`` seconds, so a slow handler is not
    mistaken for a dead one. After ``max_deliveries`` failed deliveries a
    callback is moved to the ``<stream>:dead`` stream and logged.

    Args:
        redis: a ``redis.asyncio.Redis`` client; its ``socket_timeout``, if set,
            must exceed ``block``.
        prefix: the start of every key; the keys share one hash tag (Redis Cluster).
        group: the consumer group; one per application.
        consumer: this worker's name; host, pid and a random part by default.
        claim_idle: seconds a callback stays pending before another worker takes it.
        block: seconds one read waits for new callbacks.
        dedup_ttl: seconds a callback's key is remembered.
        max_deliveries: deliveries before a callback goes to the dead stream.
    """

    redelivers = True

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "wecom_async",
        group: str = "callbacks",
        consumer: str | None = None,
        claim_idle: float = 60.0,
        block: float = 1.0,
        dedup_ttl: float = 86_400.0,
        max_deliveries: int = 10,
    ) -> None:
        if claim_idle <= 0 or block <= 0 or dedup_ttl < 1 or max_deliveries < 1:
            raise WeComInputError(
                "claim_idle, block and dedup_ttl must be positive; max_deliveries >= 1"
            )
        self._redis = redis
        tag = f"{{{prefix}:callbacks}}"
        self.stream = tag
        self.dead_stream = f"{tag}:dead"
        self._seen_prefix = f"{tag}:seen:"
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.claim_idle = claim_idle
        self.touch_interval: float | None = claim_idle / 3
        self._block_ms = max(1, round(block * 1000))
        self._dedup_ttl = round(dedup_ttl)
        self._max_deliveries = max_deliveries
        self._put_script = redis.register_script(_PUT)
        self._group_ready = False
        self._claimed: collections.deque[Delivery] = collections.deque()
        self._claim_lock = asyncio.Lock()
        self._next_claim = 0.0

    def __repr__(self) -> str:
        return f"<RedisStreamQueue stream={self.stream!r} consumer={self.consumer!r}>"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        from redis.exceptions import ResponseError

        try:
            # From id 0: entries added before the group existed are read too.
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def put(self, key: str, payload: str) -> bool:
        """Queue ``payload`` unless ``key`` was queued before; False for a duplicate."""
        from redis.exceptions import RedisError

        try:
            await self._ensure_group()
            added = await self._put_script(
                keys=[self._seen_prefix + key, self.stream],
                args=[payload, self._dedup_ttl, key],
            )
        except RedisError as exc:
            raise WeComStoreError(f"Redis failed to queue a callback: {exc}") from None
        return bool(added)

    async def get(self) -> Delivery | None:
        """The next callback to handle, or None when none came within the poll time."""
        await self._ensure_group()
        now = time.monotonic()
        if not self._claimed and now >= self._next_claim:
            async with self._claim_lock:
                if now >= self._next_claim:
                    self._next_claim = now + self.claim_idle / 2
                    await self._claim()
        if self._claimed:
            return self._claimed.popleft()
        answer: Any = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=1, block=self._block_ms
        )
        for _, entries in answer or ():
            for entry_id, fields in entries:
                return Delivery(
                    _text(fields[b"xml" if b"xml" in fields else "xml"]), _text(entry_id)
                )
        return None

    async def _claim(self) -> None:
        """Take over callbacks left pending longer than ``claim_idle`` (a dead worker's)."""
        answer = await self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=round(self.claim_idle * 1000),
            start_id="0-0",
            count=16,
        )
        entries = answer[1] if len(answer) > 1 else []
        for entry_id, fields in entries:
            ident = _text(entry_id)
            if not fields:  # deleted while pending (older Redis reports these)
                await self._redis.xack(self.stream, self.group, ident)
                continue
            pending = await self._redis.xpending_range(
                self.stream, self.group, min=ident, max=ident, count=1
            )
            attempt = int(pending[0]["times_delivered"]) if pending else 2
            xml = _field(fields, "xml")
            if attempt > self._max_deliveries:
                await self._bury(ident, xml, attempt)
            else:
                self._claimed.append(Delivery(xml, ident, attempt))

    async def _bury(self, ident: str, xml: str, attempt: int) -> None:
        logger.error(
            "callback %s failed %d deliveries; moved to %s", ident, attempt - 1, self.dead_stream
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_stream, {"id": ident, "xml": xml})
            pipe.xack(self.stream, self.group, ident)
            pipe.xdel(self.stream, ident)
            await pipe.execute()

    async def ack(self, delivery: Delivery) -> None:
        """The handler succeeded: forget the callback."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, delivery.id)
            pipe.xdel(self.stream, delivery.id)
            await pipe.execute()

    async def nack(self, delivery: Delivery) -> None:
        """The handler failed: leave it pending, for another worker to claim once idle."""
        pass  # it stays pending: claimed again once idle for claim_idle

    async def touch(self, delivery: Delivery) -> None:
        """The handler is still running: renew its claim so no other worker takes it."""
        # Re-claiming our own entry resets its idle time without counting a delivery.
        await self._redis.xclaim(
            self.stream, self.group, self.consumer, 0, [delivery.id], justid=True
        )

    async def join(self) -> None:
        """Wait until every queued callback was handled (by this worker)."""
        pass  # other workers share the stream: there is nothing to wait for here
