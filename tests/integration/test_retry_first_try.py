"""The retry layer since it makes the first try before entering tenacity (RetryPolicy.run),
attacked over loopback, one section per guarantee it must keep: max_attempts counts the
first try; hooks and OpenTelemetry tell the same story; a refresh retries once for all
its callers; aclose() and cancellation at every step; typed errors with no chain and no
secret; no cyclic garbage per call; BaseExceptions pass untouched; concurrent calls
never share a controller."""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import random
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import tenacity
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import CORP_ID, SECRET
from tests.integration.test_hooks import Recorder as HookRecorder
from tests.integration.test_otel import Telemetry as OtelTelemetry
from tests.servers import TinyServer, hang_up
from wecom_async import (
    RetryPolicy,
    WeComBusyError,
    WeComClient,
    WeComClosedError,
    WeComDecodeError,
    WeComError,
    WeComNotFoundError,
    WeComPermissionError,
    WeComRateLimitError,
    WeComTransportError,
    _retry,
)
from wecom_async.hooks import (
    AttemptEnded,
    CallEnded,
    CallStarted,
    RetryScheduled,
    TokenRefreshed,
)

DATA = "externalcontact/list"
OK = {"errcode": 0, "external_userid": ["wm1"]}
BUSY = {"errcode": -1, "errmsg": "system busy"}
JITTER = 0.25  # every wait is its ceiling times 0.5 + 0.5 * 0.25


# -- helpers --


class Waits:
    """A policy's ``sleep``: records each wait, then returns at once (or never, if told)."""

    def __init__(self, *, forever: bool = False) -> None:
        self.waits: list[float] = []
        self.forever = forever
        self.entered = asyncio.Event()
        self.expect = 1

    async def __call__(self, seconds: float) -> None:
        self.waits.append(float(seconds))
        if len(self.waits) >= self.expect:
            self.entered.set()
        if self.forever:
            await asyncio.sleep(3600)


def policy_for(waits: Waits, max_attempts: int = 3, **kwargs: Any) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts,
        backoff_base=kwargs.pop("backoff_base", 0.5),
        backoff_max=kwargs.pop("backoff_max", 60.0),
        sleep=waits,
        jitter=lambda: JITTER,
        **kwargs,
    )


def expected_waits(policy: RetryPolicy, failures: int) -> list[float]:
    """The policy's documented waits after tries 1..failures (no Retry-After, no 45009)."""
    return [
        min(policy.backoff_max, policy.backoff_base * 2.0 ** (n - 1)) * (0.5 + 0.5 * JITTER)
        for n in range(1, failures + 1)
    ]


async def answer(request: web.Request, kind: Any) -> web.StreamResponse:
    """One scripted answer: a JSON dict, an HTTP status, a dropped connection, or HTML."""
    if kind == "drop":
        return await hang_up(request)
    if kind == "html":
        return web.Response(status=200, text="<html>upstream busy</html>")
    if isinstance(kind, int):
        return web.Response(status=kind, text="<html>bad gateway</html>")
    return web.json_response(kind)


def script(*answers: Any, then: Any = OK) -> Callable[[web.Request], Awaitable[Any]]:
    """A route answering ``answers`` in order, then ``then`` for ever."""
    queue = list(answers)

    async def route(request: web.Request) -> web.StreamResponse:
        return await answer(request, queue.pop(0) if queue else then)

    return route


class Recorder(HookRecorder):
    """test_hooks' recorder, with its events as comparable tuples."""

    def told(self) -> list[tuple[Any, ...]]:
        """The events as comparable tuples, durations left out."""
        out: list[tuple[Any, ...]] = []
        for e in self.events:
            if isinstance(e, CallStarted):
                out.append(("start", e.path, e.method))
            elif isinstance(e, AttemptEnded):
                out.append(("attempt", e.path, e.attempt, e.status, e.errcode, e.error))
            elif isinstance(e, RetryScheduled):
                out.append(("retry", e.path, e.attempt, e.max_attempts, e.wait, e.error, e.errcode))
            elif isinstance(e, CallEnded):
                out.append(("end", e.path, e.attempts, e.errcode, e.error))
            elif isinstance(e, TokenRefreshed):
                out.append(("refresh", e.outcome, e.error, e.errcode))
            else:
                out.append((type(e).__name__,))
        return out


@pytest.fixture
async def client_for(server: TinyServer) -> AsyncIterator[Callable[..., WeComClient]]:
    made: list[WeComClient] = []

    def make(policy: RetryPolicy, **kwargs: Any) -> WeComClient:
        client = WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


