"""One worker process for the Redis tests: N concurrent detail fetches, result as JSON.

Run as ``python -m tests.integration.redis_worker ...`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

import attrs
import redis.asyncio as aioredis

from wecom_async import RateLimit, RateLimiter, RetryPolicy, TokenStore, WeComClient, WeComError
from wecom_async.redis import (
    FallbackRateLimiter,
    FallbackTokenStore,
    RedisRateLimiter,
    RedisTokenStore,
)


async def work(args: argparse.Namespace) -> dict[str, object]:
    r = aioredis.Redis.from_url(args.redis, socket_timeout=1, socket_connect_timeout=1)
    store: TokenStore = RedisTokenStore(r, prefix=args.prefix)
    limiter: RateLimiter = RedisRateLimiter(r, prefix=args.prefix)
    if args.on_error == "local":
        store = FallbackTokenStore(RedisTokenStore(r, prefix=args.prefix))
        limiter = FallbackRateLimiter(RedisRateLimiter(r, prefix=args.prefix), share=args.share)
    policy = RetryPolicy(max_attempts=args.attempts, backoff_base=0.05, backoff_max=0.6)
    client = WeComClient(
        args.corp_id,
        args.secret,
        base_url=args.base_url,
        token_store=store,
        rate_limiter=limiter,
        rate_limit=RateLimit(args.limit, args.period),
        retry=policy,
    )
    ids = json.loads(args.ids)
    delay = args.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)  # every worker starts together
    errors: Counter[str] = Counter()
    got: list[str] = []

    async def one(external_userid: str) -> None:
        try:
            detail = await client.external_contact.get(external_userid)
            got.append(detail.external_contact.external_userid)
        except WeComError as exc:
            errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1

    async with client:
        await asyncio.gather(*(one(i) for i in ids))
    await r.aclose()
    return {"got": got, "errors": dict(errors), "stats": attrs.asdict(client.stats)}


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("base-url", "corp-id", "secret", "redis", "prefix", "ids"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--start-at", type=float, default=0.0)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--period", type=float, default=0.5)
    p.add_argument("--on-error", default="raise")
    p.add_argument("--share", type=float, default=1.0)
    p.add_argument("--attempts", type=int, default=4)
    args = p.parse_args()
    json.dump(asyncio.run(work(args)), sys.stdout)


if __name__ == "__main__":
    main()
