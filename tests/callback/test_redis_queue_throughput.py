"""RedisStreamQueue reads and acknowledges in batches: counted by Redis itself.

``INFO commandstats`` is server-wide, so these tests run their own redis-server
(nothing else talks to it) and compare the counts before and after.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

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

EVENTS = 500


async def calls(r: aioredis.Redis) -> collections.Counter[str]:
    """How many times each command ran on this server so far."""
    stats = await r.info("commandstats")
    return collections.Counter(
        {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    )


@pytest.fixture
async def client(own_redis: OwnRedis) -> AsyncIterator[aioredis.Redis]:  # noqa: F811 - fixture
    r = aioredis.Redis.from_url(own_redis.url)
    yield r
    await r.aclose()


@pytest.mark.parametrize("concurrency", [8, 32])
async def test_500_events_are_read_and_acknowledged_in_batches(
    client: aioredis.Redis, concurrency: int
) -> None:
    queue = RedisStreamQueue(client, prefix="batch", block=0.2)
    events = [parse_event(change(n)) for n in range(EVENTS + 1)]
    warm = events.pop()  # the group created and the script loaded: the puts counted alone
    assert await queue.put(warm.dedup_key, warm)
    before_puts = await calls(client)
    assert await asyncio.gather(*(queue.put(e.dedup_key, e) for e in events)) == [True] * EVENTS
    before = await calls(client)
    puts = before - before_puts
    assert puts["evalsha"] == EVENTS and puts["xgroup|create"] == 0, puts
    assert await client.xlen(queue.stream) == EVENTS + 1

    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler, queue=queue, concurrency=concurrency)
    async with receiver:
        await handler.wait_for(EVENTS + 1, timeout=30)
        await eventually(lambda: client.xlen(queue.stream), 0)
        await eventually(lambda: pending(queue, client), 0)
    used = await calls(client) - before
    print(f"concurrency {concurrency}, {EVENTS} events: {dict(used)}")

    got = collections.Counter(
        e.external_user_id for e in handler.events if isinstance(e, ExternalContactEvent)
    )
    assert len(got) == EVENTS + 1 and set(got.values()) == {1}  # each handled once
    assert receiver.stats.handled == EVENTS + 1 and receiver.stats.failed == 0
    # Reads: one XREADGROUP takes up to `batch` (64) entries for every worker.
    assert used["xreadgroup"] <= EVENTS // 4, used
    # Acknowledgements: the handlers that finish together share one transaction.
    assert used["xack"] <= EVENTS // 4, used
    assert used["xdel"] == used["xack"], used
    assert used["exec"] == used["multi"] == used["xack"], used
    assert used["xclaim"] == 0 and used["evalsha"] == 0, used  # nothing renewed or put


async def test_a_burst_of_first_puts_creates_the_group_once(client: aioredis.Redis) -> None:
    # A receiver that has just started meets WeCom's burst: every put waits for the
    # consumer group; one XGROUP CREATE is enough for all of them.
    queue = RedisStreamQueue(client, prefix="burst")
    events = [parse_event(change(n)) for n in range(100)]
    before = await calls(client)
    assert all(await asyncio.gather(*(queue.put(e.dedup_key, e) for e in events)))
    used = await calls(client) - before
    assert used["xgroup|create"] == 1, used
