"""Hooks: what the client is doing, per corp and per API, told as it happens.

Pass ``hooks=`` to :class:`~wecom_async.WeComClient` or to
:class:`~wecom_async.SessionPool` (then every client on the pool tells it). A hook
is any object; each of the methods below it has is called, the others are not
looked for. Subclassing :class:`Hooks` documents the names and keeps type checkers
happy, but is not required::

    class Latency(Hooks):
        def on_attempt(self, event: AttemptEnded) -> None:
            histogram.labels(event.corp_id, event.path).observe(event.duration)

Rules the client keeps:

- Hooks are called synchronously in the event loop, in the task making the call,
  so they must be quick and must not block; ``async def`` hooks are refused.
- An event carries no secret: no corp secret, no access token, no exception
  object (whose frames hold the token), only names, numbers and masked text.
- A hook that raises is logged (WARNING, with its traceback) and ignored; the call
  goes on as if it had not been there.
- A client with no hooks pays nothing for them: no event is built.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

import attrs

from .errors import WeComInputError

__all__ = [
    "AttemptEnded",
    "CallEnded",
    "CallStarted",
    "Hooks",
    "PauseEnded",
    "PauseStarted",
    "RateLimitWaited",
    "RetryScheduled",
    "TokenRefreshed",
]

logger = logging.getLogger("wecom_async")


@attrs.frozen
class CallStarted:
    """A logical call began (its retries and token refreshes are inside it)."""

    corp_id: str
    path: str
    """The API path relative to the base URL, such as ``externalcontact/get``."""
    method: str


@attrs.frozen
class CallEnded:
    """A logical call ended, with its answer or its last error."""

    corp_id: str
    path: str
    method: str
    duration: float
    """Seconds from start to end, waits and retries included."""
    attempts: int
    """HTTP attempts it made (0 when it failed before sending)."""
    errcode: int | None
    """WeCom's errcode of the last answer (0 on success), None when none came."""
    error: str | None
    """The type name of the error the call raised, or None when it succeeded."""


@attrs.frozen
class AttemptEnded:
    """One HTTP attempt finished: an answer came back, or the exchange failed."""

    corp_id: str
    path: str
    method: str
    url: str
    """The URL with ``access_token`` and ``corpsecret`` removed."""
    status: int | None
    """HTTP status, or None when no answer came (connection lost, timeout)."""
    errcode: int | None
    """WeCom's errcode, or None when the answer had none to read."""
    duration: float
    """Seconds from sending to the decoded answer, or to the failure."""
    attempt: int
    """1 for the first HTTP attempt of the logical call, then 2, 3, ..."""
    body_size: int
    """Bytes of the answer's body after decompression (0 when none came)."""
    error: str | None
    """The type name of the error this attempt raised, or None."""


@attrs.frozen
class RetryScheduled:
    """A failed try will be tried again after ``wait`` seconds."""

    corp_id: str
    path: str
    wait: float
    attempt: int
    """The number of the try that failed (1 for the first)."""
    max_attempts: int
    error: str
    """The type name of the error, such as ``WeComBusyError``."""
    message: str
    """The error's text, with every secret the client knows masked."""
    errcode: int | None


@attrs.frozen
class RateLimitWaited:
    """A request waited for a slot in its (corp, API)'s rate-limit windows."""

    corp_id: str
    path: str
    waited: float
    """Seconds spent waiting; waits shorter than a millisecond are not told."""


@attrs.frozen
class TokenRefreshed:
    """A ``gettoken`` refresh (with its own retries) finished."""

    corp_id: str
    duration: float
    outcome: Literal["ok", "error", "cancelled"]
    error: str | None
    """The type name of the error when it failed."""
    errcode: int | None
    """WeCom's errcode when it failed with one (40001: a wrong secret)."""


@attrs.frozen
class PauseStarted:
    """WeCom answered 45009: the (corp, API) is paused for every caller on the pool."""

    corp_id: str
    path: str
    seconds: float
    """How long nobody sends, after which one probe goes first."""
    renewed: bool
    """Whether the API was already paused (a probe, or a request in flight, met 45009)."""


