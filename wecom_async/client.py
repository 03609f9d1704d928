"""WeComClient: one corp and app, and the single call path every request takes.

One logical call runs through four layers, each with one job:

- **retry** (:meth:`WeComClient._call`): the policy's tenacity loop, the only one,
  entered at a call's first failure (:meth:`RetryPolicy.run`);
- **authenticate** (:meth:`WeComClient._authenticated`): the token as a local
  variable, and at most one more try when WeCom rejects it;
- **exchange** (:class:`_Budget` and :meth:`WeComClient._exchange`): the 45009
  pause and the rate-limit slot, then one HTTP exchange that ends in bytes or in a
  clean transport error;
- **decode** (:meth:`WeComClient._decode`): the HTTP status, the JSON and the
  errcode, mapped to typed errors.

No other code in this package reaches the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Concatenate, Final, NamedTuple, ParamSpec, TypeVar
from urllib.parse import quote, quote_plus

import aiohttp
import attrs
from yarl import URL

from ._call_options import CallOptions, binary_answer
from ._json import loads
from ._observe import (
    MASK,
    CallTrace,
    log_fields,
    pause_ended,
    pause_started,
    rate_waited,
    token_refreshed,
)
from ._pause import PAUSING_ERRCODE, PauseGate
from ._ratelimit import LocalRateLimiter, RateLimit, RateLimiter, RateSlot, normalize_limits
from ._retry import RetryPolicy
from ._token import TokenStore, token_key
from ._transport import read_body, retry_after, transport_error
from .api.external_contact import ExternalContactAPI
from .api.kf import KfAPI
from .api.media import MediaAPI
from .api.school import SchoolAPI
from .errors import (
    WeComAPIError,
    WeComClosedError,
    WeComDecodeError,
    WeComError,
    WeComInputError,
    WeComRateLimitError,
    WeComStoreError,
    WeComTokenError,
    WeComTransportError,
    error_for_errcode,
)
from .hooks import dispatch_for, hook_objects
from .pool import SessionPool

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_PAGES", "ClientStats", "WeComClient"]

logger = logging.getLogger("wecom_async")

DEFAULT_BASE_URL: Final = "https://qyapi.weixin.qq.com/cgi-bin/"

#: Cursor pages one paged call may follow before the pager is judged endless.
DEFAULT_MAX_PAGES: Final = 1000

_NOT_JSON: Final = object()

P = ParamSpec("P")
T = TypeVar("T")

#: Seconds a closing client waits for a shared limiter's pending releases.
_FLUSH_TIMEOUT: Final = 5.0

#: 41001 means no token was sent at all: a bug, not something a refresh fixes.
_TOKEN_MISSING: Final = 41001

#: Python 3.11+ counts a task's pending cancellations (Task.uncancel).
_COUNTS_CANCELS: Final = sys.version_info >= (3, 11)
_CLOSING: Final = "wecom_async: the client was closed"

#: The longest token life believed (WeCom says 7200 s); more is a broken answer.
_MAX_EXPIRES_IN: Final = 366 * 24 * 3600


@attrs.define
class ClientStats:
    """What a client has done so far, for summaries and metrics. Read-only by intent."""

    calls: int = 0
    """Logical calls: each may take several requests (retries, a token refresh)."""
    requests: int = 0
    """HTTP requests sent, ``gettoken`` included, retries included: each held a slot."""
    retries: int = 0
    """Waits before another try of a failed call or token fetch."""
    token_fetches: int = 0
    """``gettoken`` requests made."""
    rate_limited: int = 0
    """Answers of 45009 (over a frequency limit)."""


@attrs.frozen
class _Settings:
    """What :meth:`WeComClient.with_options` may change per view of a client."""

    timeout: aiohttp.ClientTimeout
    retry: RetryPolicy
    max_pages: int
    refresh_wait: float
    """The most a call waits on a token refresh another caller started: as long as
    its own policy would let a gettoken of its own take (tries and waits)."""


class _Answer(NamedTuple):
    """What one HTTP exchange brought back."""

    status: int
    body: bytes
    retry_after: float | None
    headers: tuple[str, str] = ("", "")
    """Content-Type and Content-Disposition, read for file answers only."""


class _Lifetime:
    """What a client shares with its views: closed or not, and the calls under way.

    ``aclose()`` interrupts every call still under way (waiting for a slot, a
    pause, a retry or an answer), and each raises WeComClosedError at once.
    """

    __slots__ = ("closed", "interrupted", "running")

    def __init__(self) -> None:
        self.closed = False
        self.running: set[asyncio.Task[Any]] = set()
        self.interrupted: set[asyncio.Task[Any]] = set()

    def interrupt_all(self) -> None:
        for task in self.running:
            if task is not asyncio.current_task():
                self.interrupted.add(task)
                if _COUNTS_CANCELS:
                    task.cancel()
                else:
                    task.cancel(_CLOSING)

    def was_interrupted(self, task: asyncio.Task[Any] | None, exc: BaseException) -> bool:
        """Whether ``exc``, a CancelledError in ``task``, came from aclose() alone."""
        if task is None or task not in self.interrupted:
            return False
        self.interrupted.discard(task)
        # A cancellation of the caller's own, pending too, wins over the close.
        if _COUNTS_CANCELS:
            return int(task.uncancel()) == 0  # type: ignore[attr-defined]  # 3.11+
        # Python 3.10 does not count cancellations: the first one delivered names itself.
        return exc.args == (_CLOSING,)


def _secret_forms(values: Iterable[str]) -> list[str]:
    """Every form in which these secrets could appear in text: raw and URL-encoded."""
    forms: set[str] = set()
    for text in values:
        if text:
            forms.update((text, quote(text, safe=""), quote_plus(text), quote(text, safe="/~")))
    # Longest first, so that a form containing another is masked whole.
    return sorted(forms, key=len, reverse=True)


class _Budget:
    """The exchange layer's gatekeeper: the 45009 pause, then a rate-limit slot.

    Held around one HTTP attempt and its decoding, so that a 45009 pauses the
    (corp, API) before the slot is given back, and a probe's outcome is known.
    """

    __slots__ = ("_client", "_extra", "_gate", "_options", "_path", "_probe", "_slot")

    def __init__(self, client: WeComClient, path: str, options: CallOptions | None = None) -> None:
        self._client = client
        self._path = path
        self._options = options
        self._gate: PauseGate | None = None
        self._probe = False
        self._slot: RateSlot | None = None
        self._extra: RateSlot | None = None

    async def __aenter__(self) -> None:
        client = self._client
        gate = client._pool.pauses.get(client._corp_id, self._path)
        if gate is not None and not gate.is_open:
            self._gate = gate
            self._probe = await gate.enter(client._settings.retry.backoff_max, self._path)
        limits = client._limits
        if limits:
            try:
                if client._hooks is None:
                    self._slot = await client._limiter.acquire(client._corp_id, self._path, limits)
                else:
                    started = time.monotonic()
                    self._slot = await client._limiter.acquire(client._corp_id, self._path, limits)
                    waited = time.monotonic() - started
                    rate_waited(client._hooks, client._corp_id, self._path, waited)
            except BaseException:
                self._probe_back(answered=False)
                raise
        extra = self._options.extra_budget if self._options is not None else None
        if extra is not None:
            try:
                self._extra = await client._limiter.acquire(client._corp_id, *extra)
            except BaseException:
                self._release()
                self._probe_back(answered=False)
                raise

    def _release(self) -> None:
        for slot in (self._slot, self._extra):
            if slot is not None:
                slot.release()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        try:
            if (
                exc is not None
                and isinstance(exc, WeComRateLimitError)
                and exc.errcode == PAUSING_ERRCODE
            ):
                client.stats.rate_limited += 1
                # WeCom blocks the API for everyone who shares the corp's budget
                # (other apps included): pause it for every caller on this pool.
                # As long as the client says (the longer if a view says more): a
                # view's short backoff_max is its own patience, not an estimate of
                # WeCom's block, and must not shorten the pause for every caller.
                seconds = max(client._settings.retry.backoff_max, client._pause_for)
                renewed = client._pool.pauses.gate(client._corp_id, self._path).pause(seconds)
                pause_started(client._hooks, client._corp_id, self._path, seconds, renewed)
                await _share_pause(client, self._path, seconds)
        finally:
            if self._slot is not None or self._extra is not None:
                self._release()
            if self._probe:
                answered = exc is None or isinstance(exc, (WeComAPIError, WeComDecodeError))
                self._probe_back(answered=answered)

    def _probe_back(self, *, answered: bool) -> None:
        gate = self._gate
        if self._probe and gate is not None:
            self._probe = False
            gate.probe_done(answered)
            if gate.is_open:  # this probe's answer ended the pause
                paused_for = asyncio.get_running_loop().time() - gate.paused_since
                client = self._client
                pause_ended(client._hooks, client._corp_id, self._path, paused_for)


async def _share_pause(client: WeComClient, path: str, seconds: float) -> None:
    """Tell a shared limiter (Redis) of the pause, so that every process waits it out."""
    share = getattr(client._limiter, "pause", None)
    if share is None:
        return
    try:
        await share(client._corp_id, path, seconds)
    except WeComStoreError as exc:
        # This process pauses anyway; the others meet their own 45009 if it lasts.
        logger.warning(
            "could not share a 45009 pause of %s for corp %s: %s",
            path,
            client._corp_id,
            exc,
            extra=log_fields(client._corp_id, path, PAUSING_ERRCODE),
        )


class _RefreshFailed(Exception):
    """A token refresh failed after its own retries; carried past the call's retry loop.

    Callers that waited on a refresh share its retries: retrying the call would
    only start another refresh for the same outage.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class WeComClient:
    """An asyncio client for one WeCom corp and app (one corp secret).

    Use it as ``async with WeComClient(corp_id, secret) as client:``, or call
    :meth:`aclose` when done. Endpoints live in namespaces: :attr:`external_contact`,
    :attr:`school` and :attr:`kf`; :meth:`request` reaches any other endpoint with
    the same token, rate-limit and retry handling. A client belongs to the event
    loop it is first used in.

    Args:
        corp_id: the corp's id (``corpid``).
        corp_secret: the app's secret. It is never logged, shown or put in errors.
        base_url: WeCom's API root; change it for a private deployment or a test
            server. Must be http(s) and is treated as a directory.
        pool: a shared :class:`SessionPool`. Without one the client makes its own and
            closes it in :meth:`aclose`; a pool that was passed in is never closed.
            Clients of one corp on one pool share its rate budget, its 45009 pauses
            and, for one secret, its access token.
        rate_limit: one :class:`RateLimit` or several, all of which hold per corp and
            per API path. ``None`` means WeCom's documented 10,000/min and
            150,000/hour; an empty sequence turns client-side limiting off.
        retry: the :class:`RetryPolicy`; ``None`` means the default policy. The
            token refresh retries under it too, once for all its waiting callers.
        token_store: where access tokens are cached; ``None`` means in this process
            (on the pool). ``wecom_async.redis.RedisTokenStore`` shares them between
            processes.
        timeout: seconds one HTTP attempt may take, connection included.
        rate_limiter: where the rate budgets are counted; ``None`` means the pool's
            in-process windows. ``wecom_async.redis.RedisRateLimiter`` shares one
            budget between processes. ``rate_limit`` still sets the numbers.
        max_pages: the most ``next_cursor`` pages one paged call follows; a server
            that pages on past it raises :class:`WeComDecodeError`.
        hooks: an object (or a list of them) told what the client does: each
            HTTP attempt, retry, rate-limit wait, token refresh and 45009 pause (see
            :mod:`wecom_async.hooks`). The pool's hooks are told too.
    """

    def __init__(
        self,
        corp_id: str,
        corp_secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        pool: SessionPool | None = None,
        rate_limit: RateLimit | Iterable[RateLimit] | None = None,
        retry: RetryPolicy | None = None,
        token_store: TokenStore | None = None,
        timeout: float = 10.0,
        rate_limiter: RateLimiter | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        hooks: object = None,
    ) -> None:
        if not isinstance(corp_id, str) or not corp_id.strip():
            raise WeComInputError("corp_id must be a non-empty string")
        if not isinstance(corp_secret, str) or not corp_secret.strip():
            raise WeComInputError("corp_secret must be a non-empty string")
        if pool is not None and not isinstance(pool, SessionPool):
            raise WeComInputError(f"pool must be a SessionPool, got {type(pool).__name__}")
        self._corp_id = corp_id
        self._secret = corp_secret
        self._base_url = _check_base_url(base_url)
        self._limits = normalize_limits(rate_limit)
        policy = retry if retry is not None else RetryPolicy()
        self._settings = _settings(timeout, policy, max_pages)
        # How long a 45009 pauses the (corp, API): the client's backoff_max, kept
        # by its views whatever their own policy.
        self._pause_for = policy.backoff_max
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else SessionPool()
        self._hooks = dispatch_for((*self._pool.hooks, *hook_objects(hooks)))
        self._limiter: RateLimiter = (
            rate_limiter if rate_limiter is not None else self._pool.rate_limiter
        )
        if isinstance(self._limiter, LocalRateLimiter):
            # Also for rate_limit=[]: a client without limits would overrun the
            # budget that other clients of its corp keep on this pool.
            self._limiter.check_limits(corp_id, self._limits)
        self._token_key = token_key(corp_id, corp_secret)
        self._tokens = self._pool.token_manager(self._base_url, self._token_key, token_store)
        self._urls: dict[str, URL] = {}
        self._life = _Lifetime()
        self._origin = self
        """The client itself; a view made by with_options keeps its client's."""
        self._is_view = False
        self.stats = ClientStats()
        """Counters of requests, retries, token fetches and 45009 answers."""
        self._make_namespaces()

    def _make_namespaces(self) -> None:
        self.media = MediaAPI(self)
        """Temporary media (``media/*``): upload and download files."""
        self.external_contact = ExternalContactAPI(self)
        """Customer contact (``externalcontact/*``)."""
        self.school = SchoolAPI(self)
        """School contacts (家校沟通)."""
        self.kf = KfAPI(self)
        """WeChat customer service (``kf/*``)."""

    def __repr__(self) -> str:
        state = " closed" if self._life.closed else ""
        view = " view" if self._is_view else ""
        return f"<WeComClient{view} corp_id={self._corp_id!r} base_url={self._base_url!r}{state}>"

    @property
    def corp_id(self) -> str:
        """The corp this client calls for."""
        return self._corp_id

    @property
    def base_url(self) -> str:
        """The API root requests go to (``https://qyapi.weixin.qq.com/cgi-bin/`` by default)."""
        return self._base_url

    @property
    def closed(self) -> bool:
        """Whether the client (or the client it is a view of) was closed."""
        return self._life.closed

    @property
    def max_pages(self) -> int:
        """The most cursor pages one paged call follows."""
        return self._settings.max_pages

    def with_options(
        self,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_pages: int | None = None,
    ) -> WeComClient:
        """A view of this client with other settings, sharing everything else.

        The view uses the same pool, token, rate budget, 45009 pauses and stats; only
        the given settings differ. A web handler can say "answer within 3 s, and no
        minute-long 45009 waits" while a batch job keeps the defaults::

            fast = client.with_options(timeout=3, retry=RetryPolicy(max_attempts=2,
                                                                   backoff_max=1))

        With that policy a call that meets a 45009 pause fails at once with
        :class:`WeComRateLimitError` rather than wait. A 45009 the view meets
        pauses the API for the client's ``backoff_max`` (or the view's, if longer):
        the view's patience is its own, not the pause of every caller. The view needs no closing:
        closing this client closes it too, and its own :meth:`aclose` does nothing.
        """
        current = self._settings
        settings = _settings(
            current.timeout.total if timeout is None else timeout,
            current.retry if retry is None else retry,
            current.max_pages if max_pages is None else max_pages,
        )
        view = copy.copy(self)  # view._origin stays this client's origin
        view._settings = settings
        view._is_view = True
        view._owns_pool = False
        view._make_namespaces()
        return view

    async def __aenter__(self) -> WeComClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop using the client; close its pool if it made it. Safe to call twice.

        Calls still under way (waiting for a rate-limit slot, a 45009 pause, a retry
        or an answer) raise :class:`WeComClosedError` at once. A view made by
        :meth:`with_options` is closed with the client it came from.
        """
        life = self._life
        if self._is_view or life.closed:
            return
        life.closed = True
        life.interrupt_all()
        try:
            await self._pool.release_token_manager(self._base_url, self._token_key, self._tokens)
            flush = getattr(self._limiter, "flush", None)
            if flush is not None:  # a shared limiter may still be releasing slots
                # Bounded: a stalled store must not keep the client from closing.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(flush(), _FLUSH_TIMEOUT)
        finally:
            # Whatever happened above (even a cancellation), the session is closed.
            if self._owns_pool:
                await self._pool.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | float] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """Call any WeCom endpoint and return its decoded JSON answer.

        The escape hatch for endpoints not wrapped yet; it gets the same access
        token, rate limit, retries and errcode checks as the wrapped ones.
        ``path`` is relative to ``base_url``, such as ``"externalcontact/list"``.

        Raises:
            WeComAPIError: WeCom answered a non-zero errcode (a family subclass).
            WeComTransportError: no usable HTTP answer after the retries.
            WeComDecodeError: the answer was not a JSON object.
        """
        verb = method.upper() if isinstance(method, str) else ""
        if verb not in ("GET", "POST"):
            raise WeComInputError(f"method must be GET or POST, got {method!r}")
        if not isinstance(path, str) or not path.strip("/"):
            raise WeComInputError(f"path must be a non-empty string, got {path!r}")
        if params is not None and "access_token" in params:
            raise WeComInputError("do not pass access_token: the client adds it")
        if params is not None and "debug" in params:
            # WeCom cuts an API called with debug=1 to 5 calls a minute.
            raise WeComInputError("do not pass debug: WeCom limits debug calls to 5 a minute")
        return await self._call(verb, path.strip("/"), params, json)

    # The retry layer ----------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        options: CallOptions | None = None,
    ) -> dict[str, Any]:
        """Make one logical call, with retries; returns the answer with errcode 0.

        ``options`` carries a multipart upload, a file answer, a body cap of its
        own or a second budget (:class:`~wecom_async._call_options.CallOptions`).
        """
        life = self._life
        if life.closed:
            raise WeComClosedError(f"{self!r} is closed")
        self._pool.bind_loop()
        task = asyncio.current_task()
        if task is not None:
            life.running.add(task)
        self.stats.calls += 1
        try:
            return await self._retried(
                path, method, self._authenticated, method, path, params or {}, body, options
            )
        except _RefreshFailed as failed:
            error: BaseException = failed.error
        except asyncio.CancelledError as cancelled:
            if not life.was_interrupted(task, cancelled):
                raise
            error = WeComClosedError(f"{self!r} was closed during the call")
        finally:
            life.running.discard(task)
        # Raised out here, so that the error carries no __context__ of our own making.
        raise error

    def _retried(
        self,
        path: str,
        method: str,
        attempt: Callable[Concatenate[CallTrace | None, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Awaitable[T]:
        """The retry layer: ``attempt(trace, *args)`` under the policy, traced if anyone listens."""
        policy = self._settings.retry
        trace = None
        if self._hooks is not None or logger.isEnabledFor(logging.DEBUG):
            trace = CallTrace(self._hooks, self._corp_id, path, method)

        def on_retry(wait: float, error: BaseException, attempt: int) -> None:
            self.stats.retries += 1
            logger.info(
                "retrying %s for corp %s (attempt %d of %d) in %.2fs after %s: %s",
                path,
                self._corp_id,
                attempt + 1,
                policy.max_attempts,
                wait,
                type(error).__name__,
                error,
                extra=log_fields(self._corp_id, path, getattr(error, "errcode", None)),
            )
            if trace is not None:
                trace.retry(wait, error, attempt, policy.max_attempts)

        run = policy.run(on_retry, attempt, trace, *args, **kwargs)
        return run if trace is None else _traced(trace, run)

    # The authenticate layer ---------------------------------------------

    async def _authenticated(
        self,
        trace: CallTrace | None,
        method: str,
        path: str,
        params: Mapping[str, Any],
        body: Any,
        options: CallOptions | None = None,
    ) -> dict[str, Any]:
        """Send with the access token; on a token errcode, drop it and try once more."""
        last_try = False
        while True:
            async with _Budget(self, path, options):
                # Taken once the slot is held: a long wait for a slot must not
                # outlive the token.
                # A refresh runs as the client itself, never as a view: a web handler's
                # impatient view must not hand its short retry budget to every batch
                # caller waiting on the same refresh. A view bounds only its own wait.
                token = self._tokens.held()
                if token is None:
                    origin = self._origin
                    wait = None if self is origin else self._settings.refresh_wait
                    try:
                        token = await self._tokens.get(origin._fetch_token, wait)
                    except WeComError as exc:
                        raise _RefreshFailed(exc) from None
                query = {**params, "access_token": token}
                try:
                    if trace is not None:
                        return await trace.attempt(self, method, path, query, body, options)
                    answer = await self._exchange(method, path, query, body, options)
                    return self._decode(answer, path, options)
                except WeComTokenError as exc:
                    if last_try or exc.errcode == _TOKEN_MISSING:
                        raise
            # WeCom can revoke a token before expires_in: drop this one (if it is
            # still current), and try the call once more with a fresh one.
            await self._tokens.invalidate(token)
            last_try = True

    async def _fetch_token(self) -> tuple[str, float]:
        """``GET gettoken``, under the retry policy: one refresh for all who wait on it."""
        started = time.monotonic()
        try:
            fetched = await self._gettoken()
        except BaseException as exc:
            token_refreshed(self._hooks, self._corp_id, started, exc)
            raise
        token_refreshed(self._hooks, self._corp_id, started, None)
        return fetched

    async def _gettoken(self) -> tuple[str, float]:
        path = "gettoken"
        query = {"corpid": self._corp_id, "corpsecret": self._secret}
        data = await self._retried(path, "GET", self._gettoken_once, path, query)
        token = data.get("access_token")
        expires_in = data.get("expires_in", 7200)
        if not isinstance(token, str) or not token:
            raise WeComDecodeError("gettoken answered without an access_token", path=path)
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int)
            or not 0 < expires_in <= _MAX_EXPIRES_IN
        ):
            # Only a number is shown: a string may echo the corp secret.
            if isinstance(expires_in, (int, float)):
                shown = repr(expires_in)[:40]
            else:
                shown = f"a {type(expires_in).__name__}"
            raise WeComDecodeError(f"gettoken answered a bad expires_in: {shown}", path=path)
        return token, expires_in

    async def _gettoken_once(
        self, trace: CallTrace | None, path: str, query: dict[str, Any]
    ) -> dict[str, Any]:
        async with _Budget(self, path):
            self.stats.token_fetches += 1
            if trace is not None:
                return await trace.attempt(self, "GET", path, query, None)
            answer = await self._exchange("GET", path, query, None)
            return self._decode(answer, path)

    # The exchange layer -------------------------------------------------

    async def _exchange(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any],
        body: Any,
        options: CallOptions | None = None,
    ) -> _Answer:
        """One HTTP exchange, under a slot the caller holds: bytes, or a transport error."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base_url + path)
        pool = self._pool
        timeout = self._settings.timeout
        failure: BaseException | None = None
        self.stats.requests += 1
        cap = pool.max_body_bytes
        # Only what this request needs: aiohttp matches each keyword by name.
        send = pool.request_options
        if body is not None:
            send = {**send, "json": body}
        headers = ("", "")
        if options is not None:
            cap = options.max_body or cap
            if options.upload is not None:
                send = {**pool.request_options, "data": options.upload.form()}
        try:
            async with pool.session().request(
                method, url, params=query, timeout=timeout, allow_redirects=False, **send
            ) as resp:
                status = resp.status
                raw = await read_body(resp, cap, path)
                wait = retry_after(resp.headers.get("Retry-After")) if status == 429 else None
                if options is not None and options.binary:
                    got = resp.headers.get
                    headers = (got("Content-Type", ""), got("Content-Disposition", ""))
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            # Raised below, outside this block, so that the new error has no
            # __context__: aiohttp's exception may hold the URL, token and all.
            failure = exc
        if failure is not None:
            try:
                raise transport_error(method, path, failure, timeout.total) from None
            finally:
                failure = None  # its traceback holds this frame: no cycle for the collector
        return _Answer(status, raw, wait, headers)

    # The decode layer ---------------------------------------------------

    def _decode(
        self, answer: _Answer, path: str, options: CallOptions | None = None
    ) -> dict[str, Any]:
        if options is not None:
            if options.fast is not None:
                return options.fast.answer(
                    answer.status, answer.body, lambda: decode_answer(answer, path, self._mask)
                )
            if options.binary:
                return binary_answer(
                    answer.status,
                    answer.body,
                    answer.headers,
                    path,
                    lambda: decode_answer(answer, path, self._mask),
                )
        return decode_answer(answer, path, self._mask)

    def _mask(self, text: str) -> str:
        """``text`` with every secret this client knows masked: its secret and its tokens."""
        for form in _secret_forms((self._secret, *self._tokens.recent_values())):
            text = text.replace(form, MASK)
        return text


