"""Shared fixtures: a scripted WeCom on top of aioresponses, and fast retry policies."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import ClientResponse
from aioresponses import CallbackResult, aioresponses

from tests.servers import TinyServer
from wecom_async import RetryPolicy, WeComClient

DATA = Path(__file__).parent / "data"
BASE = "https://wecom.test/cgi-bin/"
CORP_ID = "ww-test-corp"
SECRET = "s3cr3t-VALUE-that-must-not-leak"

Handler = Callable[["Call"], Any]


class _StubStreamWriter:
    output_size = 0


class MockResponse(ClientResponse):
    """aioresponses 0.7.9 builds ClientResponse without the ``stream_writer`` that
    aiohttp 3.14 requires (pnuckowski/aioresponses#289); supply a stub."""

    _NEEDS_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self._NEEDS_WRITER:
            kwargs.setdefault("stream_writer", _StubStreamWriter())
        super().__init__(*args, **kwargs)


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@attrs.define
class Call:
    """One request the mock saw: when it arrived and when its answer left."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    arrived: float
    answered: float = 0.0

    @property
    def token(self) -> str | None:
        return self.query.get("access_token")


class Reply:
    """A non-JSON or non-200 answer, for handlers that need one."""

    def __init__(self, status: int = 200, body: str = "", content_type: str = "text/html"):
        self.status = status
        self.body = body
        self.content_type = content_type


class MockWeCom:
    """A scripted WeCom: per-path handlers, a token issuer, and a log of every call.

    Handlers take the Call and return a dict (sent as JSON), a Reply, or an
    awaitable of either. Data paths check the token: one not issued, or revoked,
    answers 40014.
    """

    def __init__(self, mock: aioresponses) -> None:
        self._mock = mock
        self.calls: list[Call] = []
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.gettoken_delay = 0.0
        self.gettoken_reply: dict[str, Any] | None = None
        self.gettoken_script: list[dict[str, Any]] = []  # answers given first, in order
        self.on("GET", "gettoken", self._gettoken, check_token=False)

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    @property
    def gettoken_calls(self) -> int:
        return len(self.calls_to("gettoken"))

    async def _gettoken(self, call: Call) -> dict[str, Any]:
        if self.gettoken_delay:
            await asyncio.sleep(self.gettoken_delay)
        if self.gettoken_script:
            return self.gettoken_script.pop(0)
        if self.gettoken_reply is not None:
            return self.gettoken_reply
        if call.query.get("corpsecret") != SECRET:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        token = f"TOKEN-{len(self.issued) + 1}-abcdef0123456789"
        self.issued.append(token)
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}

    def on(self, method: str, path: str, handler: Handler, *, check_token: bool = True) -> None:
        pattern = re.compile("^" + re.escape(BASE + path) + r"(\?.*)?$")

        async def callback(url: Any, **kwargs: Any) -> CallbackResult:
            call = Call(
                method=method,
                path=path,
                query={k: v for k, v in url.query.items()},
                body=kwargs.get("json"),
                arrived=time.monotonic(),
            )
            self.calls.append(call)
            if check_token and (call.token not in self.issued or call.token in self.revoked):
                result: Any = {"errcode": 40014, "errmsg": "invalid access_token"}
            else:
                result = handler(call)
                if isinstance(result, Awaitable):
                    result = await result
            call.answered = time.monotonic()
            if isinstance(result, Reply):
                return CallbackResult(
                    status=result.status,
                    body=result.body,
                    content_type=result.content_type,
                    response_class=MockResponse,
                )
            return CallbackResult(
                status=200,
                body=json.dumps(result),
                content_type="text/plain",
                response_class=MockResponse,
            )

        self._mock.add(pattern, method=method, callback=callback, repeat=True)


@pytest.fixture
async def server() -> AsyncIterator[TinyServer]:
    """A TinyServer on loopback, for behaviours FakeWeCom does not script."""
    srv = TinyServer()
    runner = await srv.start()
    yield srv
    await runner.cleanup()


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
def wecom(mock: aioresponses) -> MockWeCom:
    return MockWeCom(mock)


@attrs.define
class SleepLog:
    """A sleep that records how long it was asked to wait and returns at once."""

    waits: list[float] = attrs.Factory(list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepLog:
    return SleepLog()


@pytest.fixture
def fast_retry(sleeps: SleepLog) -> RetryPolicy:
    """The default policy's shape, with recorded no-op sleeps and a fixed jitter."""
    return RetryPolicy(sleep=sleeps, jitter=lambda: 0.5)


@pytest.fixture
async def client(fast_retry: RetryPolicy) -> AsyncIterator[WeComClient]:
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, retry=fast_retry) as c:
        yield c
