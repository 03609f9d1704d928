"""Hooks, attacked over loopback: what they are told, that a raising hook breaks
nothing, and that no event ever carries a secret."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer, hang_up
from wecom_async import (
    RateLimit,
    RetryPolicy,
    SessionPool,
    WeComClient,
    WeComInputError,
    WeComPermissionError,
)
from wecom_async.hooks import (
    HOOK_NAMES,
    AttemptEnded,
    CallEnded,
    CallStarted,
    Hooks,
    PauseEnded,
    PauseStarted,
    RateLimitWaited,
    RetryScheduled,
    TokenRefreshed,
)

OK = {"errcode": 0, "external_userid": ["wm1"]}
FAST = RetryPolicy(max_attempts=5, backoff_base=0.001, backoff_max=0.01)


class Recorder:
    """Keeps every event, in order: each hook method appends its event."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        if name in HOOK_NAMES:
            return self.events.append
        raise AttributeError(name)

    def of(self, kind: type[Any], path: str | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (path is None or getattr(e, "path", None) == path)
        ]


def assert_no_secret(events: list[Any], server: TinyServer) -> None:
    tokens = [f"TOKEN-{i}-0123456789abcdef" for i in range(1, server.tokens_issued + 1)]
    text = "\n".join(repr(e) for e in events)
    assert tokens and all(t not in text for t in tokens)
    assert SECRET not in text
    assert "access_token" not in text and "corpsecret" not in text


def scripted(*answers: Any) -> Any:
    """A route answering ``answers`` in order, then OK for ever."""
    queue = list(answers)

    async def route(request: web.Request) -> web.StreamResponse:
        answer = queue.pop(0) if queue else OK
        if answer == "drop":
            return await hang_up(request)
        if isinstance(answer, int):
            return web.Response(status=answer, text="<html>bad gateway</html>")
        return web.json_response(answer)

    return route


async def test_attempts_retries_and_the_call_are_told_with_their_figures(
    server: TinyServer,
) -> None:
    server.route = scripted({"errcode": -1, "errmsg": "busy"}, 502, "drop")
    hooks = Recorder()
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=FAST, hooks=hooks
    ) as client:
        assert await client.external_contact.list("zhangsan") == ["wm1"]

    data = "externalcontact/list"
    starts, ends = hooks.of(CallStarted, data), hooks.of(CallEnded, data)
    assert starts == [CallStarted(CORP_ID, data, "GET")]
    attempts = hooks.of(AttemptEnded, data)
    assert [(a.attempt, a.status, a.errcode, a.error) for a in attempts] == [
        (1, 200, -1, "WeComBusyError"),
        (2, 502, None, "WeComTransportError"),
        (3, None, None, "WeComTransportError"),
        (4, 200, 0, None),
    ]
    ok = attempts[-1]
    assert ok.corp_id == CORP_ID and ok.method == "GET"
    assert ok.body_size == len(b'{"errcode": 0, "external_userid": ["wm1"]}')
    assert ok.url == server.base_url + "externalcontact/list?userid=zhangsan"
    assert all(0 < a.duration < 5 for a in attempts)
    retries = hooks.of(RetryScheduled, data)
    assert [(r.attempt, r.error, r.errcode) for r in retries] == [
        (1, "WeComBusyError", -1),
        (2, "WeComTransportError", None),
        (3, "WeComTransportError", None),
    ]
    assert all(0 <= r.wait <= FAST.backoff_max and r.max_attempts == 5 for r in retries)
    assert "HTTP 502" in retries[1].message
    (end,) = ends
    assert (end.attempts, end.errcode, end.error) == (4, 0, None)
    assert end.duration >= sum(a.duration for a in attempts)
    # The order is the order things happened in: start, attempt, retry, ..., end.
    order = [type(e).__name__ for e in hooks.events if getattr(e, "path", data) == data]
    assert order[0] == "CallStarted" and order[-1] == "CallEnded"
    # gettoken is a logical call of its own, refreshed once and told so.
    (refresh,) = hooks.of(TokenRefreshed)
    assert (refresh.outcome, refresh.error, refresh.corp_id) == ("ok", None, CORP_ID)
    (token_attempt,) = hooks.of(AttemptEnded, "gettoken")
    assert token_attempt.url == server.base_url + f"gettoken?corpid={CORP_ID}"
    assert_no_secret(hooks.events, server)


