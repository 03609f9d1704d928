"""A callback's body split over TCP segments, or chunks, with gaps between them, over
a real socket through aiohttp and uvicorn: read whole, answered 200, handled once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from tests.callback.conftest import make_crypto
from tests.callback.forge import signed_callback
from tests.callback.raw_http import chunked, exchange, request_head, split, target
from tests.callback.test_receiver import Recorder, change
from wecom_async.callback import CallbackReceiver, ExternalContactEvent

Serve = Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]

# (framing, pieces, gap in seconds, the terminating chunk in a piece of its own).
# The gaps add up to at most 1 s: inside the 2 s read deadline. Ten pieces get a
# 5 s deadline, so that nine gaps stretched by a busy machine do not reach it.
CASES = [
    ("length", 1, 0.0, False),
    ("length", 2, 0.001, False),
    ("length", 2, 0.1, False),
    ("length", 2, 1.0, False),
    ("length", 10, 0.001, False),
    ("length", 10, 0.1, False),
    ("chunked", 2, 0.001, False),
    ("chunked", 2, 0.1, False),
    ("chunked", 2, 1.0, False),
    ("chunked", 10, 0.001, False),
    ("chunked", 10, 0.1, False),
    ("chunked", 2, 0.1, True),  # the body is whole only once the last chunk came
]


def _case_id(case: tuple[str, int, float, bool]) -> str:
    framing, pieces, gap, alone = case
    return f"{framing}-{pieces}x{gap * 1000:g}ms" + ("-end-alone" if alone else "")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
async def test_a_split_body_is_read_whole_and_handled_once(
    serve: Serve, case: tuple[str, int, float, bool]
) -> None:
    framing, count, gap, alone = case
    number = 500 + CASES.index(case)  # a distinct event for each case
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler, read_timeout=5.0 if count == 10 else 2.0)
    query, body = signed_callback(change(number))
    async with serve(receiver) as url:
        to = target(url, query)
        headers = [("Content-Type", "text/xml")]
        if framing == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
            pieces = chunked(body, count, last=not alone) + ([b"0\r\n\r\n"] if alone else [])
        else:
            headers.append(("Content-Length", str(len(body))))
            pieces = split(body, count)
        pieces[0] = request_head("POST", to, headers) + pieces[0]
        answer = await exchange(to, pieces, gap=gap)
        assert (answer.status, answer.text) == (200, "")
        # Answered only once the whole request was sent, after every gap.
        assert answer.sent == sum(map(len, pieces))
        assert answer.seconds >= gap * (len(pieces) - 1)
        await handler.wait_for(1)
    # The server is closed and the queue drained: nothing more can arrive.
    assert [e.external_user_id for e in handler.events if isinstance(e, ExternalContactEvent)] == [
        f"wm{number:030d}"
    ]
    assert len(handler.events) == 1
    stats = receiver.stats
    assert (stats.received, stats.duplicates, stats.rejected, stats.handled) == (1, 0, 0, 1)


async def test_split_bodies_on_one_keep_alive_connection(serve: Serve) -> None:
    """Three callbacks, each split, one after another on one connection: each read
    to its own end, none running into the next."""
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    numbers = [601, 602, 603]
    async with serve(receiver) as url:
        pieces: list[bytes] = []
        for number in numbers:
            query, body = signed_callback(change(number))
            to = target(url, query)
            head = request_head(
                "POST", to, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))]
            )
            parts = split(body, 3)
            parts[0] = head + parts[0]
            pieces += parts
        # Three requests pipelined in nine segments.
        answer = await exchange(to, pieces, gap=0.001, answers=3)
        assert answer.statuses == (200, 200, 200)
        assert answer.sent == sum(map(len, pieces))
        await handler.wait_for(3)
    assert sorted(e.create_time for e in handler.events) == [1_700_000_000 + n for n in numbers]
    assert receiver.stats.received == 3 and receiver.stats.rejected == 0