# -- 1. max_attempts counts the first try; stats and waits follow the policy --

RETRYABLE = {
    "errcode -1": (BUSY, WeComBusyError),
    "errcode 45033": ({"errcode": 45033, "errmsg": "concurrency limit"}, WeComRateLimitError),
    "HTTP 502": (502, WeComTransportError),
    "dropped connection": ("drop", WeComTransportError),
    "non-JSON 200": ("html", WeComDecodeError),
}


@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "hooks"])
@pytest.mark.parametrize("max_attempts", [1, 2, 4])
@pytest.mark.parametrize("failure", list(RETRYABLE))
async def test_an_always_failing_retryable_answer_reaches_the_server_max_attempts_times(
    server: TinyServer,
    client_for: Callable[..., WeComClient],
    failure: str,
    max_attempts: int,
    listening: bool,
) -> None:
    kind, error_type = RETRYABLE[failure]
    waits = Waits()
    policy = policy_for(waits, max_attempts)
    client = client_for(policy, hooks=Recorder() if listening else None)
    await client.external_contact.list("warm")  # the token and a connection, outside the count
    server.arrivals.clear()
    client.stats.requests = client.stats.retries = 0
    server.route = script(then=kind)

    with pytest.raises(WeComError) as raised:
        await client.external_contact.list("u")

    assert type(raised.value) is error_type
    assert not isinstance(raised.value, tenacity.RetryError)
    assert server.hits == max_attempts and server.gettoken_calls == 0
    assert client.stats.requests == server.hits
    assert client.stats.retries == max_attempts - 1
    assert waits.waits == expected_waits(policy, max_attempts - 1)


@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "hooks"])
@pytest.mark.parametrize("errcode", [40096, 40003, 60011, 48002])
async def test_a_permanent_errcode_is_sent_once(
    server: TinyServer, client_for: Callable[..., WeComClient], errcode: int, listening: bool
) -> None:
    waits = Waits()
    client = client_for(policy_for(waits, 5), hooks=Recorder() if listening else None)
    server.route = script(then={"errcode": errcode, "errmsg": "no"})
    with pytest.raises(WeComError) as raised:
        await client.external_contact.list("u")
    assert getattr(raised.value, "errcode", None) == errcode
    assert server.hits == 1 and server.gettoken_calls == 1
    assert client.stats.requests == 2 and client.stats.retries == 0
    assert waits.waits == []


