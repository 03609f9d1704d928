"""RedisRateLimiter: one sliding-window budget per (corp, API), shared by every process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .._fallback import TakenSlot
from .._ratelimit import RateLimit, RateSlot
from ..errors import WeComInputError, WeComStoreError, WeComUsageError
from ._ops import RedisOps, _time_limit

logger = logging.getLogger("wecom_async")

# KEYS: one sorted set per limit, then the (corp, API)'s 45009 pause key. ARGV: member,
# lease (µs), then max_calls and period (µs) for each window. Members whose score has
# passed are free slots. Returns 0 when a slot was taken in every window (score: now +
# lease, until release), or else the µs to wait: what is left of a 45009 pause, or
# until the earliest slot frees in the fullest window.
_ACQUIRE = """
local n = #KEYS - 1
local paused = redis.call('PTTL', KEYS[n + 1])
if paused > 0 then return paused * 1000 end
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local lease = tonumber(ARGV[2])
local wait = 0
for i = 1, n do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[1 + 2 * i]) then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local until_free = tonumber(first[2]) - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
for i = 1, n do
  local key = KEYS[i]
  local period = tonumber(ARGV[2 + 2 * i])
  redis.call('ZADD', key, now + lease, ARGV[1])
  local keep = math.ceil((lease + period) / 1000)
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
return 0
"""

# KEYS as above. ARGV: member, age (µs since the answer came back), channel, tag,
# then period (µs) for each key. The slot stays taken until one period after the
# answer; waiters in every process hear that the window changed.
_RELEASE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local back = now - tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[4 + i])
  redis.call('ZADD', key, 'XX', back + period, ARGV[1])
  -- Only ever lengthen the key's life: other slots may be in flight on long leases.
  local keep = math.ceil(period / 1000) + 1000
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

# KEYS as above. ARGV: member, channel, tag. A slot that was taken but never used
# (its caller was cancelled while the acquire script ran) is free at once.
_FORGET = """
for _, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# KEYS as above. ARGV: lease (µs), the number of keys' periods (µs), then pairs of
# member and age (µs since its answer came back, or 'in-flight'). Slots taken in a
# process while Redis was unreachable join the shared windows.
_RECORD = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local lease = tonumber(ARGV[1])
local n = #KEYS
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[1 + i])
  for j = 2 + n, #ARGV, 2 do
    local score = now + lease
    if ARGV[j + 1] ~= 'in-flight' then score = now - tonumber(ARGV[j + 1]) + period end
    if score > now then redis.call('ZADD', key, 'GT', score, ARGV[j]) end
  end
  local keep = math.ceil((lease + period) / 1000)
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
return 1
"""

# KEYS: the (corp, API)'s pause key. ARGV: the pause in ms. Only ever lengthens a pause.
_PAUSE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 1
"""

#: Back-off between tries to deliver a release while Redis is unreachable.
_RELEASE_RETRY = (0.1, 0.25, 0.5, 1.0, 2.0)


class _Turn:
    """The callers of one (corp, API) in this process, queued to ask Redis one at a time.

    Only the head of the queue runs the acquire script; when it is refused, it
    waits for a release anywhere (pub/sub) or for the earliest slot to end, and the
    rest wait behind it without touching Redis. A head that finds Redis
    unreachable marks the queue failed, so that callers queued behind it fail at
    once instead of each waiting out a time limit of its own.
    """

    __slots__ = ("error", "failed_at", "lock", "wake")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.failed_at = float("-inf")
        self.error: WeComStoreError | None = None


class _RedisSlot:
    """A slot held in Redis; released in the background when the answer is back."""

    __slots__ = ("_keys", "_limiter", "_member", "_periods", "_tag")

    def __init__(
        self,
        limiter: RedisRateLimiter,
        keys: list[str],
        member: str,
        periods: list[int],
        tag: str,
    ) -> None:
        self._limiter: RedisRateLimiter | None = limiter
        self._keys = keys
        self._member = member
        self._periods = periods
        self._tag = tag

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is None:
            raise WeComUsageError("a rate-limit slot was released twice")
        back = asyncio.get_running_loop().time()
        limiter._ops.background.job(
            limiter._release(self._keys, self._member, self._periods, self._tag, back)
        )


