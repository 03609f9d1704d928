"""RedisStreamQueue: callbacks in a Redis stream, shared by many workers.

Throughput comes from batches: one ``XREADGROUP`` hands out up to ``batch``
entries, the acknowledgements of handlers that finish together go in one
``MULTI``/``XACK``/``XDEL``/``EXEC``, and one renewal keeps every entry this worker
holds from being claimed elsewhere. Every command goes through
:class:`~wecom_async.redis.RedisOps`, so each has a time limit and one error type.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..errors import WeComCallbackError, WeComInputError, WeComStoreError
from ..redis._ops import RedisOps, _time_limit
from ._events import CallbackEvent, event_from_fields, parse_event
from ._queue import Delivery

__all__ = ["RedisStreamQueue"]

logger = logging.getLogger("wecom_async")

T = TypeVar("T")

# Remember the key and add the entry in one step: a process that died between the
# two would otherwise leave a key that turns WeCom's retries away, and no entry.
# The key holds the id of the put that added the entry, so a put repeated because
# its answer was lost (a dropped connection, a time-out) learns that it was its own
# and counts once, instead of calling itself a duplicate.
_PUT = """
local seen = redis.call('GET', KEYS[1])
if seen == ARGV[4] then return 1 end
if seen then return 0 end
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'key', ARGV[3], 'xml', ARGV[1], 'fields', ARGV[5])
return 1
"""

# Renew this consumer's claim on the entries it still owns, and only those: a
# worker paused past claim_idle (SIGSTOP, a blocked loop) whose entries another
# worker claimed meanwhile must not take them back when it wakes. Re-claiming an
# entry of one's own resets its idle time without counting a delivery (JUSTID).
# Answers the ids it no longer owns.
_RENEW = """
local lost = {}
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if entry and entry[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

#: Puts whose outcome is unknown, remembered so that a repeat reuses their id.
_UNSETTLED_MAX = 10_000
#: Ids one renewal (``XCLAIM ... JUSTID``) names at most.
_RENEW_CHUNK = 500

_fields_encoder = msgspec.json.Encoder()
_fields_decoder = msgspec.json.Decoder(tuple[dict[str, str], dict[str, tuple[str, ...]]])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(fields: Any, name: str) -> Any:
    """A stream entry's field, whether the client decodes responses or not; or None."""
    raw = name.encode()
    return fields[raw] if raw in fields else fields.get(name)


def _event(fields: Any) -> CallbackEvent:
    """The event a stream entry holds: its parsed fields, or (an older entry) its XML.

    Raises:
        TypeError: the entry has no ``xml`` field.
    """
    raw = _field(fields, "xml")
    if raw is None:
        raise TypeError("no xml field")
    xml = _text(raw)
    parsed = _field(fields, "fields")
    if parsed is None:
        return parse_event(xml)
    try:
        top, lists = _fields_decoder.decode(parsed)
    except msgspec.DecodeError:
        return parse_event(xml)
    return event_from_fields(top, lists, xml)


class RedisStreamQueue:
    """A Redis stream shared by many workers (the ``[redis]`` extra).

    Every worker process behind the callback URL uses the same ``prefix`` and
    ``group``, each with its own ``consumer`` name. A callback is added to the
    stream (once: the dedup key is set in the same script, and a repeated put
    counts once), read by one consumer of the group in batches, and acknowledged
    (and deleted) only after its handler succeeded. While this worker holds an
    entry (buffered or running) it renews its claim every ``claim_idle / 3``
    seconds. A callback whose handler failed, or whose worker died, stays
    pending; once idle ``claim_idle`` seconds any worker claims it and handles it
    again. After ``max_deliveries`` deliveries a callback is moved to the
    ``<stream>:dead`` stream (trimmed to about ``dead_maxlen`` entries) and logged.

    Args:
        redis: a ``redis.asyncio.Redis`` client.
        prefix: the start of every key; the keys share one hash tag (Redis Cluster).
        group: the consumer group; one per application.
        consumer: this worker's name; host, pid and a random part by default.
        claim_idle: seconds a callback stays pending before another worker takes it.
        block: seconds one read waits for new callbacks.
        batch: entries one read takes at most.
        dedup_ttl: seconds a callback's key is remembered (at least twice the
            replay window).
        max_deliveries: deliveries before a callback goes to the dead stream.
        dead_maxlen: entries the dead stream keeps, about (oldest trimmed).
        op_timeout: the time limit of each Redis command, in seconds (a read
            gets ``block`` more).
    """

    redelivers = True
    touch_interval: float | None = None  # it renews what it holds itself

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "wecom_async",
        group: str = "callbacks",
        consumer: str | None = None,
        claim_idle: float = 60.0,
        block: float = 1.0,
        batch: int = 64,
        dedup_ttl: float = 86_400.0,
        max_deliveries: int = 10,
        dead_maxlen: int = 10_000,
        op_timeout: float = 1.0,
    ) -> None:
        if claim_idle <= 0 or block <= 0 or dedup_ttl < 1 or max_deliveries < 1:
            raise WeComInputError(
                "claim_idle, block and dedup_ttl must be positive; max_deliveries >= 1"
            )
        if batch < 1 or dead_maxlen < 1:
            raise WeComInputError("batch and dead_maxlen must be at least 1")
        self._redis = redis
        self._ops = RedisOps.for_client(redis)
        self._timeout = _time_limit(op_timeout)
        tag = f"{{{prefix}:callbacks}}"
        self.stream = tag
        self.dead_stream = f"{tag}:dead"
        self._seen_prefix = f"{tag}:seen:"
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.claim_idle = claim_idle
        self.dedup_ttl = float(round(dedup_ttl))
        self._block_ms = max(1, round(block * 1000))
        self._batch = batch
        self._max_deliveries = max_deliveries
        self._dead_maxlen = dead_maxlen
        self._put_script = redis.register_script(_PUT)
        self._renew_script = redis.register_script(_RENEW)
        self._group_ready = False
        self._group_lock = asyncio.Lock()
        self._unsettled: collections.OrderedDict[str, str] = collections.OrderedDict()
        # Read and not yet settled: renewed until acknowledged or given up.
        self._held: set[str] = set()
        self._ready: collections.deque[Delivery] = collections.deque()
        self._reading: asyncio.Future[None] | None = None
        self._next_claim = 0.0
        self._renewer: asyncio.Task[None] | None = None
        self._acks: list[str] = []
        self._unacked: set[str] = set()
        self._acked: asyncio.Future[BaseException | None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<RedisStreamQueue stream={self.stream!r} consumer={self.consumer!r}>"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        async with self._group_lock:  # a burst of first puts creates it once
            if self._group_ready:
                return

            async def create() -> None:
                try:
                    # From id 0: entries added before the group existed are read too.
                    await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

            await self._run("callback group", create)
            self._group_ready = True

    async def _run(self, what: str, op: Callable[[], Awaitable[T]], extra: float = 0.0) -> T:
        try:
            return await self._ops.run(what, self._timeout + extra, op)
        except WeComStoreError as exc:
            if "NOGROUP" in str(exc):
                # Redis lost the group (restarted without its data, or the stream
                # deleted): made again before the next command.
                self._group_ready = False
            raise

    # -- the receiver's side --

    async def put(self, key: str, event: CallbackEvent) -> bool:
        """Queue ``event`` unless ``key`` was queued before; False for a duplicate.

        Raises:
            WeComStoreError: Redis failed or did not answer within ``op_timeout``.
        """
        await self._ensure_group()
        # A put whose answer was lost left its id behind (below): a later put of
        # the same callback takes it, and if the first one landed after all, learns
        # so and counts it. A put still in flight leaves nothing to take, so two at
        # once use two ids, and the second is a duplicate.
        put_id = self._unsettled.pop(key, None) or uuid.uuid4().hex
        fields = _fields_encoder.encode((dict(event.fields), _lists(event)))
        try:
            added = await self._run(
                "callback put",
                lambda: self._put_script(
                    keys=[self._seen_prefix + key, self.stream],
                    args=[event.xml, round(self.dedup_ttl), key, put_id, fields],
                ),
            )
        except BaseException:  # a time-out, a cancellation, an outage: outcome unknown
            self._unsettled[key] = put_id
            while len(self._unsettled) > _UNSETTLED_MAX:
                self._unsettled.popitem(last=False)
            raise
        return bool(added)

    # -- the workers' side --

    async def get(self) -> Delivery | None:
        """The next callback to handle, or None when none came within ``block``.

        The workers of a receiver share one read at a time; it takes up to
        ``batch`` entries, which they then take one by one.
        """
        if self._ready:
            return self._ready.popleft()
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._fill())
            self._reading.add_done_callback(self._read_done)
        await asyncio.shield(self._reading)
        return self._ready.popleft() if self._ready else None

    def _read_done(self, reading: asyncio.Future[None]) -> None:
        self._reading = None
        if not reading.cancelled():
            reading.exception()  # every waiter is told; none must be left unread

    async def _fill(self) -> None:
        await self._ensure_group()
        if self._unacked:  # handled here; Redis had not taken the acknowledgement
            await self._settle_acks(list(self._unacked))
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.claim_idle / 2
            await self._claim()
            if self._ready:
                return
        answer: Any = await self._run(
            "callback read",
            lambda: self._redis.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self._batch,
                block=self._block_ms,
            ),
            extra=self._block_ms / 1000,
        )
        for _, entries in answer or ():
            for entry_id, fields in entries:
                await self._take(_text(entry_id), fields, 1)

    async def _take(self, ident: str, fields: Any, attempt: int) -> None:
        """Hand the entry out, or bury it if it is past its deliveries or unreadable."""
        if ident in self._unacked:
            return  # handled already: only its acknowledgement is owed
        if attempt > self._max_deliveries:
            await self._bury(ident, fields, f"failed {attempt - 1} deliveries")
            return
        try:
            event = _event(fields)
        except (WeComCallbackError, TypeError, UnicodeDecodeError):
            # Not this library's entry, or one that no longer parses: it can never
            # be handled, and must not be handed out again and again.
            await self._bury(ident, fields, "cannot be read")
            return
        self._held.add(ident)
        self._ready.append(Delivery(event, ident, attempt))
        self._ensure_renewer()

    async def _claim(self) -> None:
        """Take over callbacks left pending longer than ``claim_idle`` (a dead worker's)."""
        idle_ms = round(self.claim_idle * 1000)
        pending: Any = await self._run(
            "callback claim",
            lambda: self._redis.xpending_range(
                self.stream, self.group, min="-", max="+", count=self._batch, idle=idle_ms
            ),
        )
        if not pending:
            return
        delivered = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        claimed: Any = await self._run(
            "callback claim",
            lambda: self._redis.xclaim(
                self.stream, self.group, self.consumer, idle_ms, list(delivered)
            ),
        )
        gone = set(delivered)
        for entry_id, fields in claimed or ():
            ident = _text(entry_id)
            gone.discard(ident)
            if not fields:  # deleted while pending (older Redis returns these)
                continue
            await self._take(ident, fields, delivered.get(ident, 1) + 1)
        if gone:  # deleted while pending: nothing to deliver, nothing to hold
            await self._run(
                "callback ack", lambda: self._redis.xack(self.stream, self.group, *gone)
            )

    async def _bury(self, ident: str, fields: Any, why: str) -> None:
        logger.error("callback %s %s; moved to %s", ident, why, self.dead_stream)
        xml = _field(fields, "xml")

        async def move() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    self.dead_stream,
                    {"id": ident, "xml": xml if xml is not None else b"", "why": why},
                    maxlen=self._dead_maxlen,
                    approximate=True,
                )
                pipe.xack(self.stream, self.group, ident)
                pipe.xdel(self.stream, ident)
                await pipe.execute()

        await self._run("callback bury", move)

    # -- settling --

    async def ack(self, delivery: Delivery) -> None:
        """The handler succeeded: forget the callback.

        Acknowledgements that arrive together go to Redis in one transaction;
        each returns once its own has been tried. One Redis did not take is kept,
        still held, and tried again before the next read: a callback this worker
        has handled is not handed to a handler again while the worker lives.
        """
        self._acks.append(delivery.id)
        if self._acked is None:
            self._acked = asyncio.get_running_loop().create_future()
        acked = self._acked
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        await asyncio.shield(acked)

    async def _flush(self) -> None:
        try:
            while self._acks:
                await asyncio.sleep(0)  # let the handlers finishing now join this batch
                ids, self._acks = self._acks, []
                acked, self._acked = self._acked, None
                try:
                    await self._settle_acks(ids)
                finally:  # cancelled too: the ackers must not wait for ever
                    if acked is not None:
                        acked.set_result(None)
        finally:
            self._flusher = None

    async def _settle_acks(self, ids: list[str]) -> None:
        """Acknowledge ``ids``; keep them to try again if Redis does not take them."""
        try:
            await self._run("callback ack", functools.partial(self._ack_batch, ids))
        except WeComStoreError as exc:
            self._unacked.update(ids)
            logger.warning(
                "could not acknowledge %d handled callback(s), tried again before the next "
                "read: %s",
                len(ids),
                exc,
            )
        else:
            self._held.difference_update(ids)
            self._unacked.difference_update(ids)

    async def _ack_batch(self, ids: list[str]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()

    async def nack(self, delivery: Delivery) -> None:
        """The handler failed: leave it pending, for a worker to claim once idle."""
        self._held.discard(delivery.id)  # no longer renewed: idle from now on

    async def touch(self, delivery: Delivery) -> None:
        """Renew the claim on ``delivery`` now (the queue also does so by itself)."""
        await self._renew([delivery.id])

    async def join(self) -> None:
        """Wait until every queued callback was handled (by this worker)."""
        pass  # other workers share the stream: there is nothing to wait for here

    async def aclose(self) -> None:
        """Stop renewing and reading; finish the acknowledgements under way."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._unacked:  # a last try; what is still owed is redelivered elsewhere
            await self._settle_acks(list(self._unacked))
        tasks = [t for t in (self._renewer, self._reading) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._renewer = self._reading = None
        # What was read and not handled is left pending: another worker claims it.
        self._ready.clear()
        self._held.clear()
        self._unacked.clear()

    # -- renewing what this worker holds --

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_while_held())

    async def _renew_while_held(self) -> None:
        interval = self.claim_idle / 3
        while self._held:
            await asyncio.sleep(interval)
            try:
                await self._renew(list(self._held))
            except WeComStoreError as exc:
                logger.warning("could not renew the claim on held callbacks: %s", exc)

    async def _renew(self, ids: list[str]) -> None:
        for start in range(0, len(ids), _RENEW_CHUNK):
            chunk = ids[start : start + _RENEW_CHUNK]
            renew = functools.partial(
                self._renew_script, keys=[self.stream], args=[self.group, self.consumer, *chunk]
            )
            lost: Any = await self._run("callback renew", renew)
            for ident in lost or ():
                # Another worker claimed it while this one was paused: its handler
                # may still finish here (delivery is at least once), but the claim
                # is no longer renewed.
                self._held.discard(_text(ident))


def _lists(event: CallbackEvent) -> dict[str, tuple[str, ...]]:
    members = getattr(event, "mem_change_list", ())
    return {"MemChangeList": members} if members else {}
