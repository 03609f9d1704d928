"""Redis under load and in an outage: stalled, refused and exhausted, over a loopback proxy.

Every test talks to the real Redis through :class:`TcpProxy`, which can stall the
connection (a black-holed server), refuse it (a restart), and counts the commands
it carries. Keys carry the test's own prefix; nothing server-wide is read or reset.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_redis import REDIS_URL, redis_prefix  # noqa: F401 - a fixture
from tests.servers import TinyServer
from wecom_async import (
    RateLimit,
    RetryPolicy,
    WeComClient,
    WeComRateLimitError,
    WeComStoreError,
)
from wecom_async.redis import (
    FallbackRateLimiter,
    FallbackTokenStore,
    RedisRateLimiter,
    RedisTokenStore,
)
from wecom_async.testing import FakeWeCom

PATH = "externalcontact/get"


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def proxy(redis_prefix: str) -> AsyncIterator[TcpProxy]:  # noqa: F811 - the fixture
    target = urlparse(REDIS_URL)
    tcp = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await tcp.start()
    yield tcp
    await tcp.aclose()


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


def _client(fake: FakeWeCom, r: aioredis.Redis, prefix: str, **kwargs: Any) -> WeComClient:
    kwargs.setdefault("token_store", RedisTokenStore(r, prefix=prefix))
    kwargs.setdefault("rate_limiter", RedisRateLimiter(r, prefix=prefix))
    return fake.client(**kwargs)


async def test_a_black_holed_redis_fails_every_call_within_its_time_limit(
    proxy: TcpProxy,
    redis_prefix: str,  # noqa: F811 - the fixture
) -> None:
    # redis-py 5+ has no socket timeout by default: only op_timeout bounds a call.
    r = aioredis.Redis.from_url(proxy.url())
    async with FakeWeCom(customers=50, rate_limits=()) as fake:
        client = _client(
            fake,
            r,
            redis_prefix,
            token_store=RedisTokenStore(r, prefix=redis_prefix, op_timeout=0.5),
            rate_limiter=RedisRateLimiter(r, prefix=redis_prefix, op_timeout=0.5),
            rate_limit=RateLimit(100, 1.0),
            retry=RetryPolicy(max_attempts=2, backoff_base=0.05, backoff_max=0.1),
        )
        async with client:
            await client.external_contact.get(fake.corp.customer_id(1))  # Redis answers
            before = fake.stats.calls
            proxy.stall()
            started = time.monotonic()
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(client.external_contact.get(fake.corp.customer_id(i)) for i in range(20)),
                    return_exceptions=True,
                ),
                timeout=10,
            )
            elapsed = time.monotonic() - started
            proxy.resume()
    assert all(isinstance(e, WeComStoreError) and e.unreachable for e in results), results
    assert any("did not answer" in str(e) for e in results)
    # Two attempts of one 0.5 s limit each (callers queued behind a timed-out one
    # fail with it), plus the backoff: well under the 10 s the stall lasted.
    assert elapsed < 2.5
    assert fake.stats.calls == before  # nothing went out without the shared budget
    await r.aclose()


async def test_a_thousand_calls_on_a_100_connection_pool_neither_fail_nor_fall_back(
    proxy: TcpProxy,
    redis_prefix: str,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = aioredis.Redis.from_url(proxy.url())  # the README's pool: 100 connections
    assert r.connection_pool.max_connections == 100
    limit = RateLimit(500, 1.0)
    async with FakeWeCom(customers=1100, rate_limits=[(500, 1.0)], latency=(0.0, 0.01)) as fake:
        for wrapped in (False, True):
            store: Any = RedisTokenStore(r, prefix=redis_prefix)
            limiter: Any = RedisRateLimiter(r, prefix=redis_prefix)
            if wrapped:
                store, limiter = FallbackTokenStore(store), FallbackRateLimiter(limiter)
            async with _client(
                fake, r, redis_prefix, token_store=store, rate_limiter=limiter, rate_limit=limit
            ) as client:
                with caplog.at_level(logging.WARNING, logger="wecom_async"):
                    results = await asyncio.gather(
                        *(
                            client.external_contact.get(fake.corp.customer_id(i))
                            for i in range(1000)
                        ),
                        return_exceptions=True,
                    )
            assert [e for e in results if isinstance(e, BaseException)] == []
            assert _warnings(caplog, "unreachable") == []  # no fallback
    assert fake.stats.violations == 0
    assert fake.stats.max_in_window[(PATH, 1.0)] <= 500
    await r.aclose()


async def test_500_waiters_make_at_most_10_redis_commands_per_request(
    proxy: TcpProxy,
    redis_prefix: str,  # noqa: F811 - the fixture
) -> None:
    r = aioredis.Redis.from_url(proxy.url())
    async with FakeWeCom(customers=600, rate_limits=(), latency=(0.0, 0.005)) as fake:
        async with _client(fake, r, redis_prefix, rate_limit=RateLimit(125, 1.0)) as client:
            await asyncio.gather(
                *(client.external_contact.get(fake.corp.customer_id(i)) for i in range(500))
            )
            requests = client.stats.requests
    per_request = proxy.commands / requests
    print(f"{proxy.commands} Redis commands for {requests} requests: {per_request:.2f} each")
    assert requests >= 500
    assert per_request <= 10
    await r.aclose()


async def _load(
    client: WeComClient, fake: FakeWeCom, *, rate: float, seconds: float
) -> list[BaseException | None]:
    """Start ``rate`` calls a second for ``seconds``; the outcome of each."""

    async def one(i: int) -> BaseException | None:
        try:
            await client.external_contact.get(fake.corp.customer_id(i % 1000))
        except Exception as exc:
            return exc
        return None

    tasks = []
    started = time.monotonic()
    for i in range(int(rate * seconds)):
        # Pacing the load (an open-loop generator), not waiting for a result.
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        tasks.append(asyncio.ensure_future(one(i)))
    return await asyncio.gather(*tasks)


async def _refuse_for(proxy: TcpProxy, fake: FakeWeCom, *, after: int, seconds: float) -> None:
    while len(fake.calls_to(PATH)) < after:  # noqa: ASYNC110 - watching the fake's log
        await asyncio.sleep(0.005)
    proxy.refuse()
    await asyncio.sleep(seconds)
    proxy.resume()


async def test_local_fallback_through_a_2s_refusal_never_overspends_and_warns_once_each_way(
    proxy: TcpProxy,
    redis_prefix: str,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = aioredis.Redis.from_url(proxy.url())
    async with FakeWeCom(customers=1000, rate_limits=[(200, 1.0)], latency=(0.0, 0.01)) as fake:
        client = _client(
            fake,
            r,
            redis_prefix,
            token_store=FallbackTokenStore(RedisTokenStore(r, prefix=redis_prefix)),
            rate_limiter=FallbackRateLimiter(RedisRateLimiter(r, prefix=redis_prefix)),
            rate_limit=RateLimit(200, 1.0),
        )
        async with client:
            with caplog.at_level(logging.WARNING, logger="wecom_async"):
                outage = asyncio.ensure_future(_refuse_for(proxy, fake, after=300, seconds=2.0))
                results = await _load(client, fake, rate=300, seconds=5)
                await outage
    print(f"busiest second: {fake.stats.max_in_window[(PATH, 1.0)]} calls (limit 200)")
    assert [e for e in results if e is not None] == []
    assert fake.stats.violations == 0
    assert fake.stats.max_in_window[(PATH, 1.0)] <= 200
    assert len(_warnings(caplog, "<RedisRateLimiter")) == 2, caplog.text  # down, then back
    assert len(_warnings(caplog, "RedisRateLimiter prefix=")) == 2
    assert len(_warnings(caplog, "shares it again")) == len(_warnings(caplog, "is unreachable"))
    assert len(caplog.records) <= 4, caplog.text  # the token store at most twice more
    await r.aclose()


async def test_slots_taken_alone_are_reported_to_redis_when_it_is_back(
    proxy: TcpProxy,
    redis_prefix: str,  # noqa: F811 - the fixture
) -> None:
    r = aioredis.Redis.from_url(proxy.url())
    shared = RedisRateLimiter(r, prefix=redis_prefix)
    limiter = FallbackRateLimiter(shared, probe_interval=0.05)
    limits = (RateLimit(3, 0.5), RateLimit(1000, 2.0))
    proxy.refuse()
    slots = [await limiter.acquire("corp", "path", limits) for _ in range(3)]
    slots[0].release()  # one answered while Redis is down; two still in flight
    proxy.resume()
    await asyncio.wait_for(limiter.back.wait(), 5)
    direct = aioredis.Redis.from_url(REDIS_URL)
    keys = shared._keys("corp", "path", limits)
    assert [await direct.zcard(k) for k in keys] == [3, 3]
    # The in-flight ones end in Redis like any other slot.
    for slot in slots[1:]:
        slot.release()
    await limiter.flush()
    now_us = int(time.time() * 1_000_000)
    scores = [s for _, s in await direct.zrange(keys[1], 0, -1, withscores=True)]
    assert all(now_us + 1_000_000 < s <= now_us + 2_100_000 for s in scores)
    await direct.aclose()
    await r.aclose()


async def test_what_a_2s_refusal_does_to_the_default_retry_policy(
    proxy: TcpProxy,
    redis_prefix: str,  # noqa: F811 - the fixture
) -> None:
    """The README's figure: no fallback, the default RetryPolicy, a 2 s refusal."""
    r = aioredis.Redis.from_url(proxy.url())
    async with FakeWeCom(customers=1000, rate_limits=[(200, 1.0)], latency=(0.0, 0.01)) as fake:
        async with _client(fake, r, redis_prefix, rate_limit=RateLimit(200, 1.0)) as client:
            outage = asyncio.ensure_future(_refuse_for(proxy, fake, after=300, seconds=2.0))
            results = await _load(client, fake, rate=300, seconds=5)
            await outage
    failed = [e for e in results if e is not None]
    print(f"{len(failed)} of {len(results)} calls failed; busiest second "
          f"{fake.stats.max_in_window[(PATH, 1.0)]}")  # fmt: skip
    assert all(isinstance(e, WeComStoreError) for e in failed)
    assert fake.stats.violations == 0
    assert len(failed) <= len(results) // 100  # what the README says
    await r.aclose()


