"""WeComClient: one corp and app, and the single call path every request takes.

A call goes: rate-limit slot, then access token, then the pool's session, then the
body is decoded (whatever the Content-Type) and ``errcode`` checked. A token errcode
drops the token (compare first) and tries once more with a fresh one; transient
errcodes and transport faults are retried under the RetryPolicy; everything else
raises a typed error. No other code in this package reaches the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, quote_plus

import aiohttp
import attrs
from yarl import URL

from ._ratelimit import LocalRateLimiter, RateLimit, RateLimiter, normalize_limits
from ._retry import RetryPolicy
from ._token import MemoryTokenStore, TokenManager, TokenStore, token_key
from .api.external_contact import ExternalContactAPI
from .api.kf import KfAPI
from .api.school import SchoolAPI
from .errors import (
    WeComClosedError,
    WeComDecodeError,
    WeComError,
    WeComInputError,
    WeComRateLimitError,
    WeComTokenError,
    WeComTransportError,
    error_for_errcode,
)
from .pool import SessionPool

__all__ = ["DEFAULT_BASE_URL", "ClientStats", "WeComClient"]

logger = logging.getLogger("wecom_async")

DEFAULT_BASE_URL: Final = "https://qyapi.weixin.qq.com/cgi-bin/"

#: Query parameters whose values are secrets, masked wherever a URL is shown.
_SECRET_PARAMS: Final = ("access_token", "corpsecret")
_MASK: Final = "***"

_NOT_JSON: Final = object()

#: Seconds a closing client waits for a shared limiter's pending releases.
_FLUSH_TIMEOUT: Final = 5.0

#: 41001 means no token was sent at all: a bug, not something a refresh fixes.
_TOKEN_MISSING: Final = 41001


@attrs.define
class ClientStats:
    """What a client has done so far, for summaries and metrics. Read-only by intent."""

    calls: int = 0
    """Logical calls: each may take several requests (retries, a token refresh)."""
    requests: int = 0
    """HTTP exchanges started, ``gettoken`` included, retries included."""
    retries: int = 0
    """Waits before another try of a failed call."""
    token_fetches: int = 0
    """``gettoken`` calls made."""
    rate_limited: int = 0
    """Answers of 45009 (over a frequency limit)."""


class WeComClient:
    """An asyncio client for one WeCom corp and app (one corp secret).

    Use it as ``async with WeComClient(corp_id, secret) as client:``, or call
    :meth:`aclose` when done. Endpoints live in namespaces: :attr:`external_contact`,
    :attr:`school` and :attr:`kf`; :meth:`request` reaches any other endpoint with
    the same token, rate-limit and retry handling.

    Args:
        corp_id: the corp's id (``corpid``).
        corp_secret: the app's secret. It is never logged, shown or put in errors.
        base_url: WeCom's API root; change it for a private deployment or a test
            server. Must be http(s) and is treated as a directory.
        pool: a shared :class:`SessionPool`. Without one the client makes its own and
            closes it in :meth:`aclose`; a pool that was passed in is never closed.
        rate_limit: one :class:`RateLimit` or several, all of which hold per corp and
            per API path. ``None`` means WeCom's documented 10,000/min and
            150,000/hour; an empty sequence turns client-side limiting off.
        retry: the :class:`RetryPolicy`; ``None`` means the default policy.
        token_store: where access tokens are cached; ``None`` means in this process.
            ``wecom_async.redis.RedisTokenStore`` shares them between processes.
        timeout: seconds one HTTP attempt may take, connection included.
        rate_limiter: where the rate budgets are counted; ``None`` means the pool's
            in-process windows. ``wecom_async.redis.RedisRateLimiter`` shares one
            budget between processes. ``rate_limit`` still sets the numbers.
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
    ) -> None:
        if not isinstance(corp_id, str) or not corp_id.strip():
            raise WeComInputError("corp_id must be a non-empty string")
        if not isinstance(corp_secret, str) or not corp_secret.strip():
            raise WeComInputError("corp_secret must be a non-empty string")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise WeComInputError(f"timeout must be a number of seconds, got {timeout!r}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise WeComInputError(f"timeout must be positive and finite, got {timeout!r}")
        self._corp_id = corp_id
        self._secret = corp_secret
        self._base_url = _check_base_url(base_url)
        self._limits = normalize_limits(rate_limit)
        self._retry = retry if retry is not None else RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else SessionPool()
        self._limiter: RateLimiter = (
            rate_limiter if rate_limiter is not None else self._pool.rate_limiter
        )
        if isinstance(self._limiter, LocalRateLimiter):
            # Also for rate_limit=[]: a client without limits would overrun the
            # budget that other clients of its corp keep on this pool.
            self._limiter.check_limits(corp_id, self._limits)
        self._tokens = TokenManager(
            token_key(corp_id, corp_secret),
            token_store if token_store is not None else MemoryTokenStore(),
            self._fetch_token,
        )
        self._urls: dict[str, URL] = {}
        self._closed = False
        self.stats = ClientStats()
        """Counters of requests, retries, token fetches and 45009 answers."""

        self.external_contact = ExternalContactAPI(self)
        """Customer contact (``externalcontact/*``)."""
        self.school = SchoolAPI(self)
        """School contacts (家校沟通)."""
        self.kf = KfAPI(self)
        """WeChat customer service (``kf/*``)."""

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<WeComClient corp_id={self._corp_id!r} base_url={self._base_url!r}{state}>"

    @property
    def corp_id(self) -> str:
        return self._corp_id

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def closed(self) -> bool:
        return self._closed

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
        """Stop using the client; close its pool if it made it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._tokens.aclose()
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

    # The single call path ------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        """Make one logical call, with retries; returns the answer with errcode 0."""
        if self._closed:
            raise WeComClosedError(f"{self!r} is closed")
        self.stats.calls += 1
        policy = self._retry
        # The first try runs bare: building tenacity's controller costs more than a
        # loopback round trip, and most calls succeed at once.
        try:
            return await self._call_with_token(method, path, params, body)
        except WeComError as exc:
            if policy.max_attempts < 2 or not policy.is_retryable(exc):
                raise
            wait_s = policy.delay(1, exc)
            self._count_retry()
            policy.log_retry(path, 1, wait_s, exc)
        await policy.sleep(wait_s)
        async for attempt in policy.retrying(path, self._count_retry, failed=1):
            with attempt:
                return await self._call_with_token(method, path, params, body)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    def _count_retry(self) -> None:
        self.stats.retries += 1

    async def _call_with_token(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> dict[str, Any]:
        used: list[str] = []  # _send notes the token it sent, so that it can be dropped
        try:
            return await self._send(method, path, params, body, used)
        except WeComTokenError as exc:
            if exc.errcode == _TOKEN_MISSING or not used:
                raise
            # WeCom can revoke a token before expires_in: drop this one (if it is
            # still current), fetch a new one, and try the call exactly once more.
            await self._tokens.invalidate(used[-1])
            return await self._send(method, path, params, body, used)

    async def _fetch_token(self) -> tuple[str, float]:
        """``GET gettoken``: one attempt; the calling request's retries cover it."""
        self.stats.token_fetches += 1
        data = await self._send(
            "GET", "gettoken", {"corpid": self._corp_id, "corpsecret": self._secret}, None
        )
        token = data.get("access_token")
        expires_in = data.get("expires_in", 7200)
        if not isinstance(token, str) or not token:
            raise WeComDecodeError("gettoken answered without an access_token", path="gettoken")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise WeComDecodeError("gettoken answered a bad expires_in", path="gettoken")
        return token, expires_in

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        used_tokens: list[str] | None = None,
    ) -> dict[str, Any]:
        """One HTTP exchange: slot, token, send, read, decode, check errcode.

        With ``used_tokens`` the request carries the access token, taken only once
        the slot is held (a long wait for a slot must not outlive the token) and
        appended to ``used_tokens``; without, it carries none (``gettoken``).
        """
        if self._closed:
            raise WeComClosedError(f"{self!r} is closed")
        query: dict[str, Any] = dict(params) if params else {}
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base_url + path)
        session = self._pool.session()
        limits = self._limits
        slot = await self._limiter.acquire(self._corp_id, path, limits) if limits else None
        failure: BaseException | None = None
        try:
            if used_tokens is not None:
                token = await self._tokens.get()
                used_tokens.append(token)
                query["access_token"] = token
            started = time.monotonic()
            self.stats.requests += 1
            try:
                async with session.request(
                    method,
                    url,
                    params=query,
                    json=body,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    raw = await _read_body(resp, self._pool.max_body_bytes, path)
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                # Raised below, outside this block, so that the new error gets no
                # __context__: aiohttp's exception may hold the URL, token and all.
                failure = exc
        finally:
            if slot is not None:
                slot.release()
        if failure is not None:
            raise _transport_error(method, path, failure, query, self._timeout.total)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> HTTP %d, %d bytes in %.1f ms",
                method,
                redact_url(url.with_query(query)),
                status,
                len(raw),
                (time.monotonic() - started) * 1000,
            )
        if not 200 <= status < 300:
            raise WeComTransportError(
                f"{method} {path} answered HTTP {status}", path=path, status=status
            )
        try:
            return _check(_parse(raw, path), path)
        except WeComRateLimitError as exc:
            if exc.errcode == 45009:
                self.stats.rate_limited += 1
            raise


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


