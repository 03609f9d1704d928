"""Bodies that are too slow, too large or compressed, over a real socket through
aiohttp and uvicorn: refused with 408, 413 or 415, and the receiver still serves."""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest

from tests.callback.conftest import make_crypto, pusher_to
from tests.callback.forge import signed_callback
from tests.callback.raw_http import chunked, exchange, request_head, target
from tests.callback.test_receiver import Recorder, change
from wecom_async.callback import CallbackReceiver

Serve = Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]

MAX_BODY = 64 * 1024


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_dripping_body_gets_408_at_the_deadline(serve: Serve, framing: str) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler, read_timeout=0.5)
    query, body = signed_callback(change(1))
    async with serve(receiver) as url:
        to = target(url, query)
        if framing == "chunked":
            head = request_head("POST", to, [("Transfer-Encoding", "chunked")])
            drip = chunked(body, len(body))  # one byte a chunk
        else:
            head = request_head("POST", to, [("Content-Length", str(len(body)))])
            drip = [bytes([byte]) for byte in body]
        # One byte every 50 ms: the whole body would take over 25 s.
        answer = await exchange(to, [head, *drip], gap=0.05, timeout=10.0, close_within=3.0)
        assert answer.status == 408, answer
        assert "too slow" in answer.text
        # A deadline, not a speed: not before it, and well inside WeCom's 5 s.
        assert 0.5 <= answer.seconds < 3.0, answer.seconds
        assert answer.sent < len(head) + sum(map(len, drip))
        assert answer.closed is True  # the rest of the body is not waited for
        # A good callback after it is answered as ever.
        async with pusher_to(url) as pusher:
            assert [t.status for t in await pusher.push(change(2))] == [200]
        await handler.wait_for(1)
    assert [e.create_time for e in handler.events] == [1_700_000_002]
    assert receiver.stats.rejected == 1 and receiver.stats.received == 1


async def test_a_declared_oversize_body_gets_413_before_it_is_sent(serve: Serve) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    query, _ = signed_callback(change(1))
    async with serve(receiver) as url:
        to = target(url, query)
        head = request_head("POST", to, [("Content-Length", str(MAX_BODY + 1))])
        # Only the headers: the answer must not wait for a body that never comes.
        answer = await exchange(to, [head], timeout=3.0, close_within=3.0)
        assert (answer.status, answer.text) == (413, f"too large: over {MAX_BODY} bytes")
        assert answer.closed is True
    assert handler.events == [] and receiver.stats.rejected == 1


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_max_body_is_the_limit_to_the_byte(serve: Serve, framing: str) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    async with serve(receiver) as url:
        to = target(url)  # no query: a body that is read whole is refused as unsigned
        results = []
        for size in (MAX_BODY, MAX_BODY + 1):
            body = b"x" * size
            if framing == "chunked":
                head = request_head("POST", to, [("Transfer-Encoding", "chunked")])
                pieces = [head, *chunked(body, 4)]
            else:
                head = request_head("POST", to, [("Content-Length", str(size))])
                pieces = [head, body]
            answer = await exchange(to, pieces, timeout=5.0)
            results.append((answer.status, answer.text))
    assert results == [(403, "no signature"), (413, f"too large: over {MAX_BODY} bytes")]
    assert handler.events == []


async def test_a_chunked_body_growing_past_max_body_gets_413(serve: Serve) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    query, _ = signed_callback(change(1))
    async with serve(receiver) as url:
        to = target(url, query)
        head = request_head("POST", to, [("Transfer-Encoding", "chunked")])
        # 16 KiB chunks, 80 KiB in all, and never the last chunk: the answer cannot
        # wait for the end of the body, only for the cap.
        grow = chunked(b"<a>" * (80 * 1024 // 3), 5, last=False)
        answer = await exchange(to, [head, *grow], timeout=5.0, close_within=3.0)
        assert (answer.status, answer.text) == (413, f"too large: over {MAX_BODY} bytes")
        assert answer.closed is True
    assert handler.events == [] and receiver.stats.rejected == 1


def _compress(coding: str, data: bytes) -> bytes:
    if coding.lower().endswith("gzip"):
        return gzip.compress(data)
    return zlib.compress(data)  # "deflate" is the zlib format


# Content-Encoding headers, as sent, one tuple of values per request.
ENCODINGS = [
    ("gzip",),
    ("GZIP",),
    ("deflate",),
    ("identity, gzip",),
    ("x-gzip",),
    # The same header twice: whichever one the server's HTTP parser acts on, the
    # body is compressed and must be refused, not decompressed and handled.
    ("identity", "gzip"),
    ("gzip", "identity"),
]


@pytest.mark.parametrize("codings", ENCODINGS, ids=["+".join(e) for e in ENCODINGS])
async def test_a_compressed_body_gets_415(serve: Serve, codings: tuple[str, ...]) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    # A genuine callback, properly signed, only compressed.
    query, body = signed_callback(change(1))
    packed = _compress(codings[-1] if codings[-1] != "identity" else codings[0], body)
    async with serve(receiver) as url:
        to = target(url, query)
        headers = [("Content-Encoding", coding) for coding in codings]
        head = request_head("POST", to, [*headers, ("Content-Length", str(len(packed)))])
        answer = await exchange(to, [head + packed], timeout=5.0)
        assert (answer.status, answer.text) == (415, "unsupported content-encoding")
    assert handler.events == [] and receiver.stats.received == 0


async def test_a_content_length_of_thousands_of_digits_gets_413_not_a_500() -> None:
    # uvicorn's parser stops such a header before the app; another ASGI server may
    # not, and int() refuses a string of over 4,300 digits (a ValueError, a 500).
    receiver = CallbackReceiver(make_crypto(), Recorder())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"content-length", b"9" * 5000)],
        "query_string": b"",
    }
    try:
        await receiver(scope, receive, send)
    finally:
        await receiver.aclose()
    assert sent[0]["status"] == 413 and sent[1]["body"].startswith(b"too large")
