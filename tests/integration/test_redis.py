"""Many processes, one corp: the token and the rate budget shared through a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from wecom_async import AccessToken, RateLimit, WeComStoreError
from wecom_async._token import TokenManager
from wecom_async.redis import (
    FallbackRateLimiter,
    FallbackTokenStore,
    RedisRateLimiter,
    RedisTokenStore,
)
from wecom_async.testing import FakeWeCom

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]


async def _reachable(url: str) -> bool:
    r = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(await r.ping())
    except Exception:
        return False
    finally:
        await r.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, and its keys deleted afterwards."""
    if not await _reachable(REDIS_URL):
        if os.environ.get("CI"):
            pytest.fail(f"no Redis answers at {REDIS_URL}; .ci/run should have started one")
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"wecom-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    r = aioredis.Redis.from_url(REDIS_URL)
    keys = [k async for k in r.scan_iter(match=f"{prefix}:*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


async def run_workers(
    fake: FakeWeCom,
    redis_url: str,
    prefix: str,
    *,
    workers: int = 4,
    calls: int = 50,
    extra: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Start ``workers`` OS processes together, each making ``calls`` concurrent fetches."""
    start_at = time.time() + 1.5  # time for every interpreter to start
    procs = []
    for w in range(workers):
        ids = [fake.corp.customer_id(10 + w * calls + i) for i in range(calls)]
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.integration.redis_worker",
                "--base-url",
                fake.base_url,
                "--corp-id",
                fake.corp_id,
                "--secret",
                fake.corp_secret,
                "--redis",
                redis_url,
                "--prefix",
                prefix,
                "--ids",
                json.dumps(ids),
                "--start-at",
                str(start_at),
                *extra,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    results = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


PATH = "externalcontact/get"


async def test_four_processes_make_one_gettoken_and_never_exceed_the_window(
    redis_prefix: str,
) -> None:
    async with FakeWeCom(customers=400, rate_limits=[(20, 0.5)], latency=(0.0, 0.02)) as fake:
        results = await run_workers(fake, REDIS_URL, redis_prefix)
    assert [len(r["got"]) for r in results] == [50] * 4
    assert all(r["errors"] == {} for r in results)
    assert fake.stats.gettoken_calls == 1
    assert fake.stats.violations == 0
    assert fake.stats.max_in_window[(PATH, 0.5)] == 20  # the budget was used, never passed


async def test_a_token_revoked_mid_run_is_refreshed_once_across_processes(
    redis_prefix: str,
) -> None:
    async with FakeWeCom(customers=400, latency=(0.005, 0.03)) as fake:

        async def revoke_after(n: int) -> None:
            while len(fake.calls_to(PATH)) < n:  # noqa: ASYNC110 - watching the fake's log
                await asyncio.sleep(0.002)
            fake.revoke_token()

        revoker = asyncio.create_task(revoke_after(60))
        results = await run_workers(fake, REDIS_URL, redis_prefix, extra=("--limit", "100000"))
        await revoker
    assert [len(r["got"]) for r in results] == [50] * 4
    assert any(c.errcode == 40014 for c in fake.calls_to(PATH))
    assert fake.stats.tokens_issued == 2
    assert fake.stats.gettoken_calls == 2  # one refresh for all four processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, so that it can be killed and restarted."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


async def test_redis_restarted_mid_run_completes_with_local_fallback(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    # A server-side limit too: Redis forgets its windows when it restarts, so some
    # 45009 may follow; the run must still complete (the retries absorb them).
    async with FakeWeCom(customers=400, rate_limits=[(40, 0.5)], latency=(0.01, 0.03)) as fake:

        async def bounce() -> None:
            while len(fake.calls_to(PATH)) < 40:  # noqa: ASYNC110 - watching the fake's log
                await asyncio.sleep(0.002)
            private_redis.kill()
            await asyncio.sleep(0.5)
            private_redis.start()

        bouncer = asyncio.create_task(bounce())
        results = await run_workers(
            fake,
            private_redis.url,
            "bounce",
            extra=("--on-error", "local", "--share", "0.25", "--limit", "40", "--attempts", "8"),
        )
        await bouncer
    assert [len(r["got"]) for r in results] == [50] * 4
    assert all(r["errors"] == {} for r in results)


async def test_redis_gone_fails_with_the_configured_clear_error(
    private_redis: PrivateRedis,
) -> None:
    async with FakeWeCom(customers=400, rate_limits=()) as fake:
        private_redis.kill()  # gone before the workers start, and stays gone
        results = await run_workers(
            fake, private_redis.url, "gone", workers=2, calls=5, extra=("--attempts", "2")
        )
    for r in results:
        assert r["got"] == []
        assert list(r["errors"]) and all(
            e.startswith("WeComStoreError: Redis is unreachable") for e in r["errors"]
        )
    assert fake.stats.calls == 0  # nothing reached WeCom without the shared budget


# -- the store and limiter on their own, against the real Redis --


async def test_invalidate_compares_across_stores(redis_prefix: str) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    a = RedisTokenStore(r, prefix=redis_prefix)
    b = RedisTokenStore(r, prefix=redis_prefix)  # as another process would hold
    await a.set("k", AccessToken("NEW", time.time() + 100))
    await b.invalidate("k", "OLD")
    assert (await a.get("k")) == AccessToken("NEW", pytest.approx(time.time() + 100, abs=5))  # type: ignore[arg-type]
    ttl = await r.pttl(f"{redis_prefix}:token:k")
    assert 90_000 < ttl <= 100_000
    await b.invalidate("k", "NEW")
    assert await a.get("k") is None
    await r.aclose()


async def test_a_client_that_decodes_responses_works_too(redis_prefix: str) -> None:
    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    store = RedisTokenStore(r, prefix=redis_prefix)
    await store.set("k", AccessToken("T", time.time() + 100))
    token = await store.get("k")
    assert token is not None and token.value == "T"
    await r.aclose()


async def test_refresh_is_one_flight_across_managers(redis_prefix: str) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    fetches = 0

    async def fetch() -> tuple[str, float]:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.1)
        return f"T{fetches}", 7200

    managers = [TokenManager("k", RedisTokenStore(r, prefix=redis_prefix)) for _ in range(5)]
    assert await asyncio.gather(*(m.get(fetch) for m in managers)) == ["T1"] * 5
    assert fetches == 1
    await r.aclose()


async def test_unreachable_redis_raises_or_falls_back_as_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = aioredis.Redis.from_url(f"redis://127.0.0.1:{_free_port()}/0", socket_connect_timeout=0.5)
    with pytest.raises(WeComStoreError, match="Redis is unreachable for the token store"):
        await RedisTokenStore(r).get("k")
    limits = (RateLimit(2, 0.1),)
    with pytest.raises(WeComStoreError, match="rate limiter") as raised:
        await RedisRateLimiter(r).acquire("corp", "path", limits)
    assert raised.value.unreachable and raised.value.retryable

    with caplog.at_level(logging.WARNING, logger="wecom_async"):
        store = FallbackTokenStore(RedisTokenStore(r))
        await store.set("k", AccessToken("T", time.time() + 100))
        assert (await store.get("k")) is not None
        limiter = FallbackRateLimiter(RedisRateLimiter(r))
        # The local window starts spent: the first slot comes one period later.
        started = time.monotonic()
        slot = await limiter.acquire("corp", "path", limits)
        assert time.monotonic() - started >= 0.09
        slot.release()
        await limiter.flush()
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len([w for w in warnings if "RedisTokenStore" in w]) == 1  # once per outage
    assert len([w for w in warnings if "RedisRateLimiter" in w]) == 1
    await r.aclose()


async def test_equal_limits_share_one_budget_and_one_cluster_slot() -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    limiter = RedisRateLimiter(r, prefix="p")
    a = limiter._keys("corp", "x/y", (RateLimit(5, 2), RateLimit(100, 60)))
    b = limiter._keys("corp", "x/y", (RateLimit(5, 2.0), RateLimit(100, 60.0)))
    assert a == b
    # Every key of one (corp, path) carries the same hash tag.
    assert {k[: k.index("}") + 1] for k in a} == {"{p:corp:x/y}"}
    await r.aclose()


async def test_cancelled_callers_leave_no_lock_and_no_stuck_slot(redis_prefix: str) -> None:
    rng = random.Random(8)
    r = aioredis.Redis.from_url(REDIS_URL)
    limit = RateLimit(30, 0.5)
    async with FakeWeCom(customers=500, latency=(0.0, 0.02)) as fake:
        client = fake.client(
            token_store=RedisTokenStore(r, prefix=redis_prefix),
            rate_limiter=RedisRateLimiter(r, prefix=redis_prefix),
            rate_limit=limit,
        )
        ids = [fake.corp.customer_id(i) for i in range(10, 500)]
        cancelled = 0
        for i in range(150):
            if i % 15 == 0:
                fake.revoke_token()  # cancellations then land in refreshes and lock waits
            task = asyncio.ensure_future(client.external_contact.get(rng.choice(ids)))
            await asyncio.sleep(rng.uniform(0, 0.02))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
                cancelled -= 1
            cancelled += 1
        assert cancelled > 50
        # aclose() while a refresh is under way.
        fake.revoke_token()
        pending = asyncio.ensure_future(client.external_contact.get(ids[0]))
        await asyncio.sleep(0.005)
        await client.aclose()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pending
        await asyncio.sleep(0.05)  # let the background give-backs land

        assert [k async for k in r.scan_iter(match=f"{redis_prefix}:token-lock:*")] == []
        now_us = int(time.time() * 1_000_000)
        for key in [k async for k in r.scan_iter(match=f"{{{redis_prefix}:*")]:
            scores = [s for _, s in await r.zrange(key, 0, -1, withscores=True)]
            # Released slots end within a period; a lost one would sit on its lease.
            assert all(s <= now_us + 2_000_000 for s in scores), key

        async with fake.client(
            token_store=RedisTokenStore(r, prefix=redis_prefix),
            rate_limiter=RedisRateLimiter(r, prefix=redis_prefix),
            rate_limit=limit,
        ) as again:
            assert (await again.external_contact.get(ids[1])).external_contact.external_userid
    await r.aclose()


async def test_a_caller_cancelled_while_its_slot_is_taken_gives_it_back(
    redis_prefix: str,
) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    limiter = RedisRateLimiter(r, prefix=redis_prefix)
    script = limiter._acquire
    taken = asyncio.Event()

    async def slow_script(**kwargs: Any) -> Any:
        result = await script(**kwargs)  # the slot is taken in Redis...
        taken.set()
        await asyncio.sleep(1)  # ...and the caller is cancelled before hearing of it
        return result

    limiter._acquire = slow_script  # type: ignore[assignment]
    limits = (RateLimit(5, 10.0),)
    task = asyncio.ensure_future(limiter.acquire("corp", "path", limits))
    await taken.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await limiter.flush()
    (key,) = limiter._keys("corp", "path", limits)
    assert await r.zcard(key) == 0
    await r.aclose()


async def test_a_refresh_cancelled_while_taking_the_lock_leaves_no_lock(
    redis_prefix: str,
) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    store = RedisTokenStore(r, prefix=redis_prefix)
    make_lock = r.lock
    taken = asyncio.Event()

    def slow_lock(*args: Any, **kwargs: Any) -> Any:
        lock = make_lock(*args, **kwargs)
        acquire = lock.acquire

        async def slow_acquire(**kw: Any) -> bool:
            got = bool(await acquire(**kw))  # Redis holds the lock in our name...
            taken.set()
            await asyncio.sleep(1)  # ...when the caller is cancelled
            return got

        lock.acquire = slow_acquire  # type: ignore[method-assign]
        return lock

    r.lock = slow_lock  # type: ignore[method-assign]

    async def refresh() -> None:
        async with store.refresh_lock("k"):
            pass

    task = asyncio.ensure_future(refresh())
    await taken.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # the give-back runs in the background
    assert await r.exists(f"{redis_prefix}:token-lock:k") == 0
    await r.aclose()
