"""SessionPool: one aiohttp session and connector, shared by many clients."""

from __future__ import annotations

import json
from types import TracebackType

import aiohttp

from ._ratelimit import LocalRateLimiter
from .errors import WeComClosedError

__all__ = ["SessionPool"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class SessionPool:
    """Owns one :class:`aiohttp.ClientSession` and its connector, for many clients.

    A service that talks to many corps builds one pool and one
    :class:`~wecom_async.WeComClient` per corp and app on it, so that every client
    reuses the same keep-alive connections. The pool also holds the in-process rate
    budgets, so clients of the same corp on the same pool share one budget.

    The session is created lazily, on the first request, inside the running event
    loop; the pool itself can be built anywhere. Close it with :meth:`aclose` or use
    it as ``async with SessionPool() as pool:``. A client never closes a pool it was
    given.

    Args:
        limit: most connections open at once, over all hosts.
        limit_per_host: most connections to one host (0 means no separate cap).
        keepalive_timeout: seconds an idle connection is kept for reuse.
        max_body_bytes: answers larger than this are refused (WeComTransportError).
        user_agent: the User-Agent header sent with every request.
    """

    def __init__(
        self,
        *,
        limit: int = 100,
        limit_per_host: int = 0,
        keepalive_timeout: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        user_agent: str = "wecom-async",
    ) -> None:
        if limit < 0 or limit_per_host < 0:
            raise ValueError("limit and limit_per_host must be >= 0")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive_timeout = keepalive_timeout
        self._user_agent = user_agent
        self.max_body_bytes = max_body_bytes
        self.rate_limiter = LocalRateLimiter()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._session else "idle")
        return f"<SessionPool {state} limit={self._limit}>"

    @property
    def closed(self) -> bool:
        return self._closed

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
                headers={"User-Agent": self._user_agent},
                json_serialize=json.dumps,
            )
        return session

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