async def test_the_last_failure_is_raised_and_a_permanent_one_stops_the_retries(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    waits = Waits()
    policy = policy_for(waits, 3)
    client = client_for(policy)
    server.route = script(BUSY, {"errcode": 45033}, 502)
    with pytest.raises(WeComTransportError) as raised:
        await client.external_contact.list("u")
    assert raised.value.status == 502 and server.hits == 3
    server.arrivals.clear()
    server.route = script(BUSY, {"errcode": 40096, "errmsg": "invalid external userid"})
    with pytest.raises(WeComNotFoundError):
        await client.external_contact.list("u")
    assert server.hits == 2
    assert client.stats.retries == 2 + 1
    assert waits.waits == expected_waits(policy, 2) + expected_waits(policy, 1)


async def test_a_retry_after_is_the_wait_and_a_longer_one_than_backoff_max_is_not_retried(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    async def too_many(request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down", headers={"Retry-After": seconds})

    seconds = "7"
    waits = Waits()
    client = client_for(policy_for(waits, 3, backoff_max=10.0))
    server.route = too_many
    with pytest.raises(WeComTransportError):
        await client.external_contact.list("u")
    assert server.hits == 3 and waits.waits == [7.0, 7.0]
    seconds = "11"
    server.arrivals.clear()
    with pytest.raises(WeComTransportError):
        await client.external_contact.list("u")
    assert server.hits == 1 and waits.waits == [7.0, 7.0]


# -- 2. hooks and OpenTelemetry tell the same story as before the change --


async def warm_and_record(client: WeComClient, hooks: Recorder) -> None:
    await client.external_contact.list("warm")
    hooks.events.clear()


async def test_hooks_for_a_call_that_fails_then_succeeds(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    hooks, waits = Recorder(), Waits()
    policy = policy_for(waits, 3)
    client = client_for(policy, hooks=hooks)
    await warm_and_record(client, hooks)
    server.route = script(BUSY, 502)
    assert await client.external_contact.list("u") == ["wm1"]
    w1, w2 = expected_waits(policy, 2)
    assert hooks.told() == [
        ("start", DATA, "GET"),
        ("attempt", DATA, 1, 200, -1, "WeComBusyError"),
        ("retry", DATA, 1, 3, w1, "WeComBusyError", -1),
        ("attempt", DATA, 2, 502, None, "WeComTransportError"),
        ("retry", DATA, 2, 3, w2, "WeComTransportError", None),
        ("attempt", DATA, 3, 200, 0, None),
        ("end", DATA, 3, 0, None),
    ]
    assert waits.waits == [w1, w2]


async def test_hooks_for_a_call_that_fails_on_every_try(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    hooks, waits = Recorder(), Waits()
    policy = policy_for(waits, 3)
    client = client_for(policy, hooks=hooks)
    await warm_and_record(client, hooks)
    server.route = script(then=BUSY)
    with pytest.raises(WeComBusyError):
        await client.external_contact.list("u")
    w1, w2 = expected_waits(policy, 2)
    assert hooks.told() == [
        ("start", DATA, "GET"),
        ("attempt", DATA, 1, 200, -1, "WeComBusyError"),
        ("retry", DATA, 1, 3, w1, "WeComBusyError", -1),
        ("attempt", DATA, 2, 200, -1, "WeComBusyError"),
        ("retry", DATA, 2, 3, w2, "WeComBusyError", -1),
        ("attempt", DATA, 3, 200, -1, "WeComBusyError"),
        ("end", DATA, 3, -1, "WeComBusyError"),
    ]


async def test_hooks_for_a_permanent_error_and_for_a_first_try_that_succeeds(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    hooks = Recorder()
    client = client_for(policy_for(Waits(), 3), hooks=hooks)
    await warm_and_record(client, hooks)
    server.route = script({"errcode": 40096, "errmsg": "invalid external userid"})
    with pytest.raises(WeComNotFoundError):
        await client.external_contact.list("u")
    assert await client.external_contact.list("u") == ["wm1"]
    assert hooks.told() == [
        ("start", DATA, "GET"),
        ("attempt", DATA, 1, 200, 40096, "WeComNotFoundError"),
        ("end", DATA, 1, 40096, "WeComNotFoundError"),
        ("start", DATA, "GET"),
        ("attempt", DATA, 1, 200, 0, None),
        ("end", DATA, 1, 0, None),
    ]


async def test_hooks_for_a_refresh_that_fails_then_succeeds_and_one_that_always_fails(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    hooks, waits = Recorder(), Waits()
    policy = policy_for(waits, 3)
    client = client_for(policy, hooks=hooks)
    gettoken_answers = [BUSY]

    async def gettoken(request: web.Request) -> web.StreamResponse:
        if gettoken_answers:
            return await answer(request, gettoken_answers.pop(0))
        return server.issue_token(request)

    server.gettoken = gettoken
    server.route = script()
    assert await client.external_contact.list("u") == ["wm1"]
    (w1,) = expected_waits(policy, 1)
    assert hooks.told() == [
        ("start", DATA, "GET"),
        ("start", "gettoken", "GET"),
        ("attempt", "gettoken", 1, 200, -1, "WeComBusyError"),
        ("retry", "gettoken", 1, 3, w1, "WeComBusyError", -1),
        ("attempt", "gettoken", 2, 200, 0, None),
        ("end", "gettoken", 2, 0, None),
        ("refresh", "ok", None, None),
        ("attempt", DATA, 1, 200, 0, None),
        ("end", DATA, 1, 0, None),
    ]

    again = Recorder()
    other = client_for(policy, hooks=again)  # a pool of its own: no token yet
    server.gettoken = lambda request: web.json_response(BUSY)
    with pytest.raises(WeComBusyError) as raised:
        await other.external_contact.list("u")
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    w1, w2 = expected_waits(policy, 2)
    assert again.told() == [
        ("start", DATA, "GET"),
        ("start", "gettoken", "GET"),
        ("attempt", "gettoken", 1, 200, -1, "WeComBusyError"),
        ("retry", "gettoken", 1, 3, w1, "WeComBusyError", -1),
        ("attempt", "gettoken", 2, 200, -1, "WeComBusyError"),
        ("retry", "gettoken", 2, 3, w2, "WeComBusyError", -1),
        ("attempt", "gettoken", 3, 200, -1, "WeComBusyError"),
        ("end", "gettoken", 3, -1, "WeComBusyError"),
        ("refresh", "error", "WeComBusyError", -1),
        # the refresh's error is the call's: unwrapped, no attempt of its own
        ("end", DATA, 0, -1, "WeComBusyError"),
    ]


class Telemetry(OtelTelemetry):
    """test_otel's in-memory exporters, and the retries metric's total."""

    def retries(self) -> int:
        return sum(p.value for p in self.metrics().get("wecom.client.retries", []))


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


async def test_otel_spans_for_a_call_that_fails_then_succeeds_and_one_that_always_fails(
    server: TinyServer, client_for: Callable[..., WeComClient], otel: Telemetry
) -> None:
    client = client_for(policy_for(Waits(), 3), hooks=otel.hooks)
    await client.external_contact.list("warm")
    otel.spans_out.clear()
    server.route = script(BUSY, "drop", then=OK)
    await client.external_contact.list("u")
    assert trace.get_current_span() is trace.INVALID_SPAN  # the call's span did not stay
    server.route = script(then=BUSY)
    with pytest.raises(WeComBusyError):
        await client.external_contact.list("u")
    assert trace.get_current_span() is trace.INVALID_SPAN

    spans = list(otel.spans_out.get_finished_spans())
    calls = [s for s in spans if s.kind == SpanKind.INTERNAL]
    assert [s.name for s in calls] == [f"WeCom {DATA}"] * 2
    for call, errcodes, status in zip(
        calls, ([-1, None, 0], [-1, -1, -1]), (StatusCode.UNSET, StatusCode.ERROR), strict=True
    ):
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == call.context.span_id
        ]
        assert [dict(s.attributes or {}).get("wecom.errcode") for s in children] == errcodes
        assert all(s.kind == SpanKind.CLIENT for s in children)
        assert call.status.status_code == status
        assert dict(call.attributes or {})["wecom.attempts"] == 3
    assert dict(calls[1].attributes or {})["error.type"] == "WeComBusyError"
    assert otel.retries() == client.stats.retries == 4


# -- 3. a token refresh that fails transiently is retried once for every caller --


REFRESH_FAULTS = {
    "errcode -1": BUSY,
    "HTTP 502": 502,
    "dropped connection": "drop",
    "non-JSON 200": "html",
}


@pytest.mark.parametrize("starter", ["client", "impatient view"])
@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "hooks"])
@pytest.mark.parametrize("fault", list(REFRESH_FAULTS))
async def test_a_hundred_callers_share_one_retried_refresh(
    server: TinyServer,
    client_for: Callable[..., WeComClient],
    fault: str,
    listening: bool,
    starter: str,
) -> None:
    faults = [REFRESH_FAULTS[fault]] * 2

    async def gettoken(request: web.Request) -> web.StreamResponse:
        if faults:
            return await answer(request, faults.pop(0))
        return server.issue_token(request)

    server.gettoken = gettoken
    server.route = script()
    waits = Waits()
    policy = policy_for(waits, 4)
    hooks = Recorder() if listening else None
    client = client_for(policy, hooks=hooks)
    # A view that would not retry at all may start the refresh: it still runs under
    # the client's policy, for every caller.
    view = client.with_options(retry=RetryPolicy(max_attempts=1))
    callers = [view, client] if starter == "impatient view" else [client]
    results = await asyncio.gather(
        *(callers[i % len(callers)].external_contact.list(f"u{i}") for i in range(100))
    )
    assert results == [["wm1"]] * 100
    assert server.gettoken_calls == 3 <= policy.max_attempts
    assert server.tokens_issued == 1 and server.hits == 100
    stats = client.stats
    assert (stats.calls, stats.requests, stats.retries, stats.token_fetches) == (100, 103, 2, 3)
    assert waits.waits == expected_waits(policy, 2)
    if hooks is not None:
        assert [e.outcome for e in hooks.events if isinstance(e, TokenRefreshed)] == ["ok"]


async def test_a_hundred_callers_share_a_refresh_that_fails_on_every_try(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    server.gettoken = lambda request: web.json_response(BUSY)
    waits = Waits()
    policy = policy_for(waits, 4)
    client = client_for(policy)
    results = await asyncio.gather(
        *(client.external_contact.list(f"u{i}") for i in range(100)), return_exceptions=True
    )
    assert all(type(r) is WeComBusyError for r in results), {type(r) for r in results}
    assert server.gettoken_calls == policy.max_attempts and server.hits == 0
    assert client.stats.retries == policy.max_attempts - 1
    assert waits.waits == expected_waits(policy, policy.max_attempts - 1)
    server.gettoken = lambda request: web.json_response({"errcode": 40001, "errmsg": "bad"})
    server.arrivals.clear()
    results = await asyncio.gather(
        *(client.external_contact.list(f"u{i}") for i in range(100)), return_exceptions=True
    )
    assert all(type(r) is WeComPermissionError for r in results)
    assert server.gettoken_calls == 1  # a permanent refresh error is not retried at all


# -- 4. closing and cancelling, at each place a call can be --


async def wait_until(check: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not check():  # noqa: ASYNC110 - what is awaited has no event of its own
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), 5)


class Gate:
    """A route (or gettoken) that holds every request until released."""

    def __init__(self) -> None:
        self.held = 0
        self.release = asyncio.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.held += 1
        await self.release.wait()
        return web.json_response(OK)


async def closed_out(client: WeComClient, tasks: list[asyncio.Task[Any]]) -> list[Any]:
    started = time.monotonic()
    await client.aclose()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2)
    assert time.monotonic() - started < 1.0
    return results


@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "hooks"])
async def test_aclose_during_the_first_try(
    server: TinyServer, client_for: Callable[..., WeComClient], listening: bool
) -> None:
    waits, hooks = Waits(), Recorder()
    client = client_for(policy_for(waits, 3), hooks=hooks if listening else None)
    await client.external_contact.list("warm")
    gate = server.route = Gate()
    tasks = [asyncio.create_task(client.external_contact.list("u")) for _ in range(10)]
    try:
        await wait_until(lambda: gate.held == 10)
        results = await closed_out(client, tasks)
    finally:
        gate.release.set()
    assert all(type(r) is WeComClosedError for r in results), results
    assert server.hits == 1 + 10 and waits.waits == [] and client.stats.retries == 0
    if listening:
        ends = [e for e in hooks.events if isinstance(e, CallEnded) and e.path == DATA]
        # Every call told its end once, as before the change: with the cancellation
        # that aclose() delivered (the caller gets WeComClosedError).
        assert [e.error for e in ends] == [None] + ["CancelledError"] * 10


@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "hooks"])
async def test_aclose_during_a_retry_wait(
    server: TinyServer, client_for: Callable[..., WeComClient], listening: bool
) -> None:
    waits = Waits(forever=True)
    waits.expect = 10
    client = client_for(policy_for(waits, 3), hooks=Recorder() if listening else None)
    view = client.with_options(timeout=5)
    server.route = script(then=BUSY)
    tasks = [
        asyncio.create_task((view if i % 2 else client).external_contact.list("u"))
        for i in range(10)
    ]
    await asyncio.wait_for(waits.entered.wait(), 5)
    results = await closed_out(client, tasks)
    assert all(type(r) is WeComClosedError for r in results), results
    assert server.hits == 10 and client.stats.retries == 10


