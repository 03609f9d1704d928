"""CallbackReceiver over real sockets, through aiohttp and through ASGI (uvicorn),
with WeCom's behaviour: a 5 s patience, 3 tries, duplicates, forged signatures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.callback.conftest import CORP_ID, make_crypto, pusher_to
from tests.conftest import DATA
from wecom_async.callback import (
    CallbackCrypto,
    CallbackEvent,
    CallbackReceiver,
    ExternalContactEvent,
    MemoryQueue,
)
from wecom_async.testing._callbacks import event_xml

Serve = Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]


def change(n: int, change_type: str = "edit_external_contact") -> str:
    return event_xml(
        CORP_ID,
        {
            "FromUserName": "sys",
            "CreateTime": 1_700_000_000 + n,
            "MsgType": "event",
            "Event": "change_external_contact",
            "ChangeType": change_type,
            "UserID": "zhangsan",
            "ExternalUserID": f"wm{n:030d}",
        },
    )


class Recorder:
    """A handler that records events and can be held until released."""

    def __init__(
        self, *, hold: bool = False, fail: Callable[[CallbackEvent], bool] = lambda e: False
    ):
        self.events: list[CallbackEvent] = []
        self.released = asyncio.Event()
        if not hold:
            self.released.set()
        self.fail = fail
        self.running = 0
        self.most_running = 0
        self.arrived = asyncio.Condition()

    async def __call__(self, event: CallbackEvent) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        async with self.arrived:
            self.events.append(event)
            self.arrived.notify_all()
        try:
            await self.released.wait()
            if self.fail(event):
                raise RuntimeError("handler failed on purpose")
        finally:
            self.running -= 1

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async def arrived() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: len(self.events) >= count)

        await asyncio.wait_for(arrived(), timeout)


async def test_url_check_answers_the_plain_echostr(serve: Serve) -> None:
    import json

    sample = json.loads((DATA / "wecom_callback_doc_sample.json").read_text())
    case = sample["cases"][0]
    crypto = CallbackCrypto(
        sample["token"], sample["encoding_aes_key"], sample["receive_id"], max_age=None
    )
    receiver = CallbackReceiver(crypto, Recorder())
    async with serve(receiver) as url, aiohttp.ClientSession() as http:
        query = (
            f"msg_signature={case['msg_signature']}&timestamp={case['timestamp']}"
            f"&nonce={case['nonce']}&echostr="
        )
        for echostr in (case["echostr_urlencoded"], case["encrypt"]):  # encoded, and a raw "+"
            async with http.get(f"{url}?{query}{echostr}") as response:
                body = await response.read()
                assert response.status == 200
            assert body == case["expected_plaintext"].encode()  # no quotes, BOM or newline
        async with http.get(f"{url}?{query.replace(case['nonce'], '1')}{echostr}") as response:
            assert response.status == 403
    assert receiver.stats.verified == 2 and receiver.stats.rejected == 1


async def test_a_slow_handler_is_acknowledged_at_once(serve: Serve) -> None:
    handler = Recorder(hold=True)  # as slow as the test wants: released at the end
    receiver = CallbackReceiver(make_crypto(), handler)
    async with serve(receiver) as url, pusher_to(url) as pusher:
        started = time.monotonic()
        tries = await pusher.push(change(1))
        ack = time.monotonic() - started
        await handler.wait_for(1)
        assert [t.status for t in tries] == [200]  # one try: no WeCom retry
        assert ack < 1.0, ack  # WeCom's patience is 5 s
        assert handler.running == 1 and receiver.stats.handled == 0
        handler.released.set()
    assert receiver.stats.handled == 1  # shutting down waited for it


async def test_concurrency_is_bounded_and_every_event_acknowledged(serve: Serve) -> None:
    handler = Recorder(hold=True)
    receiver = CallbackReceiver(make_crypto(), handler, concurrency=3)
    async with serve(receiver) as url, pusher_to(url) as pusher:
        results = await asyncio.gather(*(pusher.push(change(n)) for n in range(20)))
        assert all([t.status for t in tries] == [200] for tries in results)
        await handler.wait_for(3)
        assert handler.most_running == 3 and len(handler.events) == 3
        handler.released.set()
        await handler.wait_for(20)
    assert handler.most_running == 3
    assert receiver.stats.received == 20 and receiver.stats.handled == 20


async def test_wecom_retries_are_handled_once(serve: Serve) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    async with serve(receiver) as url, pusher_to(url) as pusher:
        # What WeCom does when it missed our answer: the same callback, re-encrypted,
        # with a new nonce and timestamp, up to 3 times.
        for attempt in (1, 2, 3):
            result = await pusher.post_once(change(7), attempt=attempt)
            assert result.status == 200
        await pusher.post_once(change(8))
        await handler.wait_for(2)
    assert [e.external_user_id for e in handler.events if isinstance(e, ExternalContactEvent)] == [
        f"wm{7:030d}",
        f"wm{8:030d}",
    ]
    assert receiver.stats.duplicates == 2 and receiver.stats.handled == 2


async def test_forged_requests_get_403_and_reach_no_handler(serve: Serve) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler, max_body=4096)
    async with serve(receiver) as url, pusher_to(url) as pusher:
        forged = await pusher.post_once(change(1), msg_signature="0" * 40)
        stale_sig = await pusher.post_once(change(2), timestamp="1")  # signature covers it
        assert (forged.status, stale_sig.status) == (403, 403)
        async with aiohttp.ClientSession() as http:
            # Unsigned, whatever the body holds: refused as unsigned.
            for body in (b"<xml><Encrypt>x</Encrypt>", b"<!DOCTYPE x><xml/>"):
                async with http.post(url, data=body) as response:
                    assert (response.status, await response.text()) == (403, "no signature")
            async with http.put(url, data=b"") as response:
                assert response.status == 405
                # aiohttp's router answers it; the ASGI app does, and counts it.
                ours = await response.text() == "method not allowed"
            async with http.post(url, data=b"x" * 5000) as response:
                assert response.status == 413
    assert handler.events == []
    assert receiver.stats.received == 0 and receiver.stats.rejected == 5 + ours


async def test_a_replayed_callback_outside_max_age_is_refused(serve: Serve) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(max_age=60, clock=lambda: time.time() + 120), handler)
    async with serve(receiver) as url, pusher_to(url) as pusher:
        assert (await pusher.post_once(change(1))).status == 403
    assert handler.events == []


async def test_a_failing_handler_is_logged_with_its_event(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder(fail=lambda e: e.create_time == 1_700_000_001)
    receiver = CallbackReceiver(make_crypto(), handler, concurrency=1)
    with caplog.at_level(logging.ERROR, logger="wecom_async"):
        async with serve(receiver) as url, pusher_to(url) as pusher:
            assert [t.status for t in await pusher.push(change(1))] == [200]
            assert [t.status for t in await pusher.push(change(2))] == [200]
            await handler.wait_for(2)
    failures = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failures) == 1
    record: Any = failures[0]
    assert f"wm{1:030d}" in record.getMessage() and "not retried" in record.getMessage()
    assert record.wecom_event.create_time == 1_700_000_001 and record.exc_info is not None
    assert receiver.stats.failed == 1 and receiver.stats.handled == 1


async def test_a_full_queue_answers_503_and_wecom_tries_three_times(serve: Serve) -> None:
    handler = Recorder(hold=True)
    receiver = CallbackReceiver(make_crypto(), handler, queue=MemoryQueue(maxsize=1), concurrency=1)
    async with serve(receiver) as url, pusher_to(url, timeout=5.0) as pusher:
        assert [t.status for t in await pusher.push(change(1))] == [200]  # running
        await handler.wait_for(1)
        assert [t.status for t in await pusher.push(change(2))] == [200]  # waiting
        refused = await pusher.push(change(3))
        assert [(t.attempt, t.status) for t in refused] == [(1, 503), (2, 503), (3, 503)]
        handler.released.set()
        await handler.wait_for(2)
        # The refused callback was never remembered: WeCom's later try gets in.
        assert [t.status for t in await pusher.push(change(3))] == [200]
        await handler.wait_for(3)
    assert receiver.stats.unavailable == 3 and receiver.stats.handled == 3


async def test_the_pusher_gives_up_after_wecoms_timeout() -> None:
    # A receiver that never answers: WeCom waits 5 s a try (scaled down here), 3 tries.
    from aiohttp import web

    hold = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await hold.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/cb", never)
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=0.1, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
        async with pusher_to(url, timeout=0.2) as pusher:
            tries = await pusher.push(change(1))
    finally:
        hold.set()
        await runner.cleanup()
    assert [(t.attempt, t.status, t.error) for t in tries] == [
        (1, None, "timeout"),
        (2, None, "timeout"),
        (3, None, "timeout"),
    ]
    assert all(0.2 <= t.seconds < 1.0 for t in tries)


async def test_requests_after_close_get_503_so_wecom_retries_elsewhere() -> None:
    receiver = CallbackReceiver(make_crypto(), Recorder())
    await receiver.start()
    await receiver.aclose()
    status, _ = await receiver.respond("POST", "", b"")
    assert status == 503
