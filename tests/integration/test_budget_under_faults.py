"""The rate budget and the 45009 pause, attacked over real sockets on loopback.

Each test is a promise the README makes, tried the way a hostile server would:
dropping connections after reading the request, answering 45009 for another
app's spending, asking for a Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET, SleepLog
from tests.servers import TinyServer, hang_up
from wecom_async import (
    RateLimit,
    RetryPolicy,
    SessionPool,
    WeComClient,
    WeComRateLimitError,
    WeComTransportError,
)
from wecom_async.testing import most_in_any_window

OK = {"errcode": 0, "external_userid": ["wm1"]}


async def test_every_request_that_leaves_holds_a_slot_and_is_counted(server: TinyServer) -> None:
    # Every third request is read, then its connection closed: aiohttp would re-send
    # such a GET by itself, without a slot, on the same keep-alive pool.
    async def drop_every_third(request: web.Request) -> web.StreamResponse:
        if server.hits % 3 == 0:
            return await hang_up(request)
        return web.json_response(OK)

    server.route = drop_every_third
    limit = RateLimit(10, 0.5)
    policy = RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_max=0.01)
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, rate_limit=limit, retry=policy
    ) as client:
        results = await asyncio.gather(*(client.external_contact.list("u") for _ in range(30)))
        stats = client.stats
    assert results == [["wm1"]] * 30
    assert stats.requests == len(server.arrivals)  # nothing left the client uncounted
    data = [a.at for a in server.arrivals if a.path != "gettoken"]
    assert most_in_any_window(data, limit.period) <= limit.max_calls
    assert stats.retries == server.hits - 30  # every drop was retried by the policy


async def test_a_45009_pauses_the_api_for_every_caller_and_one_probe_goes_first(
    server: TinyServer,
) -> None:
    # Another app spends the corp's budget: WeCom answers 45009 for 0.5 s, whatever
    # this client's own window says.
    blocked_until = 0.0
    first_answered = 0.0
    answered_45009 = 0

    async def blocked_for_a_while(request: web.Request) -> web.Response:
        nonlocal blocked_until, first_answered, answered_45009
        now = time.monotonic()
        if not blocked_until:
            blocked_until = now + 0.5
        if now < blocked_until:
            answered_45009 += 1
            first_answered = first_answered or now
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        await asyncio.sleep(0.02)  # the probe's answer takes a moment
        return web.json_response(OK)

    server.route = blocked_for_a_while
    policy = RetryPolicy(max_attempts=10, backoff_base=0.01, backoff_max=0.2)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as client:
        calls = asyncio.gather(*(client.external_contact.list("u") for _ in range(20)))
        results = await asyncio.wait_for(calls, timeout=10)
        rate_limited = client.stats.rate_limited
    assert results == [["wm1"]] * 20
    assert rate_limited == answered_45009
    data = [a.at for a in server.arrivals if a.path != "gettoken"]
    # Whatever left after the client knew of the 45009 (its answer took well under
    # 0.1 s on loopback) went as probes while the block lasted: one at a time, a
    # pause apart, never a wave of every caller.
    later = [t for t in data if t > first_answered + 0.1]
    during_block = [t for t in later if t < blocked_until]
    assert 1 <= len(during_block) <= 3, during_block
    gaps = [b - a for a, b in itertools.pairwise(during_block)]
    assert all(g >= 0.19 for g in gaps), gaps
    # The probe that got through went alone: nothing else left until it was answered.
    first_ok = min(t for t in data if t >= blocked_until)
    assert not [t for t in data if first_ok < t < first_ok + 0.015]
    assert len([t for t in data if t >= blocked_until]) == 20


async def test_a_caller_with_a_short_budget_fails_fast_during_a_pause(server: TinyServer) -> None:
    calls = 0

    async def always_45009(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})

    server.route = always_45009
    slow = RetryPolicy(max_attempts=1, backoff_max=30.0)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=slow) as client:
        with pytest.raises(WeComRateLimitError):
            await client.external_contact.list("u")  # meets the 45009, pauses 30 s
        web_handler = client.with_options(retry=RetryPolicy(max_attempts=3, backoff_max=1.0))
        started = time.monotonic()
        with pytest.raises(WeComRateLimitError, match="paused"):
            await web_handler.external_contact.list("u")
        assert time.monotonic() - started < 1.0  # it did not wait out the pause
    assert calls == 1  # and it sent nothing into the block


async def test_a_short_tempered_view_does_not_shorten_the_pause_for_everyone(
    server: TinyServer,
) -> None:
    # The web handler's view meets the 45009 itself. The pause it starts is the
    # client's (30 s), not the view's 1 s: else the view would probe WeCom's block
    # every second, and the batch callers of the client would come back too early.
    server.route = lambda request: web.json_response(
        {"errcode": 45009, "errmsg": "api freq out of limit"}
    )
    batch = RetryPolicy(max_attempts=1, backoff_max=30.0)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=batch) as client:
        web_handler = client.with_options(retry=RetryPolicy(max_attempts=3, backoff_max=1.0))
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(WeComRateLimitError):
                await web_handler.external_contact.list("u")
        assert time.monotonic() - started < 1.0  # none of them waited the view's 1 s
        # The pause has the client's length: a caller that would wait 5 s is refused.
        patient = client.with_options(retry=RetryPolicy(max_attempts=1, backoff_max=5.0))
        with pytest.raises(WeComRateLimitError, match="paused"):
            await patient.external_contact.list("u")
    assert server.hits == 1  # one 45009, then nothing sent into the block


async def test_http_429_waits_for_retry_after(server: TinyServer, sleeps: SleepLog) -> None:
    async def busy_once(request: web.Request) -> web.Response:
        if server.hits == 1:
            return web.Response(status=429, headers={"Retry-After": "7"}, text="slow down")
        return web.json_response(OK)

    server.route = busy_once
    policy = RetryPolicy(backoff_max=10.0, sleep=sleeps, jitter=lambda: 0.5)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as client:
        assert await client.external_contact.list("u") == ["wm1"]
    assert sleeps.waits == [7.0]


async def test_a_retry_after_beyond_backoff_max_is_raised_not_retried_early(
    server: TinyServer, sleeps: SleepLog
) -> None:
    server.route = lambda request: web.Response(
        status=429, headers={"Retry-After": "3600"}, text="come back in an hour"
    )
    policy = RetryPolicy(backoff_max=60.0, sleep=sleeps)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as client:
        with pytest.raises(WeComTransportError) as info:
            await client.external_contact.list("u")
    assert info.value.status == 429
    assert info.value.retry_after == 3600.0
    assert sleeps.waits == []
    assert server.hits == 1


async def test_clients_of_one_corp_on_one_pool_share_a_budget_and_a_pause(
    server: TinyServer,
) -> None:
    server.route = lambda request: web.json_response(
        {"errcode": 45009, "errmsg": "api freq out of limit"}
    )
    policy = RetryPolicy(max_attempts=1, backoff_max=30.0)
    async with SessionPool() as pool:
        one = WeComClient(CORP_ID, SECRET, base_url=server.base_url, pool=pool, retry=policy)
        two = WeComClient(CORP_ID, "another-app", base_url=server.base_url, pool=pool)
        with pytest.raises(WeComRateLimitError):
            await one.external_contact.list("u")
        fast_fail = two.with_options(retry=RetryPolicy(max_attempts=2, backoff_max=0.5))
        with pytest.raises(WeComRateLimitError, match="paused"):
            await fast_fail.external_contact.list("u")
        await one.aclose()
        await two.aclose()
    assert server.hits == 1
