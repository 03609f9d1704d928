"""Closing, event loops, per-call options, proxies and secrets, over real sockets."""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer
from wecom_async import (
    RateLimit,
    RetryPolicy,
    SessionPool,
    WeComAPIError,
    WeComClient,
    WeComClosedError,
    WeComDecodeError,
    WeComError,
    WeComInputError,
    WeComNotFoundError,
    WeComPausedError,
    WeComRateLimitError,
    WeComTransportError,
    WeComUsageError,
)
from wecom_async._ratelimit import SlidingWindow
from wecom_async.testing import FakeWeCom

OK = {"errcode": 0, "external_userid": ["wm1"]}


# -- closing --


async def slot_waiters(client: WeComClient, count: int) -> None:
    """Wait until ``count`` callers are queued for a slot of externalcontact/list."""
    window = client._pool.rate_limiter._windows[(CORP_ID, "externalcontact/list")]

    async def queued() -> None:
        while len(window._waiters) < count:  # noqa: ASYNC110 - the queue has no event
            await asyncio.sleep(0)

    await asyncio.wait_for(queued(), 5)


async def test_aclose_wakes_callers_waiting_for_a_slot(server: TinyServer) -> None:
    server.route = lambda request: web.json_response(OK)
    client = WeComClient(CORP_ID, SECRET, base_url=server.base_url, rate_limit=RateLimit(1, 60.0))
    view = client.with_options(timeout=5)
    await client.external_contact.list("u")  # the only slot, now cooling down for 60 s
    waiting = [
        asyncio.create_task(client.external_contact.list("u")),
        asyncio.create_task(view.external_contact.list("u")),
    ]
    await slot_waiters(client, 2)  # both are queued for the slot, not yet closed out
    assert not any(t.done() for t in waiting)
    started = time.monotonic()
    await client.aclose()
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
    assert time.monotonic() - started < 1.0
    assert all(isinstance(r, WeComClosedError) for r in results), results
    assert server.hits == 1


async def test_a_caller_cancelled_while_closing_stays_cancelled(server: TinyServer) -> None:
    server.route = lambda request: web.json_response(OK)
    client = WeComClient(CORP_ID, SECRET, base_url=server.base_url, rate_limit=RateLimit(1, 60.0))
    await client.external_contact.list("u")
    waiter = asyncio.create_task(client.external_contact.list("u"))
    await slot_waiters(client, 1)
    waiter.cancel()  # the caller's own cancellation, then the close
    await client.aclose()
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()


def test_a_client_used_from_a_second_event_loop_says_so() -> None:
    first = asyncio.new_event_loop()
    server = TinyServer()
    server.route = lambda request: web.json_response(OK)
    runner = first.run_until_complete(server.start())

    async def make() -> WeComClient:
        return WeComClient(CORP_ID, SECRET, base_url=server.base_url)

    client = first.run_until_complete(make())
    try:
        assert first.run_until_complete(client.external_contact.list("u")) == ["wm1"]
        with pytest.raises(WeComUsageError, match="event loop"):
            asyncio.run(client.external_contact.list("u"))
    finally:
        first.run_until_complete(client.aclose())
        first.run_until_complete(runner.cleanup())
        first.close()
    assert server.hits == 1


# -- per-call options --