@pytest.mark.parametrize("where", ["gettoken answering", "gettoken retry wait"])
async def test_aclose_during_a_token_refresh(
    server: TinyServer, client_for: Callable[..., WeComClient], where: str
) -> None:
    waits = Waits(forever=True)
    gate = Gate()
    if where == "gettoken answering":
        server.gettoken = gate
    else:
        server.gettoken = lambda request: web.json_response(BUSY)
    client = client_for(policy_for(waits, 3))
    tasks = [asyncio.create_task(client.external_contact.list("u")) for _ in range(10)]
    try:
        if where == "gettoken answering":
            await wait_until(lambda: gate.held == 1)
        else:
            await asyncio.wait_for(waits.entered.wait(), 5)
        results = await closed_out(client, tasks)
    finally:
        gate.release.set()
    assert all(type(r) is WeComClosedError for r in results), results
    assert server.gettoken_calls == 1 and server.hits == 0


async def test_a_callers_own_cancellation_in_the_first_try_and_in_a_retry_wait(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    waits = Waits(forever=True)
    policy = policy_for(waits, 3)
    client = client_for(policy)
    await client.external_contact.list("warm")
    # In the first try, while another caller's first try goes on.
    gate = server.route = Gate()
    mine = asyncio.create_task(client.external_contact.list("u"))
    theirs = asyncio.create_task(client.external_contact.list("u"))
    await wait_until(lambda: gate.held == 2)
    mine.cancel()
    with pytest.raises(asyncio.CancelledError):
        await mine
    gate.release.set()
    assert await asyncio.wait_for(theirs, 5) == ["wm1"]
    # In a retry wait.
    server.route = script(then=BUSY)
    mine = asyncio.create_task(client.external_contact.list("u"))
    await asyncio.wait_for(waits.entered.wait(), 5)
    mine.cancel()
    with pytest.raises(asyncio.CancelledError):
        await mine
    assert len(policy._idle) == 1  # the controller went back
    # Cancelled in a retry wait, then closed: still the caller's own cancellation.
    waits.entered.clear()
    waits.expect = len(waits.waits) + 1
    mine = asyncio.create_task(client.external_contact.list("u"))
    await asyncio.wait_for(waits.entered.wait(), 5)
    mine.cancel()
    await client.aclose()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(mine, 2)


async def test_a_caller_cancelled_while_waiting_on_a_refresh_leaves_it_to_the_others(
    server: TinyServer, client_for: Callable[..., WeComClient]
) -> None:
    faults: list[Any] = [BUSY]
    gate = Gate()

    async def gettoken(request: web.Request) -> web.StreamResponse:
        if faults:  # the first try fails; the retry is held until released
            return await answer(request, faults.pop(0))
        gate.held += 1
        await gate.release.wait()
        return server.issue_token(request)

    server.gettoken = gettoken
    server.route = script()
    client = client_for(policy_for(Waits(), 3))
    starter = asyncio.create_task(client.external_contact.list("u"))
    waiter = asyncio.create_task(client.external_contact.list("u"))
    await wait_until(lambda: gate.held == 1)
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    gate.release.set()
    assert await asyncio.wait_for(waiter, 5) == ["wm1"]
    assert server.gettoken_calls == 2 and server.tokens_issued == 1 and server.hits == 1


def server_token(server: TinyServer) -> str:
    return f"TOKEN-{server.tokens_issued}-0123456789abcdef"


# -- 5. the raised error is the typed one, with no chain and no secret --


@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "hooks"])
async def test_errors_and_debug_logs_carry_no_chain_and_no_secret(
    server: TinyServer,
    client_for: Callable[..., WeComClient],
    caplog: pytest.LogCaptureFixture,
    listening: bool,
) -> None:
    def echo(request: web.Request) -> dict[str, Any]:
        told = f"{request.query.get('access_token')} {SECRET} {request.url}"
        return {"errcode": -1, "errmsg": f"busy {told}"}

    async def route(request: web.Request) -> web.StreamResponse:
        kind = kinds[0]
        if kind == "echo":
            return web.json_response(echo(request))
        if kind == "echo permanent":
            return web.json_response({**echo(request), "errcode": 40096})
        if kind == "echo html":  # the token whole within the preview the error shows
            return web.Response(status=200, text=f"{request.query_string}<html>")
        return await answer(request, kind)

    kinds = ["echo"]
    server.route = route
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="wecom_async"):
        client = client_for(policy_for(Waits(), 3), hooks=Recorder() if listening else None)
        for kind in ["echo", "echo permanent", "echo html", 502, "drop", 429]:
            kinds[0] = kind
            with pytest.raises(WeComError) as raised:
                await client.external_contact.list("u")
            errors.append(raised.value)
        server.gettoken = lambda request: web.json_response(
            {"errcode": 40001, "errmsg": f"invalid credential {request.url}"}
        )
        refused = client_for(policy_for(Waits(), 3))  # a pool of its own: no token yet
        with pytest.raises(WeComPermissionError) as raised:
            await refused.request("GET", "user/get")
        errors.append(raised.value)
        await client.aclose()
        with pytest.raises(WeComClosedError) as raised:
            await client.external_contact.list("u")
        errors.append(raised.value)

    token = server_token(server)
    texts = [r.getMessage() for r in caplog.records]
    assert any("retrying" in t for t in texts) and any("GET" in t for t in texts)
    for error in errors:
        assert isinstance(error, WeComError) and not isinstance(error, tenacity.RetryError)
        assert error.__cause__ is None
        if sys.version_info >= (3, 11):
            # On 3.10 pytest-asyncio runs the test on asyncio's pure-Python Task
            # (backports.asyncio.runner), whose __wakeup steps the coroutine inside an
            # `except`: whatever is raised in that step gets the awaited future's
            # exception as __context__ (aiohttp's ServerDisconnectedError here).
            assert error.__context__ is None, (error, error.__context__)
        chain: BaseException | None = error
        while chain is not None:
            texts += [str(chain), repr(chain)]
            chain = chain.__cause__ or chain.__context__
    for text in texts:
        assert token not in text and token[:12] not in text, text
        assert SECRET not in text, text