class RedisRateLimiter:
    """Sliding-window rate budgets kept in Redis, shared by every process of a corp.

    The guarantee is the in-process one: no more than ``max_calls`` requests start
    within any ``period``, per corp and API path, with each slot held until
    ``period`` after its answer came back. Slot times are Redis's, so the machines'
    clocks need not agree.

    Callers of one (corp, API) in a process queue locally and only the first asks
    Redis; a refused caller sleeps until a slot frees, or a release anywhere
    publishes on ``{prefix}:freed``, whichever comes first (``check_interval``
    bounds the sleep if the publication is missed). Every operation runs within
    ``op_timeout`` and raises :class:`~wecom_async.WeComStoreError` when Redis
    fails; wrap the limiter in :class:`~wecom_async.redis.FallbackRateLimiter` to
    ride out an outage in this process.

    Args:
        redis: a ``redis.asyncio.Redis`` client.
        prefix: the prefix of every key this limiter writes.
        lease: seconds a slot may stay in flight before it is presumed lost (its
            process died); keep it above the client's timeout.
        check_interval: the longest sleep of a refused caller without a wake-up.
        op_timeout: the time limit of each Redis operation, in seconds.

    The windows live in Redis's memory: a Redis that restarts without persistence
    (or fails over to a lagging replica) forgets the slots of the current window,
    and a new full budget follows. WeCom then answers 45009 for the overlap, which
    the retry policy absorbs; to keep the guarantee across restarts, run Redis with
    AOF persistence.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "wecom_async",
        lease: float = 120.0,
        check_interval: float = 1.0,
        op_timeout: float = 3.0,
    ) -> None:
        if not lease > 0:
            raise WeComInputError(f"lease must be positive, got {lease!r}")
        if not check_interval > 0:
            raise WeComInputError(f"check_interval must be positive, got {check_interval!r}")
        self._redis = redis
        self._ops = RedisOps.for_client(redis)
        self.background = self._ops.background
        """The registry of this Redis client's background tasks (shared)."""
        self._prefix = prefix
        self._lease_us = int(lease * 1_000_000)
        self._check = check_interval
        self._timeout = _time_limit(op_timeout)
        self._channel = f"{prefix}:freed"
        self._acquire = redis.register_script(_ACQUIRE)
        self._release_script = redis.register_script(_RELEASE)
        self._forget_script = redis.register_script(_FORGET)
        self._record_script = redis.register_script(_RECORD)
        self._pause_script = redis.register_script(_PAUSE)
        self._turns: dict[str, _Turn] = {}
        self._listener: asyncio.Task[Any] | None = None

    def __repr__(self) -> str:
        return f"<RedisRateLimiter prefix={self._prefix!r}>"

    def _tag(self, corp_id: str, path: str) -> str:
        # One hash tag per (corp, path), so that a cluster keeps a call's windows in
        # one slot (its scripts touch them together).
        return f"{{{self._prefix}:{corp_id}:{path}}}"

    def _keys(self, corp_id: str, path: str, limits: tuple[RateLimit, ...]) -> list[str]:
        # Periods as whole µs, so that RateLimit(5, 2) and RateLimit(5, 2.0) share a budget.
        tag = self._tag(corp_id, path)
        return [f"{tag}:rate:{lim.max_calls}/{round(lim.period * 1_000_000)}us" for lim in limits]

    def _pause_key(self, corp_id: str, path: str) -> str:
        return f"{self._tag(corp_id, path)}:pause"

    async def pause(self, corp_id: str, path: str, seconds: float) -> None:
        """Pause (corp, API) for ``seconds`` in every process: WeCom answered 45009.

        Until it ends, :meth:`acquire` hands out no slot of that API, here or in
        any process sharing this Redis; a longer pause already set is kept.
        """
        ms = max(1, math.ceil(seconds * 1000))
        key = self._pause_key(corp_id, path)
        await self._ops.run(
            "rate limiter", self._timeout, lambda: self._pause_script(keys=[key], args=[ms])
        )

    async def ping(self) -> None:
        """Raise :class:`~wecom_async.WeComStoreError` unless Redis answers now."""
        await self._ops.run("rate limiter", self._timeout, self._redis.ping)

    async def acquire(self, corp_id: str, path: str, limits: tuple[RateLimit, ...]) -> RateSlot:
        """Wait for a slot under every limit, in Redis, and take it."""
        tag = self._tag(corp_id, path)
        keys = self._keys(corp_id, path, limits)
        pause_key = self._pause_key(corp_id, path)
        periods = [round(lim.period * 1_000_000) for lim in limits]
        member = uuid.uuid4().hex
        args: list[Any] = [member, self._lease_us]
        for lim, period in zip(limits, periods, strict=True):
            args += [lim.max_calls, period]
        turn = self._turns.get(tag)
        if turn is None:
            turn = self._turns[tag] = _Turn()
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        async with turn.lock:
            if turn.failed_at >= queued_at and turn.error is not None:
                raise _again(turn.error)
            while True:
                turn.wake.clear()  # a release published from now on wakes this wait
                try:
                    wait_us = int(
                        await self._ops.run(
                            "rate limiter",
                            self._timeout,
                            lambda: self._acquire(keys=[*keys, pause_key], args=args),
                        )
                    )
                except BaseException as exc:
                    if isinstance(exc, WeComStoreError) and exc.unreachable:
                        turn.failed_at, turn.error = loop.time(), exc
                    # Cancelled or cut off while the script ran: it may have taken a
                    # slot this caller will never release; give it back rather than
                    # let it sit out its lease.
                    self._ops.background.job(self._forget(keys, member, tag))
                    raise
                if wait_us == 0:
                    return _RedisSlot(self, keys, member, periods, tag)
                self._listen()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(turn.wake.wait(), min(wait_us / 1e6, self._check))

    async def record(
        self,
        corp_id: str,
        path: str,
        limits: tuple[RateLimit, ...],
        taken: Sequence[TakenSlot],
    ) -> dict[str, RateSlot]:
        """Add slots taken elsewhere (in this process, while Redis was down) to the windows.

        Returns, for each slot still in flight, a slot whose ``release()`` ends it
        in Redis as any other.
        """
        if not taken:
            return {}
        tag = self._tag(corp_id, path)
        keys = self._keys(corp_id, path, limits)
        periods = [round(lim.period * 1_000_000) for lim in limits]
        args: list[Any] = [self._lease_us, *periods]
        for slot in taken:
            args += [slot.member, "in-flight" if slot.age is None else round(slot.age * 1e6)]
        await self._ops.run(
            "rate limiter", self._timeout, lambda: self._record_script(keys=keys, args=args)
        )
        return {
            slot.member: _RedisSlot(self, keys, slot.member, periods, tag)
            for slot in taken
            if slot.age is None
        }

    def _listen(self) -> None:
        """Start the pub/sub listener that wakes refused callers, unless it runs."""
        if self._listener is None or self._listener.done():
            self._listener = self._ops.background.watcher(self._hear_releases())

    async def _hear_releases(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self._channel), self._timeout)
                while True:
                    message = await pubsub.get_message(timeout=self._check)
                    if message is None:
                        continue
                    data = message["data"]
                    turn = self._turns.get(data.decode() if isinstance(data, bytes) else data)
                    if turn is not None:
                        turn.wake.set()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                # Refused callers fall back on their timed checks meanwhile.
                logger.debug("the rate limiter's pub/sub listener failed: %s", type(exc).__name__)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await asyncio.sleep(self._check)

    async def _release(
        self, keys: list[str], member: str, periods: list[int], tag: str, back: float
    ) -> None:
        loop = asyncio.get_running_loop()
        for delay in (*_RELEASE_RETRY, None):
            age_us = max(0, round((loop.time() - back) * 1e6))
            args: list[Any] = [member, age_us, self._channel, tag, *periods]
            try:
                await self._ops.run(
                    "rate limiter",
                    self._timeout,
                    functools.partial(self._release_script, keys=keys, args=args),
                )
                return
            except WeComStoreError as exc:
                if delay is None or not exc.unreachable:
                    # The slot stays taken until its lease ends: slower, never over budget.
                    logger.debug("could not release a rate slot in Redis: %s", exc)
                    return
            await asyncio.sleep(delay)

    async def _forget(self, keys: list[str], member: str, tag: str) -> None:
        with contextlib.suppress(WeComStoreError):
            await self._ops.run(
                "rate limiter",
                self._timeout,
                lambda: self._forget_script(keys=keys, args=[member, self._channel, tag]),
            )

    async def flush(self) -> None:
        """Wait until every slot released so far has reached Redis (or given up)."""
        await self._ops.background.flush()


def _again(error: WeComStoreError) -> WeComStoreError:
    """A fresh error like ``error``, for a caller queued behind the one that met it."""
    again = WeComStoreError(str(error))
    again.unreachable = error.unreachable
    again.retryable = error.retryable
    return again
