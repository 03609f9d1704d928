"""README: Running many workers."""

from __future__ import annotations


def shared(corp_id: str, secret: str) -> None:
    # README {
    import redis.asyncio as redis
    from wecom_async import RateLimit, WeComClient
    from wecom_async.redis import RedisRateLimiter, RedisTokenStore

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    client = WeComClient(
        corp_id, secret,
        token_store=RedisTokenStore(r),          # one token per corp and app, refreshed once
        rate_limiter=RedisRateLimiter(r),        # one sliding-window budget per corp and API
        rate_limit=[RateLimit(10_000, 60), RateLimit(150_000, 3600)],   # the numbers, as before
    )
    # README }