@attrs.frozen
class PauseEnded:
    """A probe was answered without 45009: the (corp, API) is open again."""

    corp_id: str
    path: str
    paused_for: float
    """Seconds from the first 45009 of the pause to the probe's answer."""


class Hooks:
    """The hook methods, all optional and all doing nothing here; override any of them.

    Any object with some of these methods works as well; this class only names them.
    """

    def on_call_start(self, event: CallStarted) -> None:
        """A logical call began."""

    def on_call_end(self, event: CallEnded) -> None:
        """A logical call ended."""

    def on_attempt(self, event: AttemptEnded) -> None:
        """An HTTP attempt finished."""

    def on_retry(self, event: RetryScheduled) -> None:
        """A retry was scheduled."""

    def on_rate_limit_wait(self, event: RateLimitWaited) -> None:
        """A request waited for a rate-limit slot."""

    def on_token_refresh(self, event: TokenRefreshed) -> None:
        """A token refresh finished."""

    def on_pause_start(self, event: PauseStarted) -> None:
        """A 45009 pause started (or was renewed)."""

    def on_pause_end(self, event: PauseEnded) -> None:
        """A 45009 pause ended."""


HOOK_NAMES: Final = (
    "on_call_start",
    "on_call_end",
    "on_attempt",
    "on_retry",
    "on_rate_limit_wait",
    "on_token_refresh",
    "on_pause_start",
    "on_pause_end",
)

_Listener = Callable[[Any], object]


class HookDispatch:
    """The hook methods of one client (its own and its pool's), grouped by event.

    Each attribute is a tuple of the bound methods to call for that event; one that
    raises is logged and skipped.
    """

    __slots__ = HOOK_NAMES

    on_call_start: tuple[_Listener, ...]
    on_call_end: tuple[_Listener, ...]
    on_attempt: tuple[_Listener, ...]
    on_retry: tuple[_Listener, ...]
    on_rate_limit_wait: tuple[_Listener, ...]
    on_token_refresh: tuple[_Listener, ...]
    on_pause_start: tuple[_Listener, ...]
    on_pause_end: tuple[_Listener, ...]

    def __init__(self, listeners: dict[str, tuple[_Listener, ...]]) -> None:
        for name in HOOK_NAMES:
            setattr(self, name, listeners.get(name, ()))

    @staticmethod
    def fire(listeners: tuple[_Listener, ...], event: object, corp_id: str, path: str) -> None:
        """Call each listener with ``event``; log and swallow what one raises."""
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                logger.warning(
                    "hook %s raised on %s; ignored",
                    getattr(listener, "__qualname__", type(listener).__name__),
                    type(event).__name__,
                    exc_info=True,
                    extra={"corp_id": corp_id, "path": path, "errcode": None},
                )


def hook_objects(hooks: object) -> tuple[object, ...]:
    """``hooks=`` as given (None, one object, or a list or tuple of them) as a tuple."""
    if hooks is None:
        return ()
    if isinstance(hooks, (list, tuple)):
        return tuple(h for h in hooks if h is not None)
    return (hooks,)


def dispatch_for(objects: Iterable[object]) -> HookDispatch | None:
    """The dispatch for these hook objects, or None when none has a hook method.

    Raises :class:`~wecom_async.WeComInputError` for a hook that is not callable or
    is ``async``: hooks run synchronously, and an ``async def`` one would never run.
    """
    listeners: dict[str, list[_Listener]] = {}
    for obj in objects:
        for name in HOOK_NAMES:
            method = getattr(obj, name, None)
            if method is None or getattr(method, "__func__", None) is getattr(Hooks, name):
                continue  # absent, or Hooks' own no-op
            if not callable(method):
                raise WeComInputError(f"hooks: {type(obj).__name__}.{name} is not callable")
            if inspect.iscoroutinefunction(method):
                raise WeComInputError(
                    f"hooks: {type(obj).__name__}.{name} is async; hooks are called "
                    "synchronously (schedule a task from a plain method instead)"
                )
            listeners.setdefault(name, []).append(method)
    if not listeners:
        return None
    return HookDispatch({name: tuple(fns) for name, fns in listeners.items()})
