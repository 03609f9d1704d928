"""The retry policy: which failures are worth another try, and how long to wait first."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import attrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from .errors import WeComAPIError, WeComDecodeError, WeComStoreError, WeComTransportError

__all__ = ["TRANSIENT_ERRCODES", "RetryPolicy"]

logger = logging.getLogger("wecom_async")

#: -1 system busy, 6000 data-version conflict, 45009 frequency limit, 45033 concurrency limit.
TRANSIENT_ERRCODES: frozenset[int] = frozenset({-1, 6000, 45009, 45033})

#: 45009 blocks the caller until the server's window has passed (about a minute).
_BLOCKING_ERRCODE = 45009


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


@attrs.frozen(kw_only=False)
class RetryPolicy:
    """How the client retries a call that failed for a reason that may pass.

    Retried: the errcodes in ``retry_errcodes`` (by default -1, 6000, 45009 and
    45033) and transport faults (connection errors, timeouts, HTTP 5xx, a body
    that is not JSON). Nothing else is: a permanent errcode, an HTTP 3xx or 4xx and
    an oversized body raise at once.

    ``max_attempts`` counts the first try. The wait before try ``n + 1`` is
    ``backoff_base * 2 ** (n - 1)`` capped at ``backoff_max``, scaled by a random
    factor in [0.5, 1) so that many clients do not retry in step. After a 45009
    the wait is always ``backoff_max``: WeCom blocks the corp for about a minute.

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

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether a call that raised ``exc`` should be tried again."""
        if isinstance(exc, WeComAPIError):
            return exc.errcode in self.retry_errcodes
        if isinstance(exc, (WeComDecodeError, WeComTransportError, WeComStoreError)):
            return exc.retryable
        return False

    def delay(self, failures: int, exc: BaseException | None) -> float:
        """Seconds to wait after the ``failures``-th failed try, which raised ``exc``."""
        if isinstance(exc, WeComAPIError) and exc.errcode == _BLOCKING_ERRCODE:
            return self.backoff_max
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (failures - 1))
        return ceiling * (0.5 + 0.5 * self.jitter())

    def log_retry(self, path: str, attempt: int, wait_s: float, exc: BaseException | None) -> None:
        logger.info(
            "retrying %s (attempt %d of %d) in %.2fs after %s: %s",
            path,
            attempt + 1,
            self.max_attempts,
            wait_s,
            type(exc).__name__,
            exc,
        )

    def retrying(
        self, path: str, on_retry: Callable[[], None] | None = None, *, failed: int = 0
    ) -> AsyncRetrying:
        """A tenacity controller for one call to ``path``; ``on_retry`` runs before each wait.

        ``failed`` counts tries already made and failed outside this controller (the
        client makes its first try without one, since most calls need no retry).
        """

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number + failed, exc)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            if on_retry is not None:
                on_retry()
            self.log_retry(path, state.attempt_number + failed, wait_s, exc)

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts - failed),
            wait=wait,
            retry=retry_if_exception(self.is_retryable),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
