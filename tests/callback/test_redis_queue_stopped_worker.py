"""A worker frozen (SIGSTOP) past ``claim_idle`` while its handler holds a callback.

Another worker claims the callback and handles it; then the first is thawed
(SIGCONT), its handler finishes and it acknowledges too. The documented contract is
at-least-once: the callback may be handled twice, must never be lost, and the
stream ends empty with nothing pending. What the thawed worker's renewal does to
the other worker's claim is observed (and printed) on the way.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import redis.asyncio as aioredis

from tests.callback.conftest import make_crypto
from tests.callback.own_redis import OwnRedis, own_redis  # noqa: F401 - a fixture
from tests.callback.test_receiver import Recorder, change
from tests.callback.test_redis_queue import eventually, pending
from wecom_async.callback import (
    CallbackReceiver,
    ExternalContactEvent,
    RedisStreamQueue,
    parse_event,
)

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "stopped"
CLAIM_IDLE = 1.0
#: How long the thawed worker is watched: three of its renewal periods, and more.
WATCH = CLAIM_IDLE * 1.5


class FrozenWorker:
    """``tests.callback.stopped_worker`` in a process of its own (consumer ``first``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, "the worker exited"
        return raw.decode().strip()

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
async def first(own_redis: OwnRedis) -> AsyncIterator[FrozenWorker]:  # noqa: F811 - fixture
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.callback.stopped_worker", "--redis", own_redis.url,
        "--prefix", PREFIX, "--claim-idle", str(CLAIM_IDLE),
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    worker = FrozenWorker(proc)
    try:
        assert await worker.line() == "ready"
        yield worker
    finally:
        if proc.returncode is None:
            proc.kill()  # SIGKILL ends it frozen or not
            await proc.wait()


@pytest.fixture
async def client(own_redis: OwnRedis) -> AsyncIterator[aioredis.Redis]:  # noqa: F811 - fixture
    r = aioredis.Redis.from_url(own_redis.url)
    yield r
    await r.aclose()


@attrs.define
class Seen:
    """What happened, for the report and the assertions."""

    owners_after_thaw: list[str] = attrs.Factory(list)
    """The consumer holding the callback, each time it changed after the thaw."""
    first_ack: str = ""
    first_stats: str = ""
    second_handled: int = 0
    second_failed: int = 0
    xack: dict[str, int] = attrs.Factory(dict)


async def holder(r: aioredis.Redis, queue: RedisStreamQueue) -> tuple[str, int] | None:
    """Which consumer holds the one pending callback, and its delivery count."""
    info = await r.xpending_range(queue.stream, queue.group, "-", "+", 1)
    if not info:
        return None
    consumer = info[0]["consumer"]
    name = consumer.decode() if isinstance(consumer, bytes) else str(consumer)
    return name, int(info[0]["times_delivered"])


async def stop_past_claim_idle(
    first: FrozenWorker, r: aioredis.Redis, *, second_finishes_before_the_thaw: bool
) -> Seen:
    seen = Seen()
    putter = RedisStreamQueue(r, prefix=PREFIX, consumer="putter")
    assert await putter.put("k", parse_event(change(1)))
    assert await first.line() == f"handling wm{1:030d}"
    assert await holder(r, putter) == ("first", 1)

    first.freeze()
    second = Recorder(hold=not second_finishes_before_the_thaw)
    queue = RedisStreamQueue(r, prefix=PREFIX, consumer="second", claim_idle=CLAIM_IDLE, block=0.1)
    receiver = CallbackReceiver(make_crypto(), second, queue=queue, concurrency=1)
    async with receiver:
        await second.wait_for(1)  # claimed once idle claim_idle: the first is frozen
        if second_finishes_before_the_thaw:
            await eventually(lambda: r.xlen(queue.stream), 0)  # handled and acknowledged
        else:
            assert await holder(r, queue) == ("second", 2)

        first.thaw()
        loop = asyncio.get_running_loop()
        until = loop.time() + WATCH
        last: str | None = "second" if not second_finishes_before_the_thaw else None
        while loop.time() < until:  # watching Redis: a claim has no event to await
            now = await holder(r, queue)
            name = now[0] if now else None
            if name != last and name is not None:
                seen.owners_after_thaw.append(name)
            last = name
            await asyncio.sleep(0.01)

        await first.send("finish")  # the first's handler returns, and it acknowledges
        seen.first_ack = (await first.line()).split()[0]
        second.released.set()
        await eventually(lambda: r.xlen(queue.stream), 0)
        await eventually(lambda: pending(queue, r), 0)
    seen.second_handled = receiver.stats.handled
    seen.second_failed = receiver.stats.failed
    await first.send("quit")
    seen.first_stats = await first.line()
    stats = (await r.info("commandstats")).get("cmdstat_xack", {})
    seen.xack = {k: int(stats.get(k, 0)) for k in ("calls", "failed_calls", "rejected_calls")}
    assert all(isinstance(e, ExternalContactEvent) for e in second.events)
    print(seen)
    return seen


@pytest.mark.parametrize(
    "second_finishes_before_the_thaw", [True, False], ids=["second-done", "second-running"]
)
async def test_a_worker_frozen_past_claim_idle_loses_nothing(
    first: FrozenWorker, client: aioredis.Redis, second_finishes_before_the_thaw: bool
) -> None:
    seen = await stop_past_claim_idle(
        first, client, second_finishes_before_the_thaw=second_finishes_before_the_thaw
    )
    # At least once: both handled it (the first's handler ran to its end after the
    # thaw), and both acknowledgements went through without an error.
    assert seen.second_handled == 1 and seen.second_failed == 0
    assert seen.first_stats == "stats handled=1 failed=0"
    assert seen.first_ack == "acked"
    assert seen.xack["calls"] == 2 and seen.xack["failed_calls"] == 0, seen.xack
    # (the stream empty and nothing pending: checked in stop_past_claim_idle)


async def test_a_thawed_worker_does_not_take_back_a_callback_another_claimed(
    first: FrozenWorker, client: aioredis.Redis
) -> None:
    # Its renewal re-claims "our own entries" (XCLAIM ... 0 JUSTID); one that another
    # worker claimed meanwhile is no longer its own.
    seen = await stop_past_claim_idle(first, client, second_finishes_before_the_thaw=False)
    assert seen.owners_after_thaw == [], seen.owners_after_thaw
