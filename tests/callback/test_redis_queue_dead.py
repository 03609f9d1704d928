"""The dead stream is trimmed: a flood of poison callbacks cannot fill Redis.

``XADD ... MAXLEN ~ n`` trims whole radix-tree nodes only (``stream-node-max-entries``,
100 by default), so the dead stream may hold up to about ``n + 100`` entries; it
must never keep all of them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.callback.conftest import make_crypto
from tests.callback.test_receiver import Recorder, change
from tests.callback.test_redis_queue import pending, redis  # noqa: F401 - a fixture
from wecom_async.callback import (
    CallbackReceiver,
    ExternalContactEvent,
    RedisStreamQueue,
    parse_event,
)

POISON = 200
DEAD_MAXLEN = 10
#: Entries one radix-tree node of a stream holds (Redis's stream-node-max-entries).
NODE = 100


async def test_200_poison_events_leave_a_dead_stream_of_about_dead_maxlen(
    redis: tuple[aioredis.Redis, str],  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, prefix = redis
    config: Any = await r.config_get("stream-node-max-entries")
    node = int(config["stream-node-max-entries"])
    assert node == NODE  # the bound below assumes Redis's default
    handler = Recorder(fail=lambda e: True)
    queue = RedisStreamQueue(
        r, prefix=prefix, claim_idle=0.1, block=0.05, max_deliveries=1, dead_maxlen=DEAD_MAXLEN
    )
    events = [parse_event(change(n)) for n in range(POISON)]
    assert all(await asyncio.gather(*(queue.put(e.dedup_key, e) for e in events)))
    longest = 0
    with caplog.at_level(logging.ERROR, logger="wecom_async"):
        async with CallbackReceiver(make_crypto(), handler, queue=queue, concurrency=8):

            async def buried() -> None:
                nonlocal longest
                # Watching Redis: the buryings have no event to await.
                while await r.xlen(queue.stream):
                    longest = max(longest, await r.xlen(queue.dead_stream))
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(buried(), 30)
    dead = await r.xlen(queue.dead_stream)
    print(f"dead stream: {dead} entries at the end, {longest} at most seen (maxlen ~{DEAD_MAXLEN})")
    assert max(dead, longest) <= DEAD_MAXLEN + NODE
    assert dead >= DEAD_MAXLEN  # trimming keeps at least maxlen
    assert await pending(queue, r) == 0
    # Each was delivered once (max_deliveries=1), failed, and was buried when claimed.
    got = collections.Counter(
        e.external_user_id for e in handler.events if isinstance(e, ExternalContactEvent)
    )
    assert len(got) == POISON and set(got.values()) == {1}
    assert sum("moved to" in rec.getMessage() for rec in caplog.records) == POISON
    # What the dead stream kept is the newest burials, each naming its entry and cause.
    last: Any = await r.xrevrange(queue.dead_stream, count=1)
    assert last[0][1][b"why"] == b"failed 1 deliveries"
