"""Share one access token and one rate budget between processes, through Redis.

Install with ``pip install 'wecom-async[redis]'`` and pass both to every worker::

    r = redis.asyncio.Redis.from_url(url)
    WeComClient(corp_id, secret, token_store=RedisTokenStore(r), rate_limiter=RedisRateLimiter(r))

``RedisTokenStore`` caches the token per (corp, hash of the secret) with a TTL,
refreshes it once across all processes behind a Redis lock, and invalidates it only
if Redis still holds the token that failed. ``RedisRateLimiter`` keeps the same
sliding-window guarantee as the in-process limiter, across processes: a slot is
taken atomically by a server-side script and held until ``period`` after the
answer came back, all on Redis's clock.

When Redis cannot be reached, ``on_error`` decides: ``"raise"`` (the default)
raises :class:`~wecom_async.WeComStoreError` (retried like a network fault, so a
brief restart is absorbed), ``"local"`` falls back to this process's own cache and
windows with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._ratelimit import LocalRateLimiter, RateLimit, RateSlot
from ._token import AccessToken
from .errors import WeComStoreError

__all__ = ["RedisRateLimiter", "RedisTokenStore"]

logger = logging.getLogger("wecom_async")

T = TypeVar("T")
OnError = Literal["raise", "local"]

# Compare, then delete: drop the token only if it is still the one that failed.
_INVALIDATE = """
if redis.call('HGET', KEYS[1], 'value') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Delete a lock only if it still holds our token.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: one sorted set per limit. ARGV: member, lease (µs), then max_calls and period
# (µs) for each key. Members whose score has passed are free slots. Returns 0 when a
# slot was taken in every window (score: now + lease, until release), or else the
# µs until the earliest slot frees in the fullest window.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local lease = tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[1 + 2 * i]) then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local until_free = tonumber(first[2]) - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[2 + 2 * i])
  redis.call('ZADD', key, now + lease, ARGV[1])
  local keep = math.ceil((lease + period) / 1000)
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
return 0
"""

# KEYS as above. ARGV: member, then period (µs) for each key. The answer is back:
# the slot stays taken until one period from now.
_RELEASE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[1 + i])
  redis.call('ZADD', key, 'XX', now + period, ARGV[1])
  -- Only ever lengthen the key's life: other slots may be in flight on long leases.
  local keep = math.ceil(period / 1000) + 1000
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Fallback:
    """The on_error policy: raise a clear error, or warn (once per outage) and go local."""

    def __init__(self, on_error: OnError, what: str) -> None:
        if on_error not in ("raise", "local"):
            raise ValueError(f"on_error must be 'raise' or 'local', got {on_error!r}")
        self.on_error = on_error
        self._what = what
        self._down = False

    async def run(self, call: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if self.on_error == "raise":
                raise WeComStoreError(
                    f"Redis is unreachable for the {self._what}: {type(exc).__name__}: {exc}"
                ) from exc
            if not self._down:
                self._down = True
                logger.warning(
                    "Redis is unreachable for the %s (%s); using this process alone until it "
                    "is back",
                    self._what,
                    type(exc).__name__,
                )
            return await local()
        except RedisError as exc:
            # Redis answered, and refused: a configuration problem (a cluster
            # cross-slot error, a missing command), not an outage to fall back from.
            error = WeComStoreError(
                f"Redis refused a {self._what} command: {type(exc).__name__}: {exc}"
            )
            error.retryable = False
            raise error from exc
        if self._down:
            self._down = False
            logger.warning("Redis is back for the %s", self._what)
        return result


class RedisTokenStore:
    """Access tokens cached in Redis, shared by every process of a corp and app.

    Args:
        redis: a ``redis.asyncio.Redis`` client.
        prefix: the prefix of every key this store writes.
        lock_timeout: seconds a refresh lock lives if its holder dies.
        lock_wait: seconds to wait for another process's refresh before fetching
            anyway (with a warning).
        on_error: ``"raise"`` or ``"local"`` when Redis cannot be reached.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "wecom_async",
        lock_timeout: float = 30.0,
        lock_wait: float = 35.0,
        on_error: OnError = "raise",
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._lock_timeout = lock_timeout
        self._lock_wait = lock_wait
        self._fallback = _Fallback(on_error, "token store")
        self._invalidate = redis.register_script(_INVALIDATE)
        self._unlock = redis.register_script(_UNLOCK)
        # Used only while Redis is down and on_error="local".
        self._local: dict[str, AccessToken] = {}

    def __repr__(self) -> str:
        return f"<RedisTokenStore prefix={self._prefix!r} on_error={self._fallback.on_error!r}>"

    def _key(self, key: str) -> str:
        return f"{self._prefix}:token:{key}"

    async def get(self, key: str) -> AccessToken | None:
        """The token cached in Redis for ``key``, or None."""

        async def remote() -> AccessToken | None:
            raw = await self._redis.hgetall(self._key(key))
            # Keys and values are bytes, or str on a client with decode_responses=True.
            fields = {_text(k): _text(v) for k, v in raw.items()}
            value, expires_at = fields.get("value"), fields.get("expires_at")
            if not value or expires_at is None:
                return None
            return AccessToken(value, float(expires_at))

        async def local() -> AccessToken | None:
            return self._local.get(key)

        return await self._fallback.run(remote, local)

    async def set(self, key: str, token: AccessToken) -> None:
        """Cache ``token`` in Redis under ``key`` until it expires."""
        ttl_ms = max(1, math.floor((token.expires_at - time.time()) * 1000))

        async def remote() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._key(key),
                    mapping={"value": token.value, "expires_at": repr(token.expires_at)},
                )
                pipe.pexpire(self._key(key), ttl_ms)
                await pipe.execute()

        async def local() -> None:
            self._local[key] = token

        await self._fallback.run(remote, local)

    async def invalidate(self, key: str, value: str) -> None:
        """Delete ``key``'s token only if Redis still holds ``value`` (compare and delete)."""

        async def remote() -> None:
            await self._invalidate(keys=[self._key(key)], args=[value])

        async def local() -> None:
            current = self._local.get(key)
            if current is not None and current.value == value:
                del self._local[key]

        await self._fallback.run(remote, local)

    @contextlib.asynccontextmanager
    async def refresh_lock(self, key: str) -> AsyncIterator[None]:
        """Hold the corp's refresh lock in Redis while fetching a token.

        The lock is extended while held (a slow fetch must not let a second process
        in), and given back even when the holder is cancelled mid-acquire.
        """
        name = f"{self._prefix}:token-lock:{key}"
        token = uuid.uuid4().hex
        lock = self._redis.lock(name, timeout=self._lock_timeout, blocking_timeout=self._lock_wait)

        async def take() -> bool | None:
            return bool(await lock.acquire(token=token))

        async def no_lock() -> bool | None:
            return None  # Redis is down: the fallback has said so already

        try:
            held = await self._fallback.run(take, no_lock)
        except BaseException:
            # Cancelled while acquiring: Redis may hold the lock in our name already.
            _spawn(self._give_back(name, token))
            raise
        if held is False:
            logger.warning(
                "waited %.0fs for another process's token refresh; fetching one here",
                self._lock_wait,
            )
        keeper = asyncio.ensure_future(self._keep(lock)) if held else None
        try:
            yield
        finally:
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
            if held:
                with contextlib.suppress(LockError, RedisError, OSError):
                    await lock.release()

    async def _keep(self, lock: Any) -> None:
        """Extend a held lock every third of its timeout, until cancelled."""
        while True:
            await asyncio.sleep(self._lock_timeout / 3)
            with contextlib.suppress(LockError, RedisError, OSError):
                await lock.reacquire()

    async def _give_back(self, name: str, token: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._unlock(keys=[name], args=[token])


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run a best-effort clean-up after the caller is gone; keep it referenced until done."""
    task = asyncio.get_running_loop().create_task(coro)
    _CLEANUPS.add(task)
    task.add_done_callback(_CLEANUPS.discard)


_CLEANUPS: set[asyncio.Task[None]] = set()


class _RedisSlot:
    """A slot held in Redis; released in the background when the answer is back."""

    __slots__ = ("_keys", "_limiter", "_member", "_periods")

    def __init__(
        self, limiter: RedisRateLimiter, keys: list[str], member: str, periods: list[int]
    ) -> None:
        self._limiter = limiter
        self._keys = keys
        self._member = member
        self._periods = periods

    def release(self) -> None:
        self._limiter._release_later(self._keys, self._member, self._periods)


class RedisRateLimiter:
    """Sliding-window rate budgets kept in Redis, shared by every process of a corp.

    The guarantee is the in-process one: no more than ``max_calls`` requests start
    within any ``period``, per corp and API path, with each slot held until
    ``period`` after its answer came back. Slot times are Redis's, so the machines'
    clocks need not agree.

    Args:
        redis: a ``redis.asyncio.Redis`` client.
        prefix: the prefix of every key this limiter writes.
        lease: seconds a slot may stay in flight before it is presumed lost (its
            process died); keep it above the client's timeout.
        poll_interval: the longest wait between two tries for a slot.
        on_error: ``"raise"`` or ``"local"`` when Redis cannot be reached.
        fallback_share: under ``"local"``, the share of each limit this process
            takes for itself (1 / the number of workers keeps their sum in budget).

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
        poll_interval: float = 0.05,
        on_error: OnError = "raise",
        fallback_share: float = 1.0,
    ) -> None:
        if not 0 < fallback_share <= 1:
            raise ValueError("fallback_share must be in (0, 1]")
        self._redis = redis
        self._prefix = prefix
        self._lease_us = int(lease * 1_000_000)
        self._poll = poll_interval
        self._fallback = _Fallback(on_error, "rate limiter")
        self._share = fallback_share
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._local = LocalRateLimiter()
        self._releasing: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<RedisRateLimiter prefix={self._prefix!r} on_error={self._fallback.on_error!r}>"

    def _keys(self, corp_id: str, path: str, limits: tuple[RateLimit, ...]) -> list[str]:
        # One hash tag per (corp, path), so that a cluster keeps a call's windows in
        # one slot (its scripts touch them together); periods as whole µs, so that
        # RateLimit(5, 2) and RateLimit(5, 2.0) share a budget.
        tag = f"{{{self._prefix}:{corp_id}:{path}}}"
        return [f"{tag}:rate:{lim.max_calls}/{round(lim.period * 1_000_000)}us" for lim in limits]

    async def acquire(self, corp_id: str, path: str, limits: tuple[RateLimit, ...]) -> RateSlot:
        """Wait for a slot under every limit, in Redis, and take it."""
        keys = self._keys(corp_id, path, limits)
        periods = [round(lim.period * 1_000_000) for lim in limits]
        member = uuid.uuid4().hex
        args: list[Any] = [member, self._lease_us]
        for lim, period in zip(limits, periods, strict=True):
            args += [lim.max_calls, period]
        while True:

            async def remote() -> int:
                return int(await self._acquire(keys=keys, args=args))

            async def local() -> int:
                return -1

            try:
                wait_us = await self._fallback.run(remote, local)
            except BaseException:
                # Cancelled (or failed) while the script ran: it may have taken a slot
                # this caller will never release; give it back rather than let it sit
                # out its lease.
                self._forget_later(keys, member)
                raise
            if wait_us == 0:
                return _RedisSlot(self, keys, member, periods)
            if wait_us < 0:
                return await self._local.acquire(corp_id, path, self._local_limits(limits))
            await asyncio.sleep(min(wait_us / 1_000_000, self._poll))

    def _local_limits(self, limits: tuple[RateLimit, ...]) -> tuple[RateLimit, ...]:
        return tuple(
            RateLimit(max(1, math.floor(lim.max_calls * self._share)), lim.period) for lim in limits
        )

    def _release_later(self, keys: list[str], member: str, periods: list[int]) -> None:
        self._background(self._release_now(keys, member, periods))

    def _forget_later(self, keys: list[str], member: str) -> None:
        self._background(self._forget_now(keys, member))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _forget_now(self, keys: list[str], member: str) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrem(key, member)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("could not give back a rate slot in Redis: %s", type(exc).__name__)

    async def _release_now(self, keys: list[str], member: str, periods: list[int]) -> None:
        try:
            await self._release(keys=keys, args=[member, *periods])
        except (RedisError, OSError) as exc:
            # The slot stays taken until its lease ends: slower, never over budget.
            logger.warning("could not release a rate slot in Redis: %s", type(exc).__name__)

    async def flush(self) -> None:
        """Wait until every slot released so far has reached Redis."""
        while self._releasing:
            await asyncio.gather(*list(self._releasing), return_exceptions=True)