async def test_a_view_shares_token_budget_and_stats_but_not_its_timeout(
    server: TinyServer,
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response(OK)

    server.route = slow
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        quick = client.with_options(timeout=0.1, retry=RetryPolicy(max_attempts=1))
        assert "view" in repr(quick)
        with pytest.raises(WeComTransportError, match=r"timed out after 0\.1s"):
            await quick.external_contact.list("u")
        assert await client.external_contact.list("u") == ["wm1"]
        assert client.stats.calls == 2 and quick.stats is client.stats
        await quick.aclose()  # does nothing: the view is closed with its client
        assert not client.closed
    assert quick.closed
    with pytest.raises(WeComClosedError):
        await quick.external_contact.list("u")
    assert server.gettoken_calls == 1


async def test_with_options_checks_its_arguments() -> None:
    async with WeComClient(CORP_ID, SECRET) as client:
        for bad in ({"timeout": 0}, {"timeout": "3"}, {"retry": 3}, {"max_pages": 0}):
            with pytest.raises(WeComInputError):
                client.with_options(**bad)  # type: ignore[arg-type]


# -- network settings --


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1 that logs each request line it relays."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.url = ""

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *headers = head.decode("latin-1").split("\r\n")
            self.lines.append(line)
            method, target, version = line.split(" ")
            hostport, _, rest = target.removeprefix("http://").partition("/")
            host, _, port = hostport.partition(":")
            kept = [h for h in headers if h and not h.lower().startswith(("connection", "proxy-"))]
            length = next(
                (int(h.split(":")[1]) for h in kept if h.lower().startswith("content-length")), 0
            )
            body = await reader.readexactly(length) if length else b""
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            request = f"{method} /{rest} {version}\r\n" + "\r\n".join(kept)
            up_writer.write(request.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
            await up_writer.drain()
            writer.write(await up_reader.read())
            await writer.drain()
            up_writer.close()
        finally:
            writer.close()

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return server


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    relay = ForwardProxy()
    server = await relay.start()
    yield relay
    server.close()
    await server.wait_closed()


async def test_every_request_goes_through_the_pool_proxy(proxy: ForwardProxy) -> None:
    async with (
        FakeWeCom(customers=20, members=2) as fake,
        SessionPool(proxy=proxy.url) as pool,
        fake.client(pool=pool) as client,
    ):
        assert await client.external_contact.list(fake.corp.userids[0])
    assert len(proxy.lines) == 2
    assert proxy.lines[0].startswith(f"GET {fake.base_url}gettoken?")
    assert proxy.lines[1].startswith(f"GET {fake.base_url}externalcontact/list?")


async def test_trust_env_takes_the_proxy_from_the_environment(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with (
        FakeWeCom(customers=20, members=2) as fake,
        SessionPool(trust_env=True) as pool,
        fake.client(pool=pool) as client,
    ):
        assert await client.external_contact.list(fake.corp.userids[0])
    assert len(proxy.lines) == 2


# -- errors: typed, picklable, and never a secret --


def test_bad_settings_raise_input_errors_that_are_value_errors() -> None:
    attempts = [
        lambda: SessionPool(limit=-1),
        lambda: SessionPool(max_body_bytes=0),
        lambda: SessionPool(proxy="not a url"),
        lambda: RateLimit(0, 1),
        lambda: RetryPolicy(max_attempts=0),
        lambda: WeComClient(CORP_ID, SECRET, rate_limit=[1]),  # type: ignore[list-item]
        lambda: WeComClient(CORP_ID, SECRET, max_pages=0),
    ]
    for attempt in attempts:
        with pytest.raises(WeComInputError) as info:
            attempt()
        assert isinstance(info.value, ValueError)


async def test_a_second_budget_size_for_one_corp_on_a_pool_is_an_input_error() -> None:
    async with SessionPool() as pool:
        WeComClient(CORP_ID, SECRET, pool=pool, rate_limit=RateLimit(10, 1))
        with pytest.raises(WeComInputError, match="already has rate limits"):
            WeComClient(CORP_ID, SECRET, pool=pool, rate_limit=RateLimit(20, 1))


@pytest.mark.parametrize(
    "error",
    [
        WeComTransportError("GET x failed", path="x", status=429, retry_after=3.0),
        WeComDecodeError("bad", path="x", retryable=True),
        WeComRateLimitError(45009, "freq", "x"),
        WeComPausedError("x", 12.5, 1.0),
        WeComNotFoundError(40096, "no such customer", "x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(error: WeComError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


async def test_a_slot_released_twice_raises_and_the_count_holds() -> None:
    window = SlidingWindow([RateLimit(2, 0.5)])
    (state,) = window._windows
    first = await window.acquire()
    await window.acquire()
    first.release()
    with pytest.raises(WeComUsageError, match="twice"):
        first.release()
    assert state.in_flight == 1
    assert len(state.free_at) == 1


async def test_secrets_echoed_by_the_server_are_masked_everywhere(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo(request: web.Request) -> web.Response:
        line = f"{request.method} {request.path_qs} HTTP/1.1"
        if request.query.get("userid") == "text":
            return web.Response(text=f"bad request: {line}")
        token = request.query["access_token"]
        errmsg = f"invalid userid; you sent {token} with secret {SECRET}"
        return web.json_response({"errcode": 40003, "errmsg": errmsg})

    server.route = echo
    policy = RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_max=0.01)
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="wecom_async"):
        async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as c:
            for userid in ("text", "json"):
                with pytest.raises(WeComError) as info:
                    await c.external_contact.list(userid)
                errors.append(info.value)
    token = server.arrivals[-1].query["access_token"]
    assert isinstance(errors[0], WeComDecodeError) and isinstance(errors[1], WeComAPIError)
    assert errors[1].errmsg.startswith("invalid userid; you sent ***")
    shown = [str(e) for e in errors] + [repr(e) for e in errors] + [errors[1].errmsg]
    shown += [r.getMessage() for r in caplog.records]
    for text in shown:
        assert token[:20] not in text and SECRET not in text, text


async def test_secrets_echoed_into_fields_are_never_shown(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A server that copies the request's query into the fields the client words its
    # decode errors from: an int field, a cursor, gettoken's expires_in.
    def echo(request: web.Request) -> web.Response:
        token = request.query["access_token"]
        if request.path.endswith("externalcontact/get"):
            contact = {"external_userid": "wm1", "gender": token}
            return web.json_response({"errcode": 0, "external_contact": contact})
        # externalcontact/batch/get_by_user: the same cursor, the token, twice
        page = {"errcode": 0, "external_contact_list": [], "next_cursor": token}
        return web.json_response(page)

    server.route = echo
    policy = RetryPolicy(max_attempts=1)
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="wecom_async"):
        async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as c:
            with pytest.raises(WeComDecodeError) as info:
                await c.external_contact.get("wm1")
            errors.append(info.value)
            with pytest.raises(WeComDecodeError) as info:
                [item async for item in c.external_contact.batch_get_by_user(["u"])]
            errors.append(info.value)
            token = server.arrivals[-1].query["access_token"]
        server.gettoken = lambda request: web.json_response(
            {"errcode": 0, "access_token": "T-X", "expires_in": request.query["corpsecret"]}
        )
        async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as c:
            with pytest.raises(WeComDecodeError) as info:
                await c.external_contact.list("u")
            errors.append(info.value)
    shown: list[str] = []
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:  # a logged traceback shows the causes too
            shown += [str(chain), repr(chain)]
            chain = chain.__cause__ or chain.__context__
    shown += [r.getMessage() for r in caplog.records]
    for text in shown:
        assert token[:12] not in text and SECRET[:12] not in text, text


async def test_a_call_leaves_no_reference_cycles_behind(server: TinyServer) -> None:
    # Cyclic garbage is paid for in collector passes over every live object: with
    # tenacity's controller left in a cycle, B2's CPU per request rose by a quarter.
    server.route = lambda request: web.json_response(OK)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        await client.external_contact.list("u")  # warm: token, connection
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(20):
                await client.external_contact.list("u")
            gc.collect()
            ours = [
                type(o).__qualname__
                for o in gc.garbage
                if type(o).__module__.startswith(("tenacity", "wecom_async"))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert ours == []
