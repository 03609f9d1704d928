"""Client-side rate limiting: a sliding-window guarantee per corp and API path.

WeCom counts calls per corp and per API in fixed minute and hour windows and
answers 45009 (then blocks for the rest of the window) past the limit. An average
rate limiter is not enough: a leaky bucket such as aiolimiter's lets a full burst
through on top of its steady rate, so two bursts can land in one server window.

So each window here is a set of ``max_calls`` slots. A request takes a slot before
it is sent and holds it while in flight. When its answer comes back at ``t``, the
slot stays taken until ``t + period``. WeCom receives a request somewhere between
send and answer, so any ``period``-long window on the server's clock sees at most
``max_calls`` requests, whatever the network jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from .errors import WeComInputError, WeComUsageError

__all__ = [
    "DEFAULT_LIMITS",
    "LocalRateLimiter",
    "RateLimit",
    "RateLimiter",
    "RateSlot",
    "SlidingWindow",
    "normalize_limits",
]


def _positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WeComInputError(f"{attribute.name} must be a positive integer, got {value!r}")


def _positive_finite(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WeComInputError(f"{attribute.name} must be a number of seconds, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise WeComInputError(f"{attribute.name} must be positive and finite, got {value!r}")


@attrs.frozen
class RateLimit:
    """No more than ``max_calls`` requests start within any ``period`` seconds.

    The guarantee holds per corp and per API path, on the server's clock.
    """

    max_calls: int = attrs.field(validator=_positive_int)
    period: float = attrs.field(validator=_positive_finite)


DEFAULT_LIMITS: tuple[RateLimit, ...] = (RateLimit(10_000, 60.0), RateLimit(150_000, 3600.0))
"""WeCom's documented per-corp, per-API limits (developer docs path/90312)."""


def normalize_limits(rate_limit: RateLimit | Iterable[RateLimit] | None) -> tuple[RateLimit, ...]:
    """``None`` means WeCom's defaults; an empty sequence means no client-side limit."""
    if rate_limit is None:
        return DEFAULT_LIMITS
    if isinstance(rate_limit, RateLimit):
        return (rate_limit,)
    if isinstance(rate_limit, (str, bytes)) or not isinstance(rate_limit, Iterable):
        raise WeComInputError(
            f"rate_limit takes a RateLimit or a list of them, got {type(rate_limit).__name__}"
        )
    limits = tuple(rate_limit)
    for limit in limits:
        if not isinstance(limit, RateLimit):
            raise WeComInputError(
                f"rate_limit takes RateLimit objects, got {type(limit).__name__}: {limit!r}"
            )
    # Sorted so that equal configurations compare equal whatever their order.
    return tuple(sorted(set(limits), key=lambda lim: (lim.period, lim.max_calls)))


class _Window:
    """One RateLimit's slots: how many are in flight, and when finished ones free."""

    __slots__ = ("free_at", "in_flight", "limit")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.in_flight = 0
        # Times at which finished requests' slots free up. Answers come back in
        # clock order and the period is constant, so this stays sorted.
        self.free_at: deque[float] = deque()

    def prune(self, now: float) -> None:
        """Forget cool-downs that have ended."""
        free_at = self.free_at
        while free_at and free_at[0] <= now:
            free_at.popleft()

    def has_room(self, now: float) -> bool:
        self.prune(now)
        return self.in_flight + len(self.free_at) < self.limit.max_calls

    def next_free(self) -> float | None:
        return self.free_at[0] if self.free_at else None


