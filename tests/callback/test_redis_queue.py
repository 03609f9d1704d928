"""RedisStreamQueue on a real Redis: events survive failing handlers and killed workers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis.asyncio as aioredis

from tests.callback.conftest import make_crypto, pusher_to, serve_aiohttp
from tests.callback.test_receiver import Recorder, change
from tests.integration.test_redis import REDIS_URL, _reachable
from wecom_async import WeComStoreError
from wecom_async.callback import (
    CallbackReceiver,
    ExternalContactEvent,
    RedisStreamQueue,
    parse_event,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def redis() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A client and a key prefix of this test's own; its keys deleted afterwards."""
    if not await _reachable(REDIS_URL):
        if os.environ.get("CI"):
            pytest.fail(f"no Redis answers at {REDIS_URL}; .ci/run should have started one")
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"wecom-cb-test-{uuid.uuid4().hex[:10]}"
    r = aioredis.Redis.from_url(REDIS_URL)
    yield r, prefix
    keys = [k async for k in r.scan_iter(match=f"{{{prefix}:*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


async def eventually(read: Callable[[], Awaitable[int]], want: int, timeout: float = 10) -> None:
    """Poll Redis (state in another server has no event to wait on) until ``want``."""

    async def poll() -> None:
        while await read() != want:  # noqa: ASYNC110 - state in Redis has no event to await
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def pending(queue: RedisStreamQueue, r: aioredis.Redis) -> int:
    summary = await r.xpending(queue.stream, queue.group)
    return int(summary["pending"])


async def test_puts_are_deduplicated_across_workers(redis: tuple[aioredis.Redis, str]) -> None:
    r, prefix = redis
    a = RedisStreamQueue(r, prefix=prefix, consumer="a")
    b = RedisStreamQueue(r, prefix=prefix, consumer="b")
    event = parse_event(change(1))
    assert await a.put("k1", event) is True
    assert await b.put("k1", event) is False  # WeCom's retry reached another worker
    assert await b.put("k2", event) is True
    assert await r.xlen(a.stream) == 2


async def test_a_failing_handler_leaves_the_event_pending_until_it_succeeds(
    redis: tuple[aioredis.Redis, str],
) -> None:
    r, prefix = redis
    tries: list[int] = []

    def fail_twice(event: object) -> bool:
        tries.append(1)
        return len(tries) <= 2

    handler = Recorder(fail=fail_twice)
    queue = RedisStreamQueue(r, prefix=prefix, claim_idle=0.3, block=0.1)
    receiver = CallbackReceiver(make_crypto(), handler, queue=queue, concurrency=1)
    async with serve_aiohttp(receiver) as url, pusher_to(url) as pusher:
        assert [t.status for t in await pusher.push(change(1))] == [200]
        await handler.wait_for(1)
        assert await pending(queue, r) == 1  # failed: still pending, not acknowledged
        await handler.wait_for(3)  # claimed again after claim_idle, twice
        await eventually(lambda: r.xlen(queue.stream), 0)  # acknowledged, deleted
    assert receiver.stats.failed == 2 and receiver.stats.handled == 1
    assert await pending(queue, r) == 0


async def test_a_worker_killed_with_events_pending_loses_none(
    redis: tuple[aioredis.Redis, str],
) -> None:
    r, prefix = redis
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.callback.callback_worker", "--redis", REDIS_URL,
        "--prefix", prefix, "--claim-idle", "1.0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        port = int((await asyncio.wait_for(proc.stdout.readline(), 20)).split()[1])
        url = f"http://127.0.0.1:{port}/cb"
        async with pusher_to(url) as pusher:
            for n in range(3):
                assert [t.status for t in await pusher.push(change(n))] == [200]
        # The doomed worker runs two handlers (its concurrency) that never finish.
        lines = [await asyncio.wait_for(proc.stdout.readline(), 20) for _ in range(2)]
        started = {line.split()[1].decode() for line in lines}
        assert len(started) == 2
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # Another worker starts: it reads the event nobody took, and claims the two the
    # dead worker held once they have been idle for claim_idle.
    handler = Recorder()
    queue = RedisStreamQueue(r, prefix=prefix, consumer="survivor", claim_idle=1.0, block=0.1)
    async with CallbackReceiver(make_crypto(), handler, queue=queue, concurrency=2):
        await handler.wait_for(3, timeout=20)
    got = sorted(e.external_user_id for e in handler.events if isinstance(e, ExternalContactEvent))
    assert got == [f"wm{n:030d}" for n in range(3)]
    assert started <= set(got)
    assert await pending(queue, r) == 0 and await r.xlen(queue.stream) == 0


async def test_a_slow_handler_keeps_its_claim(redis: tuple[aioredis.Redis, str]) -> None:
    r, prefix = redis
    slow = Recorder(hold=True)
    other = Recorder()
    q1 = RedisStreamQueue(r, prefix=prefix, consumer="slow", claim_idle=0.3, block=0.05)
    q2 = RedisStreamQueue(r, prefix=prefix, consumer="other", claim_idle=0.3, block=0.05)
    async with CallbackReceiver(make_crypto(), slow, queue=q1, concurrency=1):
        assert await q1.put("k", parse_event(change(1)))
        await slow.wait_for(1)
        async with CallbackReceiver(make_crypto(), other, queue=q2, concurrency=1):
            # Five claim_idle periods pass while the handler runs; the renewed claim
            # keeps the other worker from taking it. Waiting on Redis's own clock:
            for _ in range(5):
                info = await r.xpending_range(q1.stream, q1.group, "-", "+", 1)
                assert info[0]["consumer"] in (b"slow", "slow")
                await asyncio.sleep(0.3)
            assert other.events == []
            slow.released.set()
    assert await pending(q1, r) == 0


async def test_a_poison_event_goes_to_the_dead_stream(redis: tuple[aioredis.Redis, str]) -> None:
    r, prefix = redis
    handler = Recorder(fail=lambda e: True)
    queue = RedisStreamQueue(r, prefix=prefix, claim_idle=0.1, block=0.05, max_deliveries=3)
    async with CallbackReceiver(make_crypto(), handler, queue=queue, concurrency=1):
        await queue.put("k", parse_event(change(1)))
        await eventually(lambda: r.xlen(queue.dead_stream), 1)
    assert len(handler.events) == 3
    assert await r.xlen(queue.stream) == 0 and await pending(queue, r) == 0


async def test_redis_down_answers_503() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    queue = RedisStreamQueue(dead)
    with pytest.raises(WeComStoreError):
        await queue.put("k", parse_event(change(1)))
    async with pusher_to("http://unused") as pusher:
        params, body = pusher.body(change(1))
    try:
        receiver = CallbackReceiver(make_crypto(), Recorder(), queue=queue, drain_timeout=0.1)
        async with receiver:
            status, _ = await receiver.respond("POST", urlencode(params), body)
        assert status == 503  # WeCom tries again later
    finally:
        await dead.aclose()