async def test_a_revoked_token_is_a_second_attempt_of_the_same_call(server: TinyServer) -> None:
    server.route = scripted({"errcode": 40014, "errmsg": "invalid access_token"})
    hooks = Recorder()
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, hooks=hooks) as client:
        await client.external_contact.list("u")
    attempts = hooks.of(AttemptEnded, "externalcontact/list")
    assert [(a.attempt, a.errcode) for a in attempts] == [(1, 40014), (2, 0)]
    assert [r.outcome for r in hooks.of(TokenRefreshed)] == ["ok", "ok"]
    (end,) = hooks.of(CallEnded, "externalcontact/list")
    assert end.attempts == 2 and end.error is None
    assert_no_secret(hooks.events, server)


async def test_a_failed_refresh_is_told_with_its_errcode(server: TinyServer) -> None:
    server.gettoken = lambda request: web.json_response(
        {"errcode": 40001, "errmsg": f"invalid credential {request.query['corpsecret']}"}
    )
    hooks = Recorder()
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=FAST, hooks=hooks
    ) as client:
        with pytest.raises(WeComPermissionError):
            await client.external_contact.list("u")
    (refresh,) = hooks.of(TokenRefreshed)
    assert (refresh.outcome, refresh.error, refresh.errcode) == (
        "error",
        "WeComPermissionError",
        40001,
    )
    (end,) = hooks.of(CallEnded, "externalcontact/list")
    assert (end.attempts, end.errcode, end.error) == (0, 40001, "WeComPermissionError")
    text = "\n".join(repr(e) for e in hooks.events)
    assert SECRET not in text  # the echoed secret was masked before any hook saw it


async def test_rate_limit_waits_are_told_with_the_time_waited(server: TinyServer) -> None:
    server.route = scripted()
    hooks = Recorder()
    limit = RateLimit(2, 0.3)
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, rate_limit=limit, hooks=hooks
    ) as client:
        await client.external_contact.list("warm")  # the token, outside the test
        await asyncio.sleep(limit.period)
        hooks.events.clear()
        await asyncio.gather(*(client.external_contact.list("u") for _ in range(4)))
    waits = hooks.of(RateLimitWaited, "externalcontact/list")
    # Two calls found room; two waited for a slot to cool down.
    assert len(waits) == 2
    assert all(0.2 < w.waited < 2.0 for w in waits)
    assert waits[0].corp_id == CORP_ID


async def test_a_45009_pause_is_told_when_it_starts_and_when_a_probe_ends_it(
    server: TinyServer,
) -> None:
    server.route = scripted({"errcode": 45009, "errmsg": "api freq out of limit"})
    hooks = Recorder()
    policy = RetryPolicy(max_attempts=4, backoff_base=0.001, backoff_max=0.2)
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=policy, hooks=hooks
    ) as client:
        await client.external_contact.list("u")
    data = "externalcontact/list"
    (start,) = hooks.of(PauseStarted, data)
    assert (start.corp_id, start.seconds, start.renewed) == (CORP_ID, 0.2, False)
    (end,) = hooks.of(PauseEnded, data)
    assert 0.2 <= end.paused_for < 2.0
    kinds = [type(e) for e in hooks.events if getattr(e, "path", None) == data]
    assert kinds.index(PauseStarted) < kinds.index(PauseEnded)
    # The pause ended with the probe's answer, after its attempt was told.
    assert kinds.index(PauseEnded) > len(kinds) - 4
    assert [a.errcode for a in hooks.of(AttemptEnded, data)] == [45009, 0]


