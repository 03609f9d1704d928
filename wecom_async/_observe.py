"""What the call path tells: its log lines and its hook events, in one place.

The client builds a :class:`CallTrace` for a logical call only when someone is
listening (hooks, or the DEBUG log); without either, the call path never enters
this module. Every record of the ``wecom_async`` logger carries ``corp_id``,
``path`` and ``errcode`` (None where unknown) for structured logging.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from yarl import URL

from .errors import WeComAPIError
from .hooks import (
    AttemptEnded,
    CallEnded,
    CallStarted,
    HookDispatch,
    PauseEnded,
    PauseStarted,
    RateLimitWaited,
    RetryScheduled,
    TokenRefreshed,
)

if TYPE_CHECKING:
    from ._call_options import CallOptions
    from .client import WeComClient

__all__ = ["CallTrace", "log_fields", "redact_url", "strip_secrets"]

logger = logging.getLogger("wecom_async")

#: Query parameters whose values are secrets, masked wherever a URL is shown.
SECRET_PARAMS: Final = ("access_token", "corpsecret")
MASK: Final = "***"

#: A slot taken within this many seconds was not waited for: that is its cost.
RATE_WAIT_FLOOR: Final = 0.001

#: The ``extra=`` fields every record of the package's logger carries.
LOG_FIELDS: Final = ("corp_id", "path", "errcode")


class _LogFieldDefaults(logging.Filter):
    """Gives every record the structured fields, None where the line has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in LOG_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True


def _install_log_defaults() -> None:
    package_logger = logging.getLogger("wecom_async")
    if not any(isinstance(f, _LogFieldDefaults) for f in package_logger.filters):
        package_logger.addFilter(_LogFieldDefaults())


_install_log_defaults()


def log_fields(corp_id: str | None, path: str | None, errcode: int | None) -> dict[str, Any]:
    """The ``extra=`` of a record about one (corp, API)."""
    return {"corp_id": corp_id, "path": path, "errcode": errcode}


def redact_url(url: URL) -> str:
    """The URL as text, with the access token and corp secret masked (for logs)."""
    secret = [k for k in SECRET_PARAMS if k in url.query]
    if secret:
        url = url.update_query({k: MASK for k in secret})
    return str(url)


def strip_secrets(url: URL) -> str:
    """The URL as text without its ``access_token`` and ``corpsecret`` parameters.

    Usable as the ``url_filter`` of OpenTelemetry's aiohttp instrumentation.
    """
    if any(k in url.query for k in SECRET_PARAMS):
        url = url.with_query([(k, v) for k, v in url.query.items() if k not in SECRET_PARAMS])
    return str(url)


def _errcode_of(exc: BaseException | None) -> int | None:
    return exc.errcode if isinstance(exc, WeComAPIError) else None


class CallTrace:
    """One logical call as the hooks and the DEBUG log see it."""

    __slots__ = ("_hooks", "attempts", "corp_id", "errcode", "method", "path", "started")

    def __init__(self, hooks: HookDispatch | None, corp_id: str, path: str, method: str) -> None:
        self._hooks = hooks
        self.corp_id = corp_id
        self.path = path
        self.method = method
        self.attempts = 0
        self.errcode: int | None = None
        self.started = time.monotonic()
        if hooks is not None and hooks.on_call_start:
            hooks.fire(hooks.on_call_start, CallStarted(corp_id, path, method), corp_id, path)

    def end(self, exc: BaseException | None) -> None:
        """The call is over: it returned (``exc`` None) or raised ``exc``."""
        hooks = self._hooks
        if hooks is None or not hooks.on_call_end:
            return
        errcode = _errcode_of(exc) if exc is not None else self.errcode
        event = CallEnded(
            self.corp_id,
            self.path,
            self.method,
            time.monotonic() - self.started,
            self.attempts,
            errcode,
            None if exc is None else type(exc).__name__,
        )
        hooks.fire(hooks.on_call_end, event, self.corp_id, self.path)

    def retry(self, wait: float, error: BaseException, attempt: int, max_attempts: int) -> None:
        """A retry of this call was scheduled."""
        hooks = self._hooks
        if hooks is not None and hooks.on_retry:
            event = RetryScheduled(
                self.corp_id,
                self.path,
                wait,
                attempt,
                max_attempts,
                type(error).__name__,
                str(error),  # the package's errors are worded without secrets
                _errcode_of(error),
            )
            hooks.fire(hooks.on_retry, event, self.corp_id, self.path)

    async def attempt(
        self,
        client: WeComClient,
        method: str,
        path: str,
        query: dict[str, Any],
        body: Any,
        options: CallOptions | None = None,
    ) -> dict[str, Any]:
        """One HTTP exchange and its decoding, timed, logged and told to the hooks."""
        self.attempts += 1
        started = time.monotonic()
        status: int | None = None
        size = 0
        failure: BaseException | None = None
        try:
            answer = await client._exchange(method, path, query, body, options)
            status, size = answer.status, len(answer.body)
            data = client._decode(answer, path, options)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            errcode = 0 if failure is None else _errcode_of(failure)
            self.errcode = errcode
            self._attempt_done(
                client, query, status, errcode, time.monotonic() - started, size, failure
            )
            failure = None  # its traceback holds this frame: no cycle for the collector
        return data

    def _attempt_done(
        self,
        client: WeComClient,
        query: dict[str, Any],
        status: int | None,
        errcode: int | None,
        duration: float,
        size: int,
        failure: BaseException | None,
    ) -> None:
        hooks = self._hooks
        debug = logger.isEnabledFor(logging.DEBUG)
        if not debug and (hooks is None or not hooks.on_attempt):
            return
        url = URL(client.base_url + self.path).with_query(query)
        if debug:
            answer = "no answer" if status is None else f"HTTP {status}"
            logger.debug(
                "%s %s -> %s, errcode %s, %d bytes in %.1f ms%s",
                self.method,
                redact_url(url),
                answer,
                "-" if errcode is None else errcode,
                size,
                duration * 1000,
                "" if failure is None else f" ({type(failure).__name__})",
                extra=log_fields(self.corp_id, self.path, errcode),
            )
        if hooks is not None and hooks.on_attempt:
            event = AttemptEnded(
                self.corp_id,
                self.path,
                self.method,
                strip_secrets(url),
                status,
                errcode,
                duration,
                self.attempts,
                size,
                None if failure is None else type(failure).__name__,
            )
            hooks.fire(hooks.on_attempt, event, self.corp_id, self.path)


