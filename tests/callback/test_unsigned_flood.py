"""A flood of large unsigned junk alongside genuine callbacks, over real sockets
through aiohttp and uvicorn: every genuine callback is answered 200 within 1 s
(WeCom waits 5), and the junk is refused without being decrypted or parsed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.callback.conftest import make_crypto, pusher_to
from tests.callback.forge import wrong_signature
from tests.callback.raw_http import RawAnswer, chunked, exchange, request_head, split, target
from tests.callback.test_receiver import Recorder, change
from wecom_async.callback import CallbackReceiver
from wecom_async.callback import _receiver as receiver_module

Serve = Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]

JUNK = 8
GENUINE = 20
DEFAULT_MAX_BODY = 64 * 1024


def junk_body(size: int = 1 << 20) -> bytes:
    """About ``size`` bytes of nested tags, an envelope's Encrypt at the bottom: it
    looks like a callback to anything that reads it all, or parses it."""
    encrypt = base64.b64encode(os.urandom(96))
    inner = b"<Encrypt><![CDATA[" + encrypt + b"]]></Encrypt>"
    depth = (size - len(inner) - 11) // 7
    return b"<xml>" + b"<a>" * depth + inner + b"</a>" * depth + b"</xml>"


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("max_body", [DEFAULT_MAX_BODY, 2 << 20], ids=["64KiB", "2MiB"])
async def test_genuine_callbacks_are_answered_in_time_through_a_flood(
    serve: Serve, framing: str, max_body: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = 0
    parse_event = receiver_module.parse_event

    def counting_parse_event(xml: str | bytes) -> Any:
        nonlocal parsed
        parsed += 1
        return parse_event(xml)

    monkeypatch.setattr(receiver_module, "parse_event", counting_parse_event)
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler, max_body=max_body)
    body = junk_body()
    async with serve(receiver) as url, pusher_to(url) as pusher:
        sending = [asyncio.Event() for _ in range(JUNK)]

        async def flood(started: asyncio.Event) -> RawAnswer:
            to = target(url, wrong_signature())
            if framing == "chunked":
                head = request_head("POST", to, [("Transfer-Encoding", "chunked")])
                pieces = [head, *chunked(body, 64)]
            else:
                head = request_head("POST", to, [("Content-Length", str(len(body)))])
                pieces = [head, *split(body, 64)]
            return await exchange(to, pieces, timeout=20.0, first_sent=started)

        junk = [asyncio.create_task(flood(started)) for started in sending]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in sending)), 10)
            genuine = await asyncio.gather(
                *(pusher.post_once(change(n), key=f"g{n}") for n in range(GENUINE))
            )
        finally:
            refused = await asyncio.gather(*junk, return_exceptions=True)
        await handler.wait_for(GENUINE)

    assert [(t.status, t.error) for t in genuine] == [(200, None)] * GENUINE
    slow = sorted(round(t.seconds, 3) for t in genuine if t.seconds >= 1.0)
    assert slow == [], f"genuine callbacks answered after 1 s: {slow}"

    expected = (
        (413, f"too large: over {max_body} bytes")
        if max_body < len(body)
        else (403, "bad signature")
    )
    assert [(r.status, r.text) if isinstance(r, RawAnswer) else r for r in refused] == [
        expected
    ] * JUNK
    # "bad signature" says the junk went no further than the signature check (which
    # comes before any decryption); and only the genuine ones were parsed.
    assert parsed == GENUINE
    assert sorted(e.create_time for e in handler.events) == [
        1_700_000_000 + n for n in range(GENUINE)
    ]
    stats = receiver.stats
    assert (stats.received, stats.rejected, stats.duplicates) == (GENUINE, JUNK, 0)
