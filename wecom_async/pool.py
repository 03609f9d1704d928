"""SessionPool: one aiohttp session and connector, shared by many clients."""

from __future__ import annotations

import asyncio
import json
import math
import ssl as ssl_module
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp

from ._pause import PauseBoard
from ._ratelimit import LocalRateLimiter
from ._token import MemoryTokenStore, TokenManager, TokenStore
from ._transport import ACCEPT_ENCODING, no_silent_resend
from .errors import WeComClosedError, WeComInputError, WeComUsageError
from .hooks import dispatch_for, hook_objects

__all__ = ["SessionPool"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

SSLSetting = ssl_module.SSLContext | bool | aiohttp.Fingerprint | None


def _count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WeComInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class SessionPool:
    """Owns one :class:`aiohttp.ClientSession` and its connector, for many clients.

    A service that talks to many corps builds one pool and one
    :class:`~wecom_async.WeComClient` per corp and app on it, so that every client
    reuses the same keep-alive connections. The pool also holds what clients of one
    corp must share: the in-process rate budgets, the 45009 pauses, and the access
    token of each (corp, secret), so that short-lived clients do not each fetch one.

    The session is created lazily, on the first request, inside the running event
    loop, and belongs to that loop; the pool itself can be built anywhere. Close it
    with :meth:`aclose` or use it as ``async with SessionPool() as pool:``. A client
    never closes a pool it was given.

    Args:
        limit: most connections open at once, over all hosts.
        limit_per_host: most connections to one host (0 means no separate cap).
        keepalive_timeout: seconds an idle connection is kept for reuse.
        max_body_bytes: answers larger than this, counted after decompression, are
            refused with :class:`~wecom_async.WeComTransportError` and not retried.
        user_agent: the User-Agent header sent with every request.
        proxy: an HTTP proxy URL for every request, such as
            ``"http://egress.internal:3128"``. WeCom's trusted-IP rule (errcode
            60020) often means calls must leave through one fixed address.
        ssl: TLS verification: ``None`` for the default checks, an
            :class:`ssl.SSLContext` (a private CA, say), or ``False`` to skip them.
        trust_env: take proxy settings from ``HTTP(S)_PROXY``/``NO_PROXY`` and
            ``~/.netrc``, as aiohttp does with ``trust_env=True``.
        hooks: an object (or a list of them) told what every client on this pool
            does (see :mod:`wecom_async.hooks`); a client's own ``hooks=`` add to it.
        trace_configs: :class:`aiohttp.TraceConfig` objects for the session, such as
            OpenTelemetry's aiohttp instrumentation. Their URLs hold the access
            token and corp secret: give them a URL filter that removes them, such as
            :func:`wecom_async.otel.url_filter`.
    """

    def __init__(
        self,
        *,
        limit: int = 100,
        limit_per_host: int = 0,
        keepalive_timeout: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        user_agent: str = "wecom-async",
        proxy: str | None = None,
        ssl: SSLSetting = None,
        trust_env: bool = False,
        hooks: object = None,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ) -> None:
        self._limit = _count("limit", limit, minimum=0)
        self._limit_per_host = _count("limit_per_host", limit_per_host, minimum=0)
        self.max_body_bytes = _count("max_body_bytes", max_body_bytes, minimum=1)
        if (
            isinstance(keepalive_timeout, bool)
            or not isinstance(keepalive_timeout, (int, float))
            or not (keepalive_timeout >= 0 and math.isfinite(keepalive_timeout))
        ):
            raise WeComInputError(
                f"keepalive_timeout must be a number of seconds >= 0, got {keepalive_timeout!r}"
            )
        if proxy is not None and (not isinstance(proxy, str) or "://" not in proxy):
            raise WeComInputError(f"proxy must be a URL such as 'http://host:3128', got {proxy!r}")
        self.hooks = hook_objects(hooks)
        """The hook objects every client on this pool tells."""
        dispatch_for(self.hooks)  # refuse bad hooks here, not at the first client
        self._trace_configs = list(trace_configs)
        self._keepalive_timeout = keepalive_timeout
        self._user_agent = user_agent
        self._trust_env = bool(trust_env)
        request_options: dict[str, Any] = {}
        if proxy is not None:
            request_options["proxy"] = proxy
        if ssl is not None:
            request_options["ssl"] = ssl
        self.request_options = request_options
        """Keyword arguments every request of this pool passes to aiohttp."""
        self.rate_limiter = LocalRateLimiter()
        self.pauses = PauseBoard()
        self._tokens: dict[tuple[str, str, int], tuple[TokenManager, int]] = {}
        self._default_store = MemoryTokenStore()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._session else "idle")
        return f"<SessionPool {state} limit={self._limit}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def bind_loop(self) -> None:
        """Tie the pool to the running event loop, or refuse a second loop."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise WeComUsageError(
                "this client and its SessionPool belong to the event loop they were first "
                "used in; make a new client (and pool) inside each event loop"
            )

    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use; must be called inside the loop."""
        if self._closed:
            raise WeComClosedError("this SessionPool is closed")
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=300,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent, "Accept-Encoding": ACCEPT_ENCODING},
                json_serialize=json.dumps,
                # Bodies are inflated by read_body, which enforces the size cap on the
                # inflated bytes.
                auto_decompress=False,
                middlewares=(no_silent_resend,),
                trust_env=self._trust_env,
                trace_configs=self._trace_configs or None,
            )
        return session

    def token_manager(self, base_url: str, key: str, store: TokenStore | None) -> TokenManager:
        """The token manager of (base_url, corp and secret, store), shared on this pool.

        Each call takes a reference; give it back with :meth:`release_token_manager`.
        """
        chosen = store if store is not None else self._default_store
        ref = (base_url, key, id(chosen))
        manager, users = self._tokens.get(ref, (None, 0))
        if manager is None:
            manager = TokenManager(key, chosen)
        self._tokens[ref] = (manager, users + 1)
        return manager

    async def release_token_manager(self, base_url: str, key: str, manager: TokenManager) -> None:
        """Give back a reference; the last one out stops the manager's refresh in flight."""
        ref = (base_url, key, id(manager.store))
        held, users = self._tokens.get(ref, (None, 0))
        if held is not manager:
            return
        if users > 1:
            self._tokens[ref] = (manager, users - 1)
            return
        del self._tokens[ref]
        await manager.aclose()

    async def aclose(self) -> None:
        """Close the session and its connections. Safe to call more than once."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> SessionPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