def redact_url(url: URL) -> str:
    """The URL as text, with the access token and corp secret masked."""
    secret = [k for k in _SECRET_PARAMS if k in url.query]
    if secret:
        url = url.update_query({k: _MASK for k in secret})
    return str(url)


def _secret_values(query: Mapping[str, Any]) -> list[str]:
    """Every form in which a secret of this request could appear in text."""
    forms = []
    for key in _SECRET_PARAMS:
        value = query.get(key)
        if value:
            text = str(value)
            forms += [text, quote(text, safe=""), quote_plus(text), quote(text, safe="/~")]
            forms.append(URL.build(query={key: text}).raw_query_string.partition("=")[2])
    return forms


def _transport_error(
    method: str, path: str, exc: BaseException, query: Mapping[str, Any], timeout: float | None
) -> WeComTransportError:
    """A WeComTransportError for ``exc``, with every secret of the request masked.

    The original is chained as ``__cause__`` only when neither its text nor its
    attributes can show a secret (aiohttp keeps the request URL on some errors).
    """
    secrets = _secret_values(query)
    carries_url = hasattr(exc, "request_info")
    if isinstance(exc, asyncio.TimeoutError):
        error = WeComTransportError(f"{method} {path} timed out after {timeout}s", path=path)
    else:
        if carries_url:
            # Its text is built around the request URL, token and all: use only the
            # parts that are not (an HTTP status and reason, when it has them).
            parts = (getattr(exc, "status", None), getattr(exc, "message", None))
            detail = " ".join(str(p) for p in parts if p)
        else:
            detail = str(exc)
        for secret in secrets:
            detail = detail.replace(secret, _MASK)
        text = f"{method} {path} failed: {type(exc).__name__}"
        error = WeComTransportError(f"{text}: {detail}" if detail else text, path=path)
    shown = f"{exc!s} {exc!r}"
    if not carries_url and not any(s in shown for s in secrets):
        error.__cause__ = exc
    return error


