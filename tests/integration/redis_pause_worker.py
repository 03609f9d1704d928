"""A second process for the shared-pause test: waits for "go", then makes one call.

Run as ``python -m tests.integration.redis_pause_worker REDIS_URL PREFIX BASE_URL``.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from tests.conftest import CORP_ID, SECRET
from wecom_async import RetryPolicy, WeComClient
from wecom_async.redis import RedisRateLimiter


async def main(url: str, prefix: str, base_url: str) -> None:
    r = aioredis.Redis.from_url(url)
    policy = RetryPolicy(max_attempts=3, backoff_base=0.05, backoff_max=5.0)
    limiter = RedisRateLimiter(r, prefix=prefix)
    async with WeComClient(
        CORP_ID, SECRET, base_url=base_url, rate_limiter=limiter, retry=policy
    ) as client:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print("result", await client.external_contact.list("u"), flush=True)
    await r.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