def rate_waited(hooks: HookDispatch, corp_id: str, path: str, waited: float) -> None:
    """A request took its rate-limit slot after ``waited`` seconds."""
    if waited >= RATE_WAIT_FLOOR and hooks.on_rate_limit_wait:
        hooks.fire(hooks.on_rate_limit_wait, RateLimitWaited(corp_id, path, waited), corp_id, path)


def token_refreshed(
    hooks: HookDispatch | None, corp_id: str, started: float, exc: BaseException | None
) -> None:
    """A ``gettoken`` refresh (with its retries) ended; ``exc`` is why it failed."""
    duration = time.monotonic() - started
    path = "gettoken"
    errcode = _errcode_of(exc)
    if exc is None:
        outcome = "ok"
        logger.info(
            "fetched an access token for corp %s (%s) in %.2fs",
            corp_id,
            path,
            duration,
            extra=log_fields(corp_id, path, 0),
        )
    elif isinstance(exc, asyncio.CancelledError):
        outcome = "cancelled"
        logger.info(
            "token refresh for corp %s (%s) cancelled after %.2fs",
            corp_id,
            path,
            duration,
            extra=log_fields(corp_id, path, None),
        )
    else:
        outcome = "error"
        # INFO, like a retry: the error reaches every caller waiting on the refresh.
        logger.info(
            "token refresh for corp %s (%s) failed after %.2fs: %s: %s",
            corp_id,
            path,
            duration,
            type(exc).__name__,
            exc,
            extra=log_fields(corp_id, path, errcode),
        )
    if hooks is not None and hooks.on_token_refresh:
        event = TokenRefreshed(
            corp_id,
            duration,
            outcome,  # type: ignore[arg-type]
            None if exc is None else type(exc).__name__,
            errcode,
        )
        hooks.fire(hooks.on_token_refresh, event, corp_id, path)


def pause_started(
    hooks: HookDispatch | None, corp_id: str, path: str, seconds: float, renewed: bool
) -> None:
    """A 45009 answer paused (corp, path) for ``seconds``."""
    logger.warning(
        "%s for corp %s answered 45009: pausing it for %.1fs",
        path,
        corp_id,
        seconds,
        extra=log_fields(corp_id, path, 45009),
    )
    if hooks is not None and hooks.on_pause_start:
        hooks.fire(
            hooks.on_pause_start, PauseStarted(corp_id, path, seconds, renewed), corp_id, path
        )


def pause_ended(hooks: HookDispatch | None, corp_id: str, path: str, paused_for: float) -> None:
    """A probe of a paused (corp, path) was answered: it is open again."""
    logger.info(
        "%s for corp %s answers again after a %.1fs 45009 pause",
        path,
        corp_id,
        paused_for,
        extra=log_fields(corp_id, path, None),
    )
    if hooks is not None and hooks.on_pause_end:
        hooks.fire(hooks.on_pause_end, PauseEnded(corp_id, path, paused_for), corp_id, path)
