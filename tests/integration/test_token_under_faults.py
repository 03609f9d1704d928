"""The access token under an outage of gettoken, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer
from wecom_async import (
    RetryPolicy,
    SessionPool,
    WeComClient,
    WeComDecodeError,
    WeComError,
    WeComPermissionError,
)
from wecom_async.testing import FakeWeCom

OK = {"errcode": 0, "external_userid": ["wm1"]}


@pytest.mark.parametrize("outage", ["errcode -1", "HTTP 502"])
async def test_two_hundred_callers_share_one_refresh_through_an_outage(
    server: TinyServer, outage: str
) -> None:
    down_until = time.monotonic() + 1.5

    def gettoken(request: web.Request) -> web.Response:
        if time.monotonic() < down_until:
            if outage == "HTTP 502":
                return web.Response(status=502, text="<html>bad gateway</html>")
            return web.json_response({"errcode": -1, "errmsg": "system busy"})
        return server.issue_token(request)

    server.gettoken = gettoken
    server.route = lambda request: web.json_response(OK)
    policy = RetryPolicy(max_attempts=5, backoff_base=0.5, backoff_max=2.0)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as client:
        results = await asyncio.gather(*(client.external_contact.list("u") for _ in range(200)))
    assert results == [["wm1"]] * 200  # every caller succeeds once gettoken recovers
    assert server.gettoken_calls <= policy.max_attempts  # its retries were shared
    assert server.tokens_issued == 1


async def test_a_refresh_that_fails_after_its_retries_is_not_retried_by_each_caller(
    server: TinyServer,
) -> None:
    server.gettoken = lambda request: web.json_response({"errcode": -1, "errmsg": "busy"})
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as client:
        results = await asyncio.gather(
            *(client.external_contact.list("u") for _ in range(50)), return_exceptions=True
        )
    assert all(type(r).__name__ == "WeComBusyError" for r in results)
    assert server.gettoken_calls == 3
    assert server.hits == 0
    assert client.stats.requests == 3  # counted where sent: the data calls never left


async def test_short_lived_clients_on_one_pool_share_one_token() -> None:
    async with FakeWeCom(customers=20, members=2) as fake, SessionPool() as pool:
        for _ in range(5):
            async with fake.client(pool=pool) as c:
                assert await c.external_contact.list(fake.corp.userids[0])
        # Another secret is another app: a token of its own (the fake refuses it).
        async with WeComClient(fake.corp_id, "other-app", base_url=fake.base_url, pool=pool) as c:
            with pytest.raises(WeComPermissionError):
                await c.external_contact.list(fake.corp.userids[0])
    assert fake.stats.gettoken_calls == 2


@pytest.mark.parametrize(
    "expires_in", ["1" + "0" * 400, "-7200", '"7200"', "0", "1e400", "7200.5", "null"]
)
async def test_an_absurd_expires_in_is_a_decode_error(server: TinyServer, expires_in: str) -> None:
    body = f'{{"errcode": 0, "access_token": "TOK", "expires_in": {expires_in}}}'
    server.gettoken = lambda request: web.Response(text=body, content_type="application/json")
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=RetryPolicy(max_attempts=1)
    ) as client:
        with pytest.raises(WeComDecodeError, match="expires_in"):
            await client.external_contact.list("u")


async def test_a_view_waits_on_a_shared_refresh_no_longer_than_its_own_policy(
    server: TinyServer,
) -> None:
    # The batch client's call starts the refresh; gettoken answers 45009, so the
    # refresh waits out a 30 s pause. A web handler's view ("answer within a couple
    # of seconds, no minute-long 45009 waits") must not hang on it for those 30 s.
    asked = asyncio.Event()

    def gettoken(request: web.Request) -> web.Response:
        asked.set()
        return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})

    server.gettoken = gettoken
    batch = RetryPolicy(max_attempts=2, backoff_max=30.0)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=batch) as client:
        batch_call = asyncio.ensure_future(client.external_contact.list("u"))
        await asyncio.wait_for(asked.wait(), 5)  # the refresh is under way, and paused
        fast = client.with_options(timeout=0.5, retry=RetryPolicy(max_attempts=2, backoff_max=0.5))
        started = time.monotonic()
        with pytest.raises(WeComError):
            await asyncio.wait_for(fast.external_contact.list("u"), 10)
        # Its own policy allows 2 tries of 0.5 s and a 0.5 s wait: 1.5 s at most.
        assert time.monotonic() - started < 2.5
        assert not batch_call.done()  # the shared refresh goes on for the others
    with pytest.raises(WeComError):
        await batch_call  # closed with the client
    assert server.gettoken_calls == 1


async def test_a_refresh_started_by_an_impatient_view_runs_under_the_clients_policy(
    server: TinyServer,
) -> None:
    # A web handler's view (one try) is first to need a token, while gettoken fails
    # once. The batch callers waiting on that refresh must get the client's retries,
    # not the view's single try.
    gettoken_answers = [{"errcode": -1, "errmsg": "system busy"}]

    def gettoken(request: web.Request) -> web.Response:
        if gettoken_answers:
            return web.json_response(gettoken_answers.pop())
        return server.issue_token(request)

    server.gettoken = gettoken
    server.route = lambda request: web.json_response(OK)
    batch = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=batch) as client:
        impatient = client.with_options(retry=RetryPolicy(max_attempts=1))
        view_call = asyncio.ensure_future(impatient.external_contact.list("u"))
        await asyncio.sleep(0)  # the view starts the refresh
        batch_calls = await asyncio.gather(*(client.external_contact.list("u") for _ in range(5)))
        view_result = await asyncio.gather(view_call, return_exceptions=True)
    assert batch_calls == [["wm1"]] * 5
    assert view_result == [["wm1"]]  # it waited within its patience for the client's retry
    assert server.gettoken_calls == 2  # one refresh, retried once under the client's policy