async def _traced(trace: CallTrace, call: Awaitable[T]) -> T:
    """``await call``, then tell ``trace`` how the call ended."""
    try:
        result = await call
    except BaseException as exc:
        # A refresh that failed is the call's error, not the carrier's.
        trace.end(exc.error if isinstance(exc, _RefreshFailed) else exc)
        raise
    trace.end(None)
    return result


def decode_answer(answer: _Answer, path: str, mask: Callable[[str], str]) -> dict[str, Any]:
    """The decode layer: the HTTP status, the JSON and the errcode.

    Returns the answer with errcode 0, or raises its typed error. ``mask`` hides
    the client's secrets in any text taken from the body.
    """
    status = answer.status
    if not 200 <= status < 300:
        raise WeComTransportError(
            f"{path} answered HTTP {status}",
            path=path,
            status=status,
            retry_after=answer.retry_after,
        )
    try:
        data = loads(answer.body)
    except (ValueError, RecursionError):
        data = _NOT_JSON
    if data is _NOT_JSON:
        # Raised outside the except block and without the decoder's error, whose
        # .doc holds the body (a cut-off gettoken answer carries the token).
        raw = answer.body
        detail = f"{len(raw)} bytes"
        if path != "gettoken":
            # Only a bounded start is decoded, however large the body (a UTF-8
            # character is at most 4 bytes).
            start = raw[: 4 * (60 + _SECRET_SPAN)].decode("utf-8", "replace")
            detail += f", starting {_excerpt(start, 60, mask)!r}"
        raise WeComDecodeError(
            f"{path} answered a body that is not JSON ({detail})", path=path, retryable=True
        )
    if not isinstance(data, dict):
        raise WeComDecodeError(
            f"{path} answered JSON {type(data).__name__}, not an object", path=path
        )
    errcode = data.get("errcode", 0)  # old answers omit errcode on success
    if errcode == 0 and type(errcode) is int:
        return data
    if type(errcode) is not int:
        shown = _excerpt(repr(errcode), 120, mask)
        raise WeComDecodeError(
            f"{path} answered an errcode that is not an integer: {shown}", path=path
        )
    errmsg = data.get("errmsg", "")
    raise error_for_errcode(errcode, mask(errmsg if isinstance(errmsg, str) else str(errmsg)), path)


