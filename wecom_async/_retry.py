"""The retry policy: which failures are worth another try, and how long to wait first."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import attrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from .errors import (
    WeComAPIError,
    WeComDecodeError,
    WeComInputError,
    WeComPausedError,
    WeComStoreError,
    WeComTransportError,
)

__all__ = ["TRANSIENT_ERRCODES", "RetryPolicy"]

logger = logging.getLogger("wecom_async")

#: -1 system busy, 6000 data-version conflict, 45009 frequency limit, 45033 concurrency limit.
TRANSIENT_ERRCODES: frozenset[int] = frozenset({-1, 6000, 45009, 45033})

#: 45009 blocks the caller until the server's window has passed (about a minute).
BLOCKING_ERRCODE = 45009


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WeComInputError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise WeComInputError(f"{attribute.name} must be a number >= 0, got {value!r}")


@attrs.frozen(kw_only=False)
class RetryPolicy:
    """How the client retries a call that failed for a reason that may pass.

    Retried: the errcodes in ``retry_errcodes`` (by default -1, 6000, 45009 and
    45033) and transport faults (connection errors, timeouts, HTTP 5xx and 429, a
    body that is not JSON). Nothing else is: a permanent errcode, any other HTTP
    3xx or 4xx and an oversized body raise at once.

    ``max_attempts`` counts the first try. The wait before try ``n + 1`` is
    ``backoff_base * 2 ** (n - 1)`` capped at ``backoff_max``, scaled by a random
    factor in [0.5, 1) so that many clients do not retry in step. When the server
    said how long to wait (HTTP ``Retry-After``), that is the wait; a server that
    asks for longer than ``backoff_max`` gets no retry, and the error is raised.
    A 45009 pauses the whole (corp, API) for ``backoff_max``, for every caller on
    the pool (WeCom blocks the API for about a minute without saying how long);
    the retry waits out that pause, then one probe goes first (see
    ``docs/DESIGN.md``). A call whose ``backoff_max`` is shorter than the pause
    still to run fails at once with ``WeComPausedError`` instead.

    ``sleep`` and ``jitter`` can be replaced (in tests, say); ``jitter`` returns a
    number in [0, 1).
    """

    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative)
    backoff_max: float = attrs.field(default=60.0, validator=_non_negative)
    retry_errcodes: frozenset[int] = attrs.field(
        default=TRANSIENT_ERRCODES, converter=frozenset, kw_only=True
    )
    sleep: Callable[[float], Awaitable[None]] = attrs.field(
        default=asyncio.sleep, kw_only=True, eq=False, repr=False
    )
    jitter: Callable[[], float] = attrs.field(
        default=random.random, kw_only=True, eq=False, repr=False
    )
    _tenacity: dict[str, Any] = attrs.field(init=False, eq=False, repr=False)
    _idle: list[_CallRetrying] = attrs.field(init=False, eq=False, repr=False)

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether a call that raised ``exc`` should be tried again."""
        if isinstance(exc, WeComPausedError):
            return False  # raised only because the pause outlasts backoff_max
        if isinstance(exc, WeComAPIError):
            return exc.errcode in self.retry_errcodes
        if isinstance(exc, WeComTransportError):
            # A server that asks for a longer wait than the policy allows is not
            # retried early: that would only earn the same answer again.
            told = exc.retry_after
            return exc.retryable and (told is None or told <= self.backoff_max)
        if isinstance(exc, (WeComDecodeError, WeComStoreError)):
            return exc.retryable
        return False

    def delay(self, failures: int, exc: BaseException | None) -> float:
        """Seconds to wait after the ``failures``-th failed try, which raised ``exc``."""
        if isinstance(exc, WeComTransportError) and exc.retry_after is not None:
            return exc.retry_after
        if isinstance(exc, WeComAPIError) and exc.errcode == BLOCKING_ERRCODE:
            # The wait is the (corp, API)'s pause, shared by every caller: the next
            # try waits at its gate (see _pause.py), not here.
            return 0.0
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (failures - 1))
        return ceiling * (0.5 + 0.5 * self.jitter())

    async def run(
        self,
        on_retry: OnRetry,
        attempt: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``await attempt(*args, **kwargs)`` until a try succeeds or tenacity stops.

        This is the one retry loop.

        tenacity takes every decision: whether a failure is tried again, how long
        to wait first, when to stop. It is entered at the first failure. Before
        the first try it has nothing to decide (with no ``before`` hook, its one
        step is "attempt"), and building its state cost a call that succeeds at
        once (nearly every call) a fifth of the client's own CPU time; so the
        first try runs at once, and a failure is handed to tenacity as that try's
        outcome. ``on_retry(wait, error, attempt)`` runs before each wait, to count
        and log it (``attempt`` is the number of the try that failed).
        """
        started = time.monotonic()
        try:
            return await attempt(*args, **kwargs)
        except Exception as exc:  # tenacity decides, for this try as for every other
            first: ExcInfo = (type(exc), exc, exc.__traceback__)
        idle = self._idle
        controller = idle.pop() if idle else _CallRetrying(idle, **self._tenacity)
        controller.on_retry = on_retry
        try:
            with controller:
                return await controller.resume(started, first, attempt, *args, **kwargs)
        finally:
            del first  # its traceback refers to this frame: no cycle for the collector

    def __attrs_post_init__(self) -> None:
        # What tenacity needs, built once per policy: a call then pays only for its
        # own iterations.
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number, exc)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            assert exc is not None  # tenacity sleeps only after a failure
            controller = state.retry_object
            assert isinstance(controller, _CallRetrying)
            controller.on_retry(wait_s, exc, state.attempt_number)

        parts = {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait,
            "retry": retry_if_exception(self.is_retryable),
            "sleep": self.sleep,
            "before_sleep": before_sleep,
            "before": None,  # tenacity's default does nothing, at a cost per call
            "reraise": True,
        }
        object.__setattr__(self, "_tenacity", parts)
        object.__setattr__(self, "_idle", [])


OnRetry = Callable[[float, BaseException, int], None]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
T = TypeVar("T")
P = ParamSpec("P")

#: Idle controllers a policy keeps for reuse (more are made under load, then dropped).
_MAX_IDLE = 64


def _nothing(wait: float, error: BaseException, attempt: int) -> None:
    pass


class _CallRetrying(AsyncRetrying):
    """tenacity's controller for one failing call at a time, reused by later ones.

    Only a call whose first try failed takes one, but in an outage that is every
    call, and making a controller (with the thread-local state tenacity gives each)
    costs about as much as running it; so a policy keeps idle ones:
    :meth:`RetryPolicy.run` takes one, and leaving the ``with`` resets it and puts it
    back. The reset also breaks the reference cycles a controller keeps to its
    call's state; left in place, they handed some thirty objects per call to the
    cycle collector.
    """

    def __init__(self, idle: list[_CallRetrying], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._idle = idle
        self.on_retry: OnRetry = _nothing

    async def resume(
        self,
        started: float,
        failure: ExcInfo,
        attempt: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Go on from a first try that failed with ``failure``, as tenacity's loop would."""
        self.begin()
        self.statistics["start_time"] = started
        state = self._retry_state = RetryCallState(self, fn=None, args=(), kwargs={})
        state.start_time = started
        state.set_exception(failure)
        # Neither may outlive the call in the traceback of its last error.
        del failure, state
        while True:
            # tenacity raises (not retryable, or out of tries), or waits and hands
            # out the next try; a try that raises is recorded by the ``with``.
            next_try = await self.__anext__()
            with next_try:
                return await attempt(*args, **kwargs)

    def __enter__(self) -> _CallRetrying:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.iter_state.reset()
        # Refers back to this controller, and holds the call's last outcome.
        self._retry_state = None  # type: ignore[assignment]
        self.on_retry = _nothing
        if len(self._idle) < _MAX_IDLE:
            self._idle.append(self)