async def test_a_hook_that_raises_is_logged_and_the_call_goes_on(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            if not name.startswith("on_"):
                raise AttributeError(name)

            def hook(event: Any) -> None:
                raise RuntimeError(f"broken {name}")

            hook.__qualname__ = f"Broken.{name}"
            return hook

    server.route = scripted({"errcode": 45009}, {"errcode": -1}, 502)
    good = Recorder()
    policy = RetryPolicy(max_attempts=5, backoff_base=0.001, backoff_max=0.05)
    with caplog.at_level(logging.WARNING, logger="wecom_async"):
        async with WeComClient(
            CORP_ID,
            SECRET,
            base_url=server.base_url,
            retry=policy,
            rate_limit=RateLimit(1, 0.05),
            hooks=[Broken(), good],
        ) as client:
            results = await asyncio.gather(*(client.external_contact.list("u") for _ in range(3)))
    assert results == [["wm1"]] * 3
    broken = [r for r in caplog.records if "raised on" in r.getMessage()]
    told = {r.getMessage().split()[1] for r in broken}
    assert told == {f"Broken.{n}" for n in Hooks.__dict__ if n.startswith("on_")}
    assert all(r.exc_info and r.corp_id == CORP_ID for r in broken)  # type: ignore[attr-defined]
    # The hook after the broken one was still told everything.
    assert len(good.of(CallEnded, "externalcontact/list")) == 3


async def test_pool_hooks_see_every_client_and_views_share_them(server: TinyServer) -> None:
    server.route = scripted()
    on_pool, on_a = Recorder(), Recorder()
    async with SessionPool(hooks=on_pool) as pool:
        a = WeComClient("corp-a", SECRET, base_url=server.base_url, pool=pool, hooks=on_a)
        b = WeComClient("corp-b", SECRET, base_url=server.base_url, pool=pool)
        async with a, b:
            await a.external_contact.list("u")
            await b.external_contact.list("u")
            await a.with_options(timeout=3).external_contact.list("u")
    corps = [e.corp_id for e in on_pool.of(CallEnded, "externalcontact/list")]
    assert corps == ["corp-a", "corp-b", "corp-a"]
    assert [e.corp_id for e in on_a.of(CallEnded, "externalcontact/list")] == ["corp-a"] * 2


def test_async_or_uncallable_hooks_are_refused_up_front() -> None:
    class AsyncHook:
        async def on_attempt(self, event: AttemptEnded) -> None: ...

    class NotCallable:
        on_retry = 3

    with pytest.raises(WeComInputError, match="async"):
        WeComClient(CORP_ID, SECRET, hooks=AsyncHook())
    with pytest.raises(WeComInputError, match="not callable"):
        SessionPool(hooks=[NotCallable()])


async def test_hooks_never_see_a_secret_under_mixed_faults(server: TinyServer) -> None:
    # Every kind of answer, tokens revoked along the way, a server echoing the secret.
    answers = itertools.cycle(
        [
            OK,
            {"errcode": -1, "errmsg": "busy"},
            "drop",
            {"errcode": 40014, "errmsg": "invalid access_token"},
            502,
            {"errcode": 45009, "errmsg": f"freq, secret={SECRET}"},
            {"errcode": 40096, "errmsg": "bad id"},
        ]
    )

    async def route(request: web.Request) -> web.StreamResponse:
        return await scripted(next(answers))(request)

    server.route = route
    hooks = Recorder()
    policy = RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_max=0.02)
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=policy, hooks=hooks
    ) as client:
        await asyncio.gather(
            *(client.external_contact.list(f"u{i}") for i in range(40)), return_exceptions=True
        )
    kinds = {type(e) for e in hooks.events}
    assert {AttemptEnded, RetryScheduled, TokenRefreshed, PauseStarted, PauseEnded} <= kinds
    assert server.tokens_issued >= 2
    assert_no_secret(hooks.events, server)