@pytest.mark.parametrize("where", ["body preview", "errcode"])
async def test_a_token_cut_at_the_edge_of_a_shown_excerpt_is_still_masked(
    server: TinyServer, client_for: Callable[..., WeComClient], where: str
) -> None:
    # An error shows 60 characters of a body that is not JSON, and 120 of an errcode
    # that is not an integer: a token that starts inside the excerpt and ends past
    # it must not show its first characters.
    async def route(request: web.Request) -> web.Response:
        token = request.query["access_token"]
        if where == "body preview":
            return web.Response(status=200, text="x" * 40 + token)
        return web.json_response({"errcode": "x" * 100 + token})

    server.route = route
    client = client_for(policy_for(Waits(), 1))
    with pytest.raises(WeComDecodeError) as raised:
        await client.external_contact.list("u")
    text = f"{raised.value} {raised.value!r}"
    assert server_token(server)[:12] not in text, text


# -- 6. no cyclic garbage per call --


def cyclic_garbage_of(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[Any]]:
    """``run`` with the collector off; what a collection then finds of ours, by type."""

    async def measured() -> collections.Counter[str]:
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await run()
            gc.collect()
            return collections.Counter(
                f"{type(o).__module__}.{type(o).__qualname__}"
                for o in gc.garbage
                if type(o).__module__.startswith(("tenacity", "wecom_async"))
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    return measured


@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "hooks"])
@pytest.mark.parametrize("how", ["fail once", "fail every try"])
@pytest.mark.parametrize("fault", [BUSY, 502, "drop"], ids=["errcode -1", "HTTP 502", "drop"])
async def test_failing_calls_leave_no_cyclic_garbage(
    server: TinyServer,
    client_for: Callable[..., WeComClient],
    how: str,
    fault: Any,
    listening: bool,
) -> None:
    client = client_for(policy_for(Waits(), 3), hooks=Recorder() if listening else None)
    await client.external_contact.list("warm")
    fails = how == "fail every try"

    async def two_hundred() -> None:
        for _ in range(200):
            server.route = script(fault, then=fault if fails else OK)
            try:
                await client.external_contact.list("u")
            except WeComError:
                assert fails
        assert server.hits == 1 + 200 * (3 if fails else 2)

    ours = await cyclic_garbage_of(two_hundred)()
    if not fails:
        assert sum(ours.values()) < 10, dict(ours)
        return
    # Known and left alone: a call that fails every try leaves tenacity's own cycle
    # (its finished frames in the raised error's traceback hold the call's state,
    # whose last outcome holds the error), one of each per call, for the collector,
    # with the last try's answer in its frame. Nothing more: not the first try's
    # error or answer, not a second trace.
    tenacitys = {
        "wecom_async.client._Answer",
        "tenacity.RetryCallState",
        "tenacity.AttemptManager",
        "tenacity.Future",
        "tenacity.RetryError",
        "wecom_async._observe.CallTrace",
    }
    errors = {name: n for name, n in ours.items() if name.startswith("wecom_async.errors.")}
    others = {name: n for name, n in ours.items() if name not in tenacitys and name not in errors}
    assert others == {}, dict(ours)
    assert all(n <= 200 for n in ours.values()), dict(ours)
    assert sum(errors.values()) <= 200, dict(ours)


