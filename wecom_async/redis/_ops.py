"""Every Redis operation: a time limit, a connection to run on, and one error type.

redis-py 5 and later have no socket timeout by default, so a Redis that stops
answering (a black-holed address, a stalled proxy) would hang a call forever;
every operation here runs under ``op_timeout``. A client's pool holds a fixed
number of connections (100 for ``Redis.from_url``) and redis-py raises
``MaxConnectionsError`` (a ``ConnectionError``) when more commands run at once:
that is load, not an outage, so operations queue for a connection here instead.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._background import Background
from .._deadline import within
from ..errors import WeComInputError, WeComStoreError

T = TypeVar("T")

#: Connections of the client's pool left to others (a pub/sub listener, the user).
_RESERVED = 2

#: The cap when the pool does not say how many connections it holds.
_DEFAULT_CAP = 50


def _time_limit(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WeComInputError(f"op_timeout must be a number of seconds, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise WeComInputError(f"op_timeout must be positive and finite, got {value!r}")
    return float(value)


def _cap(redis: aioredis.Redis) -> int:
    pool = getattr(redis, "connection_pool", None)
    size = getattr(pool, "max_connections", None)
    if not isinstance(size, int) or size <= 0:
        return _DEFAULT_CAP
    return max(1, size - _RESERVED)


class RedisOps:
    """The gate every command to one Redis client's pool passes through.

    Shared by every store, limiter and pause board built on the same client
    (:meth:`for_client`), so that together they never ask the pool for more
    connections than it holds, and share one registry of background tasks.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.connections = asyncio.Semaphore(_cap(redis))
        self.background = Background()

    _shared: ClassVar[weakref.WeakKeyDictionary[Any, RedisOps]] = weakref.WeakKeyDictionary()

    @classmethod
    def for_client(cls, redis: aioredis.Redis) -> RedisOps:
        """The one gate of ``redis``'s connection pool."""
        owner = getattr(redis, "connection_pool", None) or redis
        ops = cls._shared.get(owner)
        if ops is None:
            ops = cls._shared[owner] = cls(redis)
        return ops

    async def run(self, what: str, timeout: float, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` on a free connection within ``timeout`` seconds, waiting included.

        Raises:
            WeComStoreError: ``unreachable`` (and retryable) when Redis refused,
                dropped or did not answer in time; not retryable when it answered
                with an error.
        """
        try:
            return await within(timeout, self._gated(op))
        except asyncio.TimeoutError:
            raise _unreachable(
                f"Redis did not answer the {what} within {timeout:g}s", None
            ) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise _unreachable(f"Redis is unreachable for the {what}", exc) from exc
        except RedisError as exc:
            # Redis answered, and refused: a configuration problem (a cluster
            # cross-slot error, a missing command), not an outage to ride out.
            error = WeComStoreError(f"Redis refused a {what} command: {type(exc).__name__}: {exc}")
            error.retryable = False
            raise error from exc

    async def _gated(self, op: Callable[[], Awaitable[T]]) -> T:
        async with self.connections:
            try:
                return await op()
            except RedisConnectionError:
                # A pooled connection that died while idle (Redis restarted) fails
                # once; the pool connects afresh for the second try. The operations
                # here are idempotent (scripts keyed by the caller's own member).
                return await op()


def _unreachable(text: str, exc: BaseException | None) -> WeComStoreError:
    if exc is not None:
        text = f"{text}: {type(exc).__name__}: {exc}"
    error = WeComStoreError(text)
    error.unreachable = True
    return error
