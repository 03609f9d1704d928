"""README: Running many workers."""

from __future__ import annotations

import redis.asyncio as redis


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


def alone(corp_id: str, secret: str, r: redis.Redis) -> None:
    from wecom_async import WeComClient
    from wecom_async.redis import RedisRateLimiter, RedisTokenStore

    # README {
    from wecom_async.redis import FallbackRateLimiter, FallbackTokenStore

    WeComClient(
        corp_id, secret,
        token_store=FallbackTokenStore(RedisTokenStore(r)),
        rate_limiter=FallbackRateLimiter(RedisRateLimiter(r), share=1 / 20),  # 20 workers
    )
    # README }