async def test_a_45009_in_one_process_pauses_the_others(
    redis_prefix: str,  # noqa: F811 - the fixture
    server: TinyServer,
) -> None:
    # WeCom blocks the API for every app and process of the corp: a process that did
    # not meet the 45009 itself must wait the pause out too, not walk into the block.
    answered_45009 = 0.0

    def first_blocked(request: web.Request) -> web.Response:
        nonlocal answered_45009
        if not answered_45009:
            answered_45009 = time.monotonic()
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        return web.json_response({"errcode": 0, "external_userid": ["wm1"]})

    server.route = first_blocked
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.redis_pause_worker",
        REDIS_URL, redis_prefix, server.base_url,
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert other.stdout is not None and other.stdin is not None
    try:
        assert await asyncio.wait_for(other.stdout.readline(), 30) == b"ready\n"
        r = aioredis.Redis.from_url(REDIS_URL)
        policy = RetryPolicy(max_attempts=1, backoff_max=2.0)
        async with WeComClient(
            CORP_ID,
            SECRET,
            base_url=server.base_url,
            rate_limiter=RedisRateLimiter(r, prefix=redis_prefix),
            retry=policy,
        ) as client:
            with pytest.raises(WeComRateLimitError):
                await client.external_contact.list("u")  # meets the 45009: a 2 s pause
        await r.aclose()
        other.stdin.write(b"go\n")
        await other.stdin.drain()
        line = await asyncio.wait_for(other.stdout.readline(), 30)
        assert line == b"result ['wm1']\n"
    finally:
        if other.returncode is None:
            other.kill()
        await other.wait()
    data = [a.at for a in server.arrivals if a.path != "gettoken"]
    assert len(data) == 2
    assert data[1] - answered_45009 >= 1.9, (
        f"the other process called {data[1] - answered_45009:.2f}s after"
    )
