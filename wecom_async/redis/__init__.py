"""Share one access token, one rate budget and the 45009 pauses between processes.

Install with ``pip install 'wecom-async[redis]'`` and pass them to every worker::

    r = redis.asyncio.Redis.from_url(url)
    WeComClient(corp_id, secret, token_store=RedisTokenStore(r), rate_limiter=RedisRateLimiter(r))

``RedisTokenStore`` caches the token per (corp, hash of the secret) with a TTL,
refreshes it once across all processes behind a Redis lock, and invalidates it only
if Redis still holds the token that failed. ``RedisRateLimiter`` keeps the same
sliding-window guarantee as the in-process limiter, across processes: a slot is
taken atomically by a server-side script and held until ``period`` after the
answer came back, all on Redis's clock.

Both do only Redis: every operation has a time limit (``op_timeout``), waits for a
free connection of the client's pool rather than fail, and raises
:class:`~wecom_async.WeComStoreError` when Redis does not answer; the retry policy
retries it like a network fault. To go on alone during an outage, wrap them:
:class:`FallbackTokenStore` and :class:`FallbackRateLimiter` (``share=1/N`` for N
workers) keep within the budget and report back when Redis returns.
"""

from .._fallback import FallbackRateLimiter, FallbackTokenStore, TakenSlot
from ._limiter import RedisRateLimiter
from ._store import RedisTokenStore

__all__ = [
    "FallbackRateLimiter",
    "FallbackTokenStore",
    "RedisRateLimiter",
    "RedisTokenStore",
    "TakenSlot",
]