async def _read_body(resp: aiohttp.ClientResponse, cap: int, path: str) -> bytes:
    """Read the whole body, refusing one larger than ``cap`` bytes."""
    length = resp.content_length
    if length is not None and length <= cap:
        return await resp.read()
    if length is not None:
        raise WeComTransportError(
            f"{path} answered {length} bytes, over the {cap}-byte cap", path=path
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > cap:
            raise WeComTransportError(
                f"{path} answered over the {cap}-byte cap", path=path, retryable=False
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes, path: str) -> dict[str, Any]:
    """Decode the body as JSON whatever the Content-Type says (WeCom has sent text/plain)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = _NOT_JSON
    if data is _NOT_JSON:
        # Raised outside the except block and without the decoder's error, whose
        # .doc holds the body: a cut-off gettoken answer carries the token.
        detail = f"{len(raw)} bytes"
        if path != "gettoken":
            detail += f", starting {raw[:60].decode('utf-8', 'replace')!r}"
        raise WeComDecodeError(
            f"{path} answered a body that is not JSON ({detail})", path=path, retryable=True
        )
    if not isinstance(data, dict):
        raise WeComDecodeError(
            f"{path} answered JSON {type(data).__name__}, not an object", path=path
        )
    return data


def _check(data: dict[str, Any], path: str) -> dict[str, Any]:
    """Raise the errcode's typed error, or return the answer. Decided on errcode alone."""
    errcode = data.get("errcode", 0)  # old answers omit errcode on success
    if errcode == 0 and type(errcode) is int:
        return data
    if type(errcode) is not int:
        raise WeComDecodeError(
            f"{path} answered an errcode that is not an integer: {errcode!r}"[:200], path=path
        )
    errmsg = data.get("errmsg", "")
    raise error_for_errcode(errcode, errmsg if isinstance(errmsg, str) else str(errmsg), path)
