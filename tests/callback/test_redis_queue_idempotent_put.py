"""RedisStreamQueue.put counts a callback once, whatever happens to Redis's answers.

A put whose request reached Redis and whose answer was lost (the connection
dropped, or the answer came too late) is repeated; the repeat must learn that the
entry is its own (True, one entry), and a put of the same callback by any other
put must be a duplicate (False).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlencode, urlparse

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.callback.conftest import make_crypto, pusher_to
from tests.callback.test_receiver import Recorder, change
from tests.callback.test_redis_queue import redis  # noqa: F401 - a fixture
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_redis import REDIS_URL
from wecom_async import WeComStoreError
from wecom_async.callback import CallbackReceiver, RedisStreamQueue, parse_event


class AnswerLosingProxy(TcpProxy):
    """A :class:`TcpProxy` that forwards every request but can lose the next answer.

    ``drop_next_answer``: the next answer from Redis is not passed on; the
    connection is cut instead. ``hold_answers``: answers wait until ``release``.
    """

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self._drop = False
        self.dropped = 0
        self._answers = asyncio.Event()
        self._answers.set()
        self.held = 0

    def drop_next_answer(self) -> None:
        self._drop = True

    def hold_answers(self) -> None:
        self._answers.clear()

    def release(self) -> None:
        self._answers.set()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        if count:  # requests: forwarded as they come
            await super()._pipe(reader, writer, count=count)
            return
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self._drop:
                    self._drop = False
                    self.dropped += 1
                    return  # the proxy then cuts both sides: Redis answered, nobody heard
                if not self._answers.is_set():
                    self.held += 1
                    await self._answers.wait()
                writer.write(data)
                await writer.drain()


@pytest.fixture
async def proxy() -> AsyncIterator[AnswerLosingProxy]:
    target = urlparse(REDIS_URL)
    tcp = AnswerLosingProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await tcp.start()
    yield tcp
    await tcp.aclose()


async def entries(r: aioredis.Redis, queue: RedisStreamQueue) -> int:
    return int(await r.xlen(queue.stream))


@pytest.mark.parametrize("redis_py_retries", [True, False], ids=["default-client", "no-retries"])
async def test_a_put_whose_answer_was_lost_is_repeated_and_counts_once(
    redis: tuple[aioredis.Redis, str],  # noqa: F811 - the fixture
    proxy: AnswerLosingProxy,
    redis_py_retries: bool,
) -> None:
    direct, prefix = redis
    # Whatever redis-py's own retry policy (it differs between versions), with none
    # at all RedisOps repeats the operation once on a fresh connection.
    if redis_py_retries:
        r = aioredis.Redis.from_url(proxy.url())
    else:
        r = aioredis.Redis.from_url(proxy.url(), retry=Retry(NoBackoff(), 0))
    try:
        queue = RedisStreamQueue(r, prefix=prefix, op_timeout=2.0)
        event = parse_event(change(1))
        assert await queue.put("warm", parse_event(change(0)))  # the group and the script
        connections = proxy.connections
        proxy.drop_next_answer()
        assert await queue.put("k", event) is True  # its own entry: fresh
        assert proxy.dropped == 1  # Redis answered the script: it ran, and nobody heard
        assert proxy.connections == connections + 1  # repeated on a fresh connection
        assert await entries(direct, queue) == 2  # "warm" and "k": one entry for "k"
        other = RedisStreamQueue(direct, prefix=prefix, consumer="other")
        assert await other.put("k", event) is False  # WeCom's retry at another worker
        assert await queue.put("k", event) is False  # or at this one, later
        assert await entries(direct, queue) == 2
    finally:
        await r.aclose()


async def test_a_put_that_timed_out_after_landing_counts_once_when_repeated(
    redis: tuple[aioredis.Redis, str],  # noqa: F811 - the fixture
    proxy: AnswerLosingProxy,
) -> None:
    direct, prefix = redis
    r = aioredis.Redis.from_url(proxy.url())
    try:
        queue = RedisStreamQueue(r, prefix=prefix, op_timeout=0.3)
        event = parse_event(change(1))
        assert await queue.put("warm", parse_event(change(0)))
        proxy.hold_answers()
        with pytest.raises(WeComStoreError, match="did not answer"):
            await queue.put("k", event)  # landed; its answer came too late
        assert proxy.held >= 1
        assert await entries(direct, queue) == 2  # it did land
        proxy.release()
        # WeCom's retry reaches this process: the repeat learns the entry is its own.
        assert await queue.put("k", event) is True
        assert await entries(direct, queue) == 2
        other = RedisStreamQueue(direct, prefix=prefix, consumer="other")
        assert await other.put("k", event) is False
        assert await queue.put("k", event) is False
    finally:
        await r.aclose()


async def test_two_puts_of_one_callback_at_once_count_once(
    redis: tuple[aioredis.Redis, str],  # noqa: F811 - the fixture
) -> None:
    # The same callback twice at once in one process (WeCom pushes a duplicate, or
    # retries while the first POST is still queueing): one is fresh, one a duplicate.
    r, prefix = redis
    queue = RedisStreamQueue(r, prefix=prefix)
    event = parse_event(change(1))
    assert await queue.put("warm", parse_event(change(0)))
    both = await asyncio.gather(queue.put("k", event), queue.put("k", event))
    assert await entries(r, queue) == 2  # one entry for "k"
    assert sorted(both) == [False, True], both


async def test_two_posts_of_one_callback_at_once_are_received_once(
    redis: tuple[aioredis.Redis, str],  # noqa: F811 - the fixture
) -> None:
    r, prefix = redis
    handler = Recorder()
    queue = RedisStreamQueue(r, prefix=prefix, block=0.05)
    receiver = CallbackReceiver(make_crypto(), handler, queue=queue, drain_timeout=1.0)
    async with pusher_to("http://unused") as pusher:
        first, second = pusher.body(change(1)), pusher.body(change(1))  # WeCom's two tries
    async with receiver:
        answers = await asyncio.gather(
            *(receiver.respond("POST", urlencode(params), body) for params, body in (first, second))
        )
        assert [status for status, _ in answers] == [200, 200]
        await handler.wait_for(1)
    assert len(handler.events) == 1
    stats = receiver.stats
    assert (stats.received, stats.duplicates, stats.handled) == (1, 1, 1), stats
