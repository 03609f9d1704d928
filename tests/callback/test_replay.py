"""A captured callback POST replayed byte for byte, over a real socket through aiohttp
and uvicorn: a duplicate inside the replay window, refused outside it.

Time is moved with the crypto's ``clock``, not slept through.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from tests.callback.conftest import make_crypto
from tests.callback.forge import signed_callback
from tests.callback.raw_http import RawAnswer, exchange, request_head, target
from tests.callback.test_receiver import Recorder, change
from wecom_async import WeComInputError
from wecom_async.callback import CallbackReceiver, MemoryQueue

Serve = Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]


class Clock:
    """Seconds since the epoch, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _replay(url: str, query: str, body: bytes) -> RawAnswer:
    to = target(url, query)
    head = request_head("POST", to, [("Content-Length", str(len(body)))])
    return await exchange(to, [head + body], timeout=5.0)


async def test_a_replay_inside_the_window_is_a_duplicate_and_outside_it_is_refused(
    serve: Serve,
) -> None:
    sent = int(time.time())
    clock = Clock(sent)
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(clock=clock), handler)  # max_age=300
    query, body = signed_callback(change(1), timestamp=sent)  # captured once
    seen: list[tuple[float, int, str]] = []
    async with serve(receiver) as url:
        # The original, then the same bytes later and later (and from a clock
        # that is behind the sender's), then past the window either way.
        for offset in (0, 1, 299, 300, -299, -300, 301, -301, 10_000):
            clock.now = sent + offset
            answer = await _replay(url, query, body)
            seen.append((offset, answer.status, answer.text))
        await handler.wait_for(1)
    stale = "stale timestamp: outside the 300 s replay window"
    assert seen == [
        (0, 200, ""),
        (1, 200, ""),
        (299, 200, ""),
        (300, 200, ""),  # "more than max_age away" is refused; max_age itself is not
        (-299, 200, ""),
        (-300, 200, ""),
        (301, 403, stale),
        (-301, 403, stale),
        (10_000, 403, stale),
    ]
    assert len(handler.events) == 1 and handler.events[0].create_time == 1_700_000_001
    stats = receiver.stats
    assert (stats.received, stats.duplicates, stats.rejected, stats.handled) == (1, 5, 3, 1)


@pytest.mark.parametrize(
    "timestamp",
    [
        0,
        1,
        86_400,  # 1970-01-02
        4_102_444_800,  # 2100-01-01
        253_402_300_799,  # 9999-12-31
        "9" * 400,  # an integer, but too large for a float
        "-" + "9" * 400,
        "1e9",  # not an integer
        "",
    ],
    ids=["0", "1", "1970", "2100", "9999", "huge", "huge-negative", "1e9", "empty"],
)
async def test_a_properly_signed_timestamp_from_another_age_gets_403(
    serve: Serve, timestamp: int | str
) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    query, body = signed_callback(change(1), timestamp=timestamp)
    async with serve(receiver) as url:
        answer = await _replay(url, query, body)
    assert answer.status == 403, answer
    assert answer.text.startswith(("stale timestamp", "bad timestamp")), answer.text
    assert handler.events == [] and receiver.stats.received == 0


async def test_a_queue_that_forgets_inside_twice_the_window_is_refused() -> None:
    handler = Recorder()
    # A timestamp up to max_age ahead of the clock when first seen stays good
    # until max_age behind it: the queue must remember it for 2 x max_age.
    for max_age, ttl in ((300, 599.0), (300, 300.0), (300, 1.0), (60, 119.5)):
        with pytest.raises(WeComInputError, match="dedup_ttl"):
            CallbackReceiver(
                make_crypto(max_age=max_age), handler, queue=MemoryQueue(dedup_ttl=ttl)
            )
    for max_age, ttl in ((300, 600.0), (60, 120.0)):  # exactly enough is enough
        receiver = CallbackReceiver(
            make_crypto(max_age=max_age), handler, queue=MemoryQueue(dedup_ttl=ttl)
        )
        assert receiver.queue.dedup_ttl == ttl  # type: ignore[attr-defined]
    # No window: nothing to outlive.
    CallbackReceiver(make_crypto(max_age=None), handler, queue=MemoryQueue(dedup_ttl=1.0))