class SlidingWindow:
    """The slots of one (corp, path) under every configured RateLimit at once.

    Waiters are served first come, first served. Cancelling a waiter gives its
    slot to the next one; a slot is never lost.
    """

    def __init__(self, limits: Sequence[RateLimit]) -> None:
        self._windows = [_Window(limit) for limit in limits]
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def _has_room(self, now: float) -> bool:
        # Every window is pruned, not just up to the first full one: a window left
        # holding ended cool-downs would arm the timer in the past, again and again.
        room = True
        for w in self._windows:
            if not w.has_room(now):
                room = False
        return room

    def _take(self) -> None:
        for w in self._windows:
            w.in_flight += 1

    def spend(self, now: float) -> None:
        """Count every free slot as used until one period after ``now``.

        For a window that takes over from another it cannot see (a shared one that
        became unreachable): the period so far may have been spent already.
        """
        for w in self._windows:
            free = w.limit.max_calls - w.in_flight - len(w.free_at)
            w.free_at.extend([now + w.limit.period] * max(0, free))

    def try_acquire(self) -> RateSlot | None:
        """A slot at once if one is free and nobody waits for it; else None (nothing taken)."""
        if not self._waiters and self._has_room(asyncio.get_running_loop().time()):
            self._take()
            return _LocalSlot(self)
        return None

    async def acquire(self) -> RateSlot:
        """Wait for a slot in every window, take it, and return it for release."""
        slot = self.try_acquire()
        if slot is not None:
            return slot
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._schedule(loop)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we were cancelled: give it back
                # untouched, as if never taken, so nobody else waits for it.
                for w in self._windows:
                    w.in_flight -= 1
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(waiter)
            self._wake(loop)
            raise
        return _LocalSlot(self)

    def _release(self) -> None:
        """A request's answer (or failure) came back now: start its cool-down."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for w in self._windows:
            w.in_flight -= 1
            w.free_at.append(now + w.limit.period)
        self._wake(loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        while self._waiters and self._has_room(now):
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while queued; its finaliser cleans up
                continue
            self._take()
            waiter.set_result(None)
        self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm one timer for the moment the earliest cool-down ends, if anyone waits."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters:
            return
        now = loop.time()
        for w in self._windows:
            w.prune(now)
        due = [t for w in self._windows if (t := w.next_free()) is not None]
        if due:
            self._timer = loop.call_at(min(due), self._on_timer, loop)
        # With no cool-down pending, every slot is in flight: release() wakes us.

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._wake(loop)


class RateSlot(Protocol):
    """A slot taken from a rate limiter; released once, when the answer is back.

    Releasing a slot a second time raises :class:`~wecom_async.WeComUsageError`:
    counting it twice would free a slot that is still in use.
    """

    def release(self) -> None:
        """Give the slot back: its window counts it until ``period`` after now."""
        ...


class _LocalSlot:
    """One request's slot in a :class:`SlidingWindow`; it can be released once."""

    __slots__ = ("_window",)

    def __init__(self, window: SlidingWindow) -> None:
        self._window: SlidingWindow | None = window

    def release(self) -> None:
        window, self._window = self._window, None
        if window is None:
            raise WeComUsageError("a rate-limit slot was released twice")
        window._release()


class RateLimiter(Protocol):
    """Where rate budgets live. The in-process :class:`LocalRateLimiter` is the default.

    ``acquire`` waits until a request to ``path`` for ``corp_id`` may start under
    every limit in ``limits``, and returns the slot it took; the caller calls the
    slot's ``release()`` exactly once, when the answer (or failure) came back. A
    limiter whose releases run in the background may offer ``async def flush()``,
    which a closing client awaits. A limiter shared between processes may offer
    ``async def pause(corp_id, path, seconds)``: the client calls it on a 45009, so
    that every process sharing the budget waits the pause out.
    """

    async def acquire(self, corp_id: str, path: str, limits: tuple[RateLimit, ...]) -> RateSlot:
        """Wait for a slot for ``path`` of ``corp_id`` under every limit; return it."""
        ...


class LocalRateLimiter:
    """Sliding windows kept in this process, one per (corp, path).

    A :class:`~wecom_async.SessionPool` owns one, so clients of the same corp on
    the same pool share one budget.
    """

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self._limits: dict[str, tuple[RateLimit, ...]] = {}

    def __repr__(self) -> str:
        return f"<LocalRateLimiter with {len(self._windows)} window(s)>"

    def check_limits(self, corp_id: str, limits: tuple[RateLimit, ...]) -> None:
        """Refuse a second configuration for a corp: one budget cannot have two sizes."""
        known = self._limits.setdefault(corp_id, limits)
        if known != limits:
            raise WeComInputError(
                f"corp {corp_id!r} already has rate limits {list(known)} on this pool; "
                f"a client asked for {list(limits)}. Clients of one corp share one budget, "
                "so give them the same rate_limit."
            )

    async def acquire(self, corp_id: str, path: str, limits: tuple[RateLimit, ...]) -> RateSlot:
        """Wait for a slot for ``path`` of ``corp_id`` under every limit; return it."""
        key = (corp_id, path)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow(limits)
        # A free slot is taken here, without awaiting another coroutine; only a
        # caller that must wait enters the window's queue.
        slot = window.try_acquire()
        if slot is not None:
            return slot
        return await window.acquire()
