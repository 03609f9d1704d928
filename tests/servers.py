"""Small hostile servers on 127.0.0.1 for tests that need a behaviour FakeWeCom lacks."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
from aiohttp import web

Route = Callable[[web.Request], Any]


@attrs.define
class Arrival:
    """One request the server read: when, where to, and with what query."""

    at: float
    path: str
    query: dict[str, str]


class TinyServer:
    """An aiohttp server on 127.0.0.1 that hands out tokens and runs one scripted route.

    ``route`` answers every data path; ``gettoken`` answers ``gettoken``. Both may
    be plain functions or coroutines. ``arrivals`` logs every request read,
    ``gettoken`` included, in order.
    """

    def __init__(self) -> None:
        self.route: Route = lambda request: web.json_response({"errcode": 0})
        self.gettoken: Route = self.issue_token
        self.arrivals: list[Arrival] = []
        self.tokens_issued = 0
        self.base_url = ""

    @property
    def hits(self) -> int:
        """Data requests read (gettoken not counted)."""
        return sum(1 for a in self.arrivals if a.path != "gettoken")

    @property
    def gettoken_calls(self) -> int:
        return sum(1 for a in self.arrivals if a.path == "gettoken")

    def issue_token(self, request: web.Request) -> web.Response:
        self.tokens_issued += 1
        token = f"TOKEN-{self.tokens_issued}-0123456789abcdef"
        return web.json_response({"errcode": 0, "access_token": token, "expires_in": 7200})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["tail"]
        self.arrivals.append(Arrival(time.monotonic(), path, dict(request.query)))
        handler = self.gettoken if path == "gettoken" else self.route
        result = handler(request)
        if isinstance(result, Awaitable):
            result = await result
        return result  # type: ignore[no-any-return]

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/cgi-bin/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/cgi-bin/"
        return runner


async def hang_up(request: web.Request) -> web.StreamResponse:
    """Read the request, then close the connection without a word."""
    assert request.transport is not None
    request.transport.close()
    await asyncio.sleep(0.05)
    return web.Response()  # never reaches the client


def load_example(filename: str) -> ModuleType:
    """Import ``examples/<filename>`` (examples are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "examples" / filename
    name = "example_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
