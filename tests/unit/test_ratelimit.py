"""The sliding-window guarantee, checked from the times the mock server saw."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.conftest import BASE, CORP_ID, SECRET, Call, MockWeCom
from wecom_async import RateLimit, SessionPool, WeComClient, WeComInputError
from wecom_async._ratelimit import (
    DEFAULT_LIMITS,
    LocalRateLimiter,
    SlidingWindow,
    normalize_limits,
)
from wecom_async.testing import most_in_any_window

PATH = "externalcontact/list"


def latency_handler(low: float, high: float, seed: int = 7) -> Any:
    rng = random.Random(seed)

    async def handler(call: Call) -> dict[str, Any]:
        await asyncio.sleep(rng.uniform(low, high))  # network jitter, seeded
        return {"errcode": 0, "errmsg": "ok", "external_userid": []}

    return handler


def most_slots_held(calls: list[Call], period: float) -> int:
    """At each arrival, how many calls (itself included) started and had not yet
    answered plus ``period``: the limiter promises at most ``max_calls``."""
    return max(sum(1 for o in calls if o.arrived <= c.arrived < o.answered + period) for c in calls)


async def run_calls(client: WeComClient, n: int) -> None:
    await asyncio.gather(*(client.external_contact.list(f"u{i}") for i in range(n)))


async def test_no_window_sees_more_than_max_calls(wecom: MockWeCom) -> None:
    wecom.on("GET", PATH, latency_handler(0.0, 0.04))
    limit = RateLimit(5, 0.2)
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, rate_limit=limit) as client:
        await run_calls(client, 25)
    calls = wecom.calls_to(PATH)
    assert len(calls) == 25
    assert most_in_any_window([c.arrived for c in calls], 0.2) == 5
    # The window is measured from each answer, so jitter cannot squeeze a sixth in.
    assert most_slots_held(calls, 0.2) <= 5


async def test_every_limit_of_a_sequence_holds(wecom: MockWeCom) -> None:
    wecom.on("GET", PATH, latency_handler(0.0, 0.01))
    limits = [RateLimit(2, 0.1), RateLimit(4, 0.5)]
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, rate_limit=limits) as client:
        await run_calls(client, 10)
    arrivals = [c.arrived for c in wecom.calls_to(PATH)]
    assert most_in_any_window(arrivals, 0.1) <= 2
    assert most_in_any_window(arrivals, 0.5) <= 4


async def test_clients_of_one_corp_on_one_pool_share_a_budget(wecom: MockWeCom) -> None:
    wecom.on("GET", PATH, latency_handler(0.0, 0.01))
    limit = RateLimit(3, 0.2)
    async with SessionPool() as pool:
        a = WeComClient(CORP_ID, SECRET, base_url=BASE, pool=pool, rate_limit=limit)
        b = WeComClient(CORP_ID, "another-app-secret", base_url=BASE, pool=pool, rate_limit=limit)
        wecom.revoked.clear()
        # The second app's secret is wrong for the mock's gettoken; give both one token.
        b._tokens = a._tokens
        await asyncio.gather(run_calls(a, 6), run_calls(b, 6))
        await a.aclose()
        await b.aclose()
        assert not pool.closed  # a client never closes a pool it was given
    assert most_in_any_window([c.arrived for c in wecom.calls_to(PATH)], 0.2) == 3


async def test_corps_have_separate_budgets(wecom: MockWeCom) -> None:
    wecom.on("GET", PATH, latency_handler(0.0, 0.0))
    slow = RateLimit(3, 30.0)  # a fourth call in one corp would wait 30 s
    async with SessionPool() as pool:
        a = WeComClient(CORP_ID, SECRET, base_url=BASE, pool=pool, rate_limit=slow)
        b = WeComClient("ww-other-corp", SECRET, base_url=BASE, pool=pool, rate_limit=slow)
        await asyncio.wait_for(asyncio.gather(run_calls(a, 3), run_calls(b, 3)), timeout=5)
        await a.aclose()
        await b.aclose()


async def test_one_corp_cannot_have_two_budget_sizes() -> None:
    async with SessionPool() as pool:
        WeComClient(CORP_ID, SECRET, base_url=BASE, pool=pool, rate_limit=RateLimit(3, 1))
        with pytest.raises(ValueError, match="share one budget"):
            WeComClient(CORP_ID, SECRET, base_url=BASE, pool=pool, rate_limit=RateLimit(4, 1))


async def test_an_empty_sequence_turns_the_limit_off(wecom: MockWeCom) -> None:
    everyone_in = asyncio.Event()
    in_flight = 0

    async def handler(call: Call) -> dict[str, Any]:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 50:
            everyone_in.set()
        await asyncio.wait_for(everyone_in.wait(), timeout=2)
        return {"errcode": 0, "external_userid": []}

    wecom.on("GET", PATH, handler)
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, rate_limit=[]) as client:
        await run_calls(client, 50)


def test_limits_normalise_and_validate() -> None:
    assert normalize_limits(None) == DEFAULT_LIMITS
    assert (RateLimit(10_000, 60.0), RateLimit(150_000, 3600.0)) == DEFAULT_LIMITS
    assert normalize_limits([RateLimit(5, 2), RateLimit(1, 1)]) == (
        RateLimit(1, 1),
        RateLimit(5, 2),
    )
    assert normalize_limits([]) == ()
    for bad_list in ([(5, 1)], [1], 5, "10/s"):
        with pytest.raises(WeComInputError):
            normalize_limits(bad_list)  # type: ignore[arg-type]
    for bad in [(0, 1), (1, 0), (1.5, 1), (1, float("inf")), (True, 1)]:
        with pytest.raises(WeComInputError):
            RateLimit(*bad)  # type: ignore[arg-type]


# -- the window on its own --


async def test_waiters_are_served_in_order_and_a_cancelled_one_loses_no_slot() -> None:
    window = SlidingWindow([RateLimit(1, 0.05)])
    held = await window.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        slot = await window.acquire()
        order.append(name)
        slot.release()

    first = asyncio.create_task(take("first"))
    doomed = asyncio.create_task(take("doomed"))
    last = asyncio.create_task(take("last"))
    await asyncio.sleep(0)
    doomed.cancel()
    held.release()
    await asyncio.wait_for(asyncio.gather(first, last), timeout=2)
    assert order == ["first", "last"]
    assert doomed.cancelled()
    # Every slot came back: one more acquire succeeds once the cool-downs pass.
    await asyncio.wait_for(window.acquire(), timeout=1)


async def test_a_waiter_cancelled_as_its_slot_arrives_gives_the_slot_back() -> None:
    window = SlidingWindow([RateLimit(1, 0.01)])
    (state,) = window._windows
    held = await window.acquire()
    waiter = asyncio.create_task(window.acquire())
    await asyncio.sleep(0)
    held.release()
    # Poll until the timer has handed the slot to the waiter; the waiter task has
    # not run yet (its wake-up is queued behind this coroutine), so cancel it now.
    while state.in_flight == 0:  # noqa: ASYNC110 - the point is to yield one step at a time
        await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()
    assert state.in_flight == 0  # handed back, not leaked
    await asyncio.wait_for(window.acquire(), timeout=1)


async def test_a_cancelled_waiter_passes_its_turn_to_the_next_one() -> None:
    window = SlidingWindow([RateLimit(1, 0.01)])
    (state,) = window._windows
    held = await window.acquire()
    doomed = asyncio.create_task(window.acquire())
    await asyncio.sleep(0)
    follower = asyncio.create_task(window.acquire())
    await asyncio.sleep(0)
    held.release()
    while state.in_flight == 0:  # noqa: ASYNC110 - wait for the hand-over, step by step
        await asyncio.sleep(0)
    doomed.cancel()  # cancelled with the slot in hand: the follower must get it
    await asyncio.wait_for(follower, timeout=1)
    assert doomed.cancelled()


async def test_expired_cool_downs_of_a_long_window_never_make_the_timer_spin() -> None:
    # The long window's first cool-down ends (at 0.6 s) while the short window is
    # still full (until about 0.65 s): that ended cool-down must not arm the timer.
    window = SlidingWindow([RateLimit(1, 0.3), RateLimit(100, 0.6)])
    (await window.acquire()).release()  # short window free at 0.3, long at 0.6
    await asyncio.sleep(0.35)
    (await window.acquire()).release()  # short window full again until about 0.65
    fired = 0
    on_timer = window._on_timer

    def counting(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal fired
        fired += 1
        on_timer(loop)

    window._on_timer = counting  # type: ignore[method-assign]
    await asyncio.wait_for(window.acquire(), timeout=2)
    assert fired <= 2  # one timer at the end of the cool-down, not a busy loop


async def test_a_client_without_limits_cannot_join_a_limited_corp_budget() -> None:
    async with SessionPool() as pool:
        WeComClient(CORP_ID, SECRET, base_url=BASE, pool=pool, rate_limit=RateLimit(3, 1))
        with pytest.raises(ValueError, match="share one budget"):
            WeComClient(CORP_ID, SECRET, base_url=BASE, pool=pool, rate_limit=[])


async def test_a_free_slot_is_taken_without_entering_the_windows_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limiter's fast path: a free slot costs no second coroutine, and never queues."""
    limiter = LocalRateLimiter()
    limits = (RateLimit(2, 60.0),)
    entered: list[SlidingWindow] = []
    original = SlidingWindow.acquire

    async def counting(self: SlidingWindow) -> Any:
        entered.append(self)
        return await original(self)

    monkeypatch.setattr(SlidingWindow, "acquire", counting)
    first = await limiter.acquire(CORP_ID, PATH, limits)
    second = await limiter.acquire(CORP_ID, PATH, limits)
    assert entered == []  # both slots were free
    third = asyncio.create_task(limiter.acquire(CORP_ID, PATH, limits))
    await asyncio.sleep(0)
    assert len(entered) == 1 and not third.done()  # full: this one waits in the queue
    # A newcomer while someone waits never jumps the queue, even once a slot frees.
    fourth = asyncio.create_task(limiter.acquire(CORP_ID, PATH, limits))
    await asyncio.sleep(0)
    first.release()
    second.release()
    assert not third.done() and not fourth.done()  # the cool-down still holds both slots
    (window,) = limiter._windows.values()
    assert [w.done() for w in window._waiters] == [False, False]
    third.cancel()
    fourth.cancel()
    await asyncio.gather(third, fourth, return_exceptions=True)


async def test_the_fast_path_keeps_first_come_first_served() -> None:
    """A slot freed while callers wait goes to the first of them, not to a newcomer."""
    limiter = LocalRateLimiter()
    limits = (RateLimit(1, 0.05),)
    held = await limiter.acquire(CORP_ID, PATH, limits)
    order: list[str] = []

    async def take(name: str) -> None:
        slot = await limiter.acquire(CORP_ID, PATH, limits)
        order.append(name)
        slot.release()

    waiting = asyncio.create_task(take("waiting"))
    await asyncio.sleep(0)
    held.release()  # cool-down: the slot frees in 0.05 s, to the waiter
    late = asyncio.create_task(take("newcomer"))
    await asyncio.wait_for(asyncio.gather(waiting, late), timeout=2)
    assert order == ["waiting", "newcomer"]