#: Longer than any secret: what is masked around an excerpt before it is cut.
_SECRET_SPAN: Final = 1024


def _excerpt(text: str, size: int, mask: Callable[[str], str]) -> str:
    """The start of ``text``, masked before it is cut: a cut secret would not be found."""
    return mask(text[: size + _SECRET_SPAN])[:size]


def _settings(timeout: object, retry: object, max_pages: object) -> _Settings:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise WeComInputError(f"timeout must be a number of seconds, got {timeout!r}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise WeComInputError(f"timeout must be positive and finite, got {timeout!r}")
    if not isinstance(retry, RetryPolicy):
        raise WeComInputError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
        raise WeComInputError(f"max_pages must be an integer >= 1, got {max_pages!r}")
    tries = retry.max_attempts
    refresh_wait = tries * timeout + (tries - 1) * retry.backoff_max
    return _Settings(aiohttp.ClientTimeout(total=timeout), retry, max_pages, refresh_wait)


def _check_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise WeComInputError(f"base_url must be a string, got {type(base_url).__name__}")
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise WeComInputError(
            f"base_url must be an absolute http(s) URL such as {DEFAULT_BASE_URL!r}, "
            f"got {base_url!r}"
        )
    if url.query_string or url.fragment:
        raise WeComInputError(f"base_url must not carry a query or fragment, got {base_url!r}")
    return base_url if base_url.endswith("/") else base_url + "/"
