"""Transport faults over a real loopback socket: timeouts, dropped connections, big bodies."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer
from wecom_async import (
    RetryPolicy,
    SessionPool,
    WeComClient,
    WeComDecodeError,
    WeComTransportError,
)


def fast(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, backoff_base=0.001, backoff_max=0.01)


async def test_a_slow_answer_times_out_and_is_retried(server: TinyServer) -> None:
    async def slow_then_fast(request: web.Request) -> web.Response:
        if server.hits == 1:
            await asyncio.sleep(1.0)
        return web.json_response({"errcode": 0, "external_userid": ["wm1"]})

    server.route = slow_then_fast
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=fast(), timeout=0.2
    ) as client:
        assert await client.external_contact.list("u") == ["wm1"]
    assert server.hits == 2


async def test_timeouts_exhaust_the_policy(server: TinyServer) -> None:
    async def always_slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.json_response({"errcode": 0})

    server.route = always_slow
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=fast(2), timeout=0.1
    ) as client:
        with pytest.raises(WeComTransportError, match="timed out"):
            await client.external_contact.list("u")
    assert server.hits == 2


async def test_a_dropped_connection_is_retried(server: TinyServer) -> None:
    async def drop_first(request: web.Request) -> web.StreamResponse:
        if server.hits == 1:
            assert request.transport is not None
            request.transport.close()  # hang up without answering
            await asyncio.sleep(0.05)
        return web.json_response({"errcode": 0, "external_userid": ["wm2"]})

    server.route = drop_first
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=fast()) as client:
        assert await client.external_contact.list("u") == ["wm2"]
    assert server.hits == 2


async def test_answers_are_decoded_whatever_the_content_type(server: TinyServer) -> None:
    server.route = lambda request: web.Response(
        text=json.dumps({"errcode": 0, "external_userid": ["wm3"]}), content_type="text/plain"
    )
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        assert await client.external_contact.list("u") == ["wm3"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_cap_is_refused(server: TinyServer, chunked: bool) -> None:
    big = json.dumps({"errcode": 0, "external_userid": ["x" * 100] * 200}).encode()

    async def huge(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=big, content_type="application/json")
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(big), 1000):
            await resp.write(big[i : i + 1000])
        await resp.write_eof()
        return resp

    server.route = huge
    async with (
        SessionPool(max_body_bytes=4096) as pool,
        WeComClient(CORP_ID, SECRET, base_url=server.base_url, pool=pool, retry=fast(1)) as client,
    ):
        with pytest.raises(WeComTransportError, match="cap"):
            await client.external_contact.list("u")


def chain(exc: BaseException | None) -> str:
    """Message and repr of an exception and of everything chained to it, either way."""
    parts, seen = [], set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts.append(f"{e!s} {e!r} {vars(e) if hasattr(e, '__dict__') else ''}")
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


async def error_from_a_garbled_answer(secret: str) -> WeComTransportError:
    """The error a client with ``secret`` gets from a server that answers no HTTP at all."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"GARBAGE\r\n\r\n")  # not an HTTP status line: aiohttp keeps the URL
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with WeComClient(
            CORP_ID, secret, base_url=f"http://127.0.0.1:{port}/cgi-bin/", retry=fast(1)
        ) as client:
            with pytest.raises(WeComTransportError) as info:
                await client.external_contact.list("u")
    finally:
        server.close()
        await server.wait_closed()
    return info.value


async def test_a_garbled_answer_shows_no_secret_anywhere_in_the_chain() -> None:
    error = await error_from_a_garbled_answer(SECRET)
    assert SECRET not in chain(error)
    assert error.__context__ is None


async def test_a_cut_off_token_answer_shows_no_token(caplog: pytest.LogCaptureFixture) -> None:
    token = "TOKEN-that-must-stay-hidden-0123456789"
    cut = json.dumps({"errcode": 0, "access_token": token, "expires_in": 7200})[:-12]

    async def cut_token(request: web.Request) -> web.Response:
        return web.Response(text=cut, content_type="application/json")

    srv = TinyServer()
    srv.gettoken = cut_token
    runner = await srv.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="wecom_async"):
            async with WeComClient(CORP_ID, SECRET, base_url=srv.base_url, retry=fast(2)) as client:
                with pytest.raises(WeComDecodeError, match="not JSON") as info:
                    await client.external_contact.list("u")
    finally:
        await runner.cleanup()
    assert token[:12] not in chain(info.value)
    assert token[:12] not in "\n".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("status", [301, 400, 404])
async def test_non_5xx_http_errors_are_not_retried(server: TinyServer, status: int) -> None:
    server.route = lambda request: web.Response(status=status, text="nope")
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=fast(4)) as client:
        with pytest.raises(WeComTransportError) as info:
            await client.external_contact.list("u")
    assert info.value.status == status
    assert server.hits == 1


async def test_a_secret_with_url_special_characters_is_masked_too() -> None:
    text = chain(await error_from_a_garbled_answer("s3cr3t/with+plus~and%percent"))
    for form in ("s3cr3t", "with%2Bplus", "with+plus", "percent"):
        assert form not in text