async def test_the_first_failure_is_not_kept_alive_by_the_raised_error() -> None:
    # RetryPolicy.run deletes its `first` (the first try's exc_info) so that nothing
    # keeps the first failure once tenacity has moved on. Nothing else may either.
    policy = RetryPolicy(max_attempts=3, backoff_base=0, sleep=Waits())
    made: list[weakref.ref[BaseException]] = []

    def fresh() -> WeComBusyError:
        error = WeComBusyError(-1, "system busy", DATA)
        made.append(weakref.ref(error))
        return error

    async def attempt() -> None:
        raise fresh()  # no frame of the try refers to its error

    gc.disable()
    try:
        with pytest.raises(WeComBusyError) as raised:
            await policy.run(lambda wait, error, n: None, attempt)
        assert len(made) == 3 and made[-1]() is raised.value
        alive = [n for n, ref in enumerate(made[:-1], start=1) if ref() is not None]
        assert alive == [], f"tries {alive} are still referenced by the raised error"
    finally:
        gc.enable()


# -- 7. a BaseException that is not an Exception passes untouched --


class Abort(BaseException):
    """Like KeyboardInterrupt or SystemExit: not an Exception, not to be retried."""


@pytest.mark.parametrize("on_try", [1, 2])
async def test_a_base_exception_from_a_try_propagates_untouched(
    server: TinyServer, client_for: Callable[..., WeComClient], on_try: int
) -> None:
    raised: list[Abort] = []
    armed = [False]

    class Aborting:
        def on_attempt(self, event: AttemptEnded) -> None:
            if armed[0] and event.path == DATA and event.attempt == on_try:
                raised.append(Abort(event.attempt))
                raise raised[-1]

    waits = Waits()
    policy = policy_for(waits, 3)
    client = client_for(policy, hooks=Aborting())
    await client.external_contact.list("warm")
    armed[0] = True
    for _ in range(100):
        server.route = script(BUSY)
        with pytest.raises(Abort) as info:
            await client.external_contact.list("u")
        assert info.value is raised[-1]
    assert server.hits == 1 + 100 * on_try
    assert client.stats.retries == 100 * (on_try - 1)
    # A first try that aborts takes no controller; a later one gives its back.
    assert len(policy._idle) == on_try - 1
    armed[0] = False
    server.route = script(BUSY)
    assert await client.external_contact.list("u") == ["wm1"]  # and the client still works


