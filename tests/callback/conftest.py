"""Serve a CallbackReceiver over real loopback sockets, through aiohttp or uvicorn (ASGI)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from aiohttp import web

from wecom_async.callback import CallbackCrypto, CallbackReceiver
from wecom_async.testing import CallbackPusher, FakeCallbacks

TOKEN = "cb-TOKEN-that-must-not-leak"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
CORP_ID = "ww-callback-test"


@contextlib.asynccontextmanager
async def serve_aiohttp(receiver: CallbackReceiver) -> AsyncIterator[str]:
    app = web.Application()
    receiver.attach(app, "/wecom/callback")
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/wecom/callback"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_asgi(receiver: CallbackReceiver) -> AsyncIterator[str]:
    config = uvicorn.Config(
        receiver.asgi, host="127.0.0.1", port=0, lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:

        async def started() -> None:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)

        await asyncio.wait_for(started(), 10)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/wecom/callback"
    finally:
        server.should_exit = True
        await task


SERVERS: dict[str, Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]] = {
    "aiohttp": serve_aiohttp,
    "asgi": serve_asgi,
}


@pytest.fixture(params=sorted(SERVERS))
def serve(
    request: pytest.FixtureRequest,
) -> Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]:
    """Both entry points, each test run once through each."""
    return SERVERS[request.param]


def make_crypto(**kwargs: Any) -> CallbackCrypto:
    return CallbackCrypto(TOKEN, AES_KEY, CORP_ID, **kwargs)


@contextlib.asynccontextmanager
async def pusher_to(url: str, **kwargs: Any) -> AsyncIterator[CallbackPusher]:
    pusher = CallbackPusher(FakeCallbacks(url=url, token=TOKEN, aes_key=AES_KEY, **kwargs), CORP_ID)
    try:
        yield pusher
    finally:
        await pusher.aclose()
