"""RedisTokenStore: one access token per (corp, app), shared by every process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from .._token import AccessToken
from ..errors import WeComStoreError
from ._ops import RedisOps, _time_limit

logger = logging.getLogger("wecom_async")

# Compare, then delete: drop the token only if it is still the one that failed.
_INVALIDATE = """
if redis.call('HGET', KEYS[1], 'value') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: Seconds between two tries for a refresh lock another process holds.
_LOCK_RETRY = 0.1


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisTokenStore:
    """Access tokens cached in Redis, shared by every process of a corp and app.

    Every operation runs within ``op_timeout`` seconds and raises
    :class:`~wecom_async.WeComStoreError` when Redis fails; to ride out an outage
    in this process instead, wrap the store in
    :class:`~wecom_async.redis.FallbackTokenStore`.

    Args:
        redis: a ``redis.asyncio.Redis`` client.
        prefix: the prefix of every key this store writes.
        lock_timeout: seconds a refresh lock lives if its holder dies.
        lock_wait: seconds to wait for another process's refresh before fetching
            anyway (with a warning).
        op_timeout: the time limit of each Redis operation, in seconds.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "wecom_async",
        lock_timeout: float = 30.0,
        lock_wait: float = 35.0,
        op_timeout: float = 3.0,
    ) -> None:
        self._redis = redis
        self._ops = RedisOps.for_client(redis)
        self.background = self._ops.background
        """The registry of this Redis client's background tasks (shared)."""
        self._prefix = prefix
        self._lock_timeout = lock_timeout
        self._lock_wait = lock_wait
        self._timeout = _time_limit(op_timeout)
        self._invalidate = redis.register_script(_INVALIDATE)

    def __repr__(self) -> str:
        return f"<RedisTokenStore prefix={self._prefix!r}>"

    def _key(self, key: str) -> str:
        return f"{self._prefix}:token:{key}"

    async def ping(self) -> None:
        """Raise :class:`~wecom_async.WeComStoreError` unless Redis answers now."""
        await self._ops.run("token store", self._timeout, self._redis.ping)

    async def get(self, key: str) -> AccessToken | None:
        """The cached token of ``key``, or None."""
        raw = await self._ops.run(
            "token store", self._timeout, lambda: self._redis.hgetall(self._key(key))
        )
        # Keys and values are bytes, or str on a client with decode_responses=True.
        fields = {_text(k): _text(v) for k, v in raw.items()}
        value, expires_at = fields.get("value"), fields.get("expires_at")
        if not value or expires_at is None:
            return None
        return AccessToken(value, float(expires_at))

    async def set(self, key: str, token: AccessToken) -> None:
        """Cache ``token`` until it expires."""
        ttl_ms = max(1, math.floor((token.expires_at - time.time()) * 1000))

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._key(key),
                    mapping={"value": token.value, "expires_at": repr(token.expires_at)},
                )
                pipe.pexpire(self._key(key), ttl_ms)
                await pipe.execute()

        await self._ops.run("token store", self._timeout, write)

    async def invalidate(self, key: str, value: str) -> None:
        """Drop the cached token of ``key`` if it is still ``value``."""
        await self._ops.run(
            "token store",
            self._timeout,
            lambda: self._invalidate(keys=[self._key(key)], args=[value]),
        )

    @contextlib.asynccontextmanager
    async def refresh_lock(self, key: str) -> AsyncIterator[None]:
        """Hold the corp's refresh lock in Redis while fetching a token.

        The lock is extended while held (a slow fetch must not let a second process
        in), and given back even when the holder is cancelled mid-acquire.
        """
        lock = self._redis.lock(
            f"{self._prefix}:token-lock:{key}", timeout=self._lock_timeout, thread_local=False
        )
        token = uuid.uuid4().hex.encode()
        try:
            held = await self._take(lock, token)
        except BaseException:
            # Cancelled (or timed out) while the SET ran: Redis may hold the lock in
            # our name already. Give it back with redis-py's own release.
            lock.local.token = token
            self._ops.background.job(self._give_back(lock))
            raise
        if not held:
            logger.warning(
                "waited %.0fs for another process's token refresh; fetching one here",
                self._lock_wait,
            )
        keeper = self._ops.background.watcher(self._keep(lock)) if held else None
        try:
            yield
        finally:
            if keeper is not None:
                keeper.cancel()
            if held:
                self._ops.background.job(self._give_back(lock))

    async def _take(self, lock: Lock, token: bytes) -> bool:
        """Try for the lock until ``lock_wait`` has passed; each try is one bounded SET."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        while True:
            got = await self._ops.run(
                "token lock", self._timeout, lambda: lock.acquire(blocking=False, token=token)
            )
            if got:
                return True
            if loop.time() + _LOCK_RETRY > deadline:
                return False
            await asyncio.sleep(_LOCK_RETRY)

    async def _keep(self, lock: Lock) -> None:
        """Extend a held lock every third of its timeout, until cancelled."""
        while True:
            await asyncio.sleep(self._lock_timeout / 3)
            with contextlib.suppress(LockError, WeComStoreError):
                await self._ops.run("token lock", self._timeout, lock.reacquire)

    async def _give_back(self, lock: Lock) -> None:
        # LockError: it was not (or no longer) ours; a store error: it expires alone.
        with contextlib.suppress(LockError, WeComStoreError):
            await self._ops.run("token lock", self._timeout, lock.release)