async def test_a_base_exception_from_the_first_try_skips_tenacity() -> None:
    policy = RetryPolicy(max_attempts=3, sleep=Waits())
    interrupt = KeyboardInterrupt()

    async def attempt() -> None:
        raise interrupt

    for _ in range(200):
        with pytest.raises(KeyboardInterrupt) as info:
            await policy.run(lambda wait, error, n: None, attempt)
        assert info.value is interrupt and info.value.__context__ is None
    assert policy._idle == []


# -- 8. concurrency: one policy, many calls, none sharing a controller --


async def test_five_hundred_concurrent_calls_with_a_third_failing_once(
    server: TinyServer, client_for: Callable[..., WeComClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(20261124)
    users = [f"user{i:03d}" for i in range(500)]
    failing = set(rng.sample(users, len(users) // 3))
    seen: collections.Counter[str] = collections.Counter()

    async def route(request: web.Request) -> web.StreamResponse:
        user = request.query["userid"]
        seen[user] += 1
        await asyncio.sleep(rng.random() / 100)
        if user in failing and seen[user] == 1:
            return web.json_response(
                rng.choice([BUSY, {"errcode": 45033, "errmsg": "concurrency"}])
            )
        return web.json_response({"errcode": 0, "external_userid": [f"of-{user}"]})

    server.route = route
    in_use: set[int] = set()
    shared: list[int] = []
    most = 0
    resume = _retry._CallRetrying.resume

    async def watched_resume(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal most
        if id(self) in in_use:
            shared.append(id(self))
        in_use.add(id(self))
        most = max(most, len(in_use))
        try:
            return await resume(self, *args, **kwargs)
        finally:
            in_use.discard(id(self))

    monkeypatch.setattr(_retry._CallRetrying, "resume", watched_resume)

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)  # real waits, so failed calls overlap in tenacity

    policy = RetryPolicy(max_attempts=3, backoff_base=0.02, backoff_max=0.05, sleep=sleep)
    hooks = Recorder()
    client = client_for(policy, hooks=hooks)
    await client.external_contact.list("warm")
    hooks.events.clear()
    results = await asyncio.gather(*(client.external_contact.list(u) for u in users))

    assert results == [[f"of-{u}"] for u in users]
    assert shared == [] and most > 1  # several controllers at once, never one for two calls
    assert len(policy._idle) <= _retry._MAX_IDLE
    assert {u: seen[u] for u in users} == {u: 2 if u in failing else 1 for u in users}
    assert client.stats.retries == len(failing)
    # Each call's attempts were numbered on its own: 1, or 1 then 2.
    numbers: dict[str, list[int]] = collections.defaultdict(list)
    for e in hooks.events:
        if isinstance(e, AttemptEnded):
            numbers[e.url.rsplit("userid=", 1)[1]].append(e.attempt)
    assert numbers == {u: [1, 2] if u in failing else [1] for u in users}
    retries = [e for e in hooks.events if isinstance(e, RetryScheduled)]
    assert len(retries) == len(failing) and {e.attempt for e in retries} == {1}
    ends = [e for e in hooks.events if isinstance(e, CallEnded)]
    assert sorted(e.attempts for e in ends) == sorted(2 if u in failing else 1 for u in users)
