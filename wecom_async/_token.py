"""The access token: where it is kept, when it is refreshed, and when it is dropped.

WeCom blocks callers that call ``gettoken`` too often, so the token is cached
(per corp and secret) and refreshed as a single flight: however many coroutines
find it missing at once, one refresh runs and all of them share its result, its
retries included (the fetch passed in retries under the client's policy). The
clients of one corp and secret on one pool share one manager, so they share the
token too. WeCom may also revoke a token early; a call that answers 40014 or 42001
drops the token, but only if the cache still holds the very token that failed
(compare before invalidate), so a late failure cannot throw away a newer token.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import attrs

from .errors import WeComClosedError, WeComTransportError

__all__ = [
    "AccessToken",
    "LockingTokenStore",
    "MemoryTokenStore",
    "TokenManager",
    "TokenStore",
    "token_key",
]

#: Refresh this long before WeCom's ``expires_in`` runs out, at most.
MAX_SAFETY_MARGIN = 300.0

#: How many recent token values a manager remembers, so that text can be masked.
_REMEMBERED = 8

Fetch = Callable[[], Awaitable[tuple[str, float]]]


@attrs.frozen
class AccessToken:
    """A token and the wall-clock time (epoch seconds) after which it is not used.

    ``expires_at`` already has the safety margin taken off WeCom's ``expires_in``.
    The value never appears in the repr.
    """

    value: str = attrs.field(repr=False)
    expires_at: float

    def is_fresh(self, now: float) -> bool:
        """Whether the token may still be used at wall-clock time ``now``."""
        return now < self.expires_at


@runtime_checkable
class TokenStore(Protocol):
    """Where access tokens are cached. Keys come from :func:`token_key`.

    Implementations must make ``invalidate`` compare before it deletes: it drops
    the entry only if the entry's value is still ``value``.
    """

    async def get(self, key: str) -> AccessToken | None:
        """The cached token for ``key``, or None."""
        ...

    async def set(self, key: str, token: AccessToken) -> None:
        """Cache ``token`` under ``key``, replacing any other."""
        ...

    async def invalidate(self, key: str, value: str) -> None:
        """Drop the entry for ``key`` only if its value is still ``value``."""
        ...


class LockingTokenStore(TokenStore, Protocol):
    """A store shared between processes, which also serialises refreshes.

    ``refresh_lock(key)`` is an async context manager held while one process
    re-checks the store and, if still needed, fetches a new token.
    """

    def refresh_lock(self, key: str) -> AbstractAsyncContextManager[object]:
        """A lock held across processes while one of them refreshes ``key``'s token."""
        ...


class MemoryTokenStore:
    """The default store: a dict in this process."""

    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}

    def __repr__(self) -> str:
        return f"<MemoryTokenStore with {len(self._tokens)} token(s)>"

    async def get(self, key: str) -> AccessToken | None:
        """The cached token for ``key``, or None."""
        return self._tokens.get(key)

    async def set(self, key: str, token: AccessToken) -> None:
        """Cache ``token`` under ``key``, replacing any other."""
        self._tokens[key] = token

    async def invalidate(self, key: str, value: str) -> None:
        """Drop the entry for ``key`` only if its value is still ``value``."""
        current = self._tokens.get(key)
        if current is not None and current.value == value:
            del self._tokens[key]


def _being_cancelled() -> bool:
    """Whether the current task has a cancellation pending (knowable on 3.11+ only)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


def token_key(corp_id: str, corp_secret: str) -> str:
    """The cache key of a (corp, app): the corp id and a digest of the secret.

    A token only works for the app whose secret fetched it, hence the secret in
    the key; it is hashed so that the key can be logged or stored safely.
    """
    digest = hashlib.sha256(corp_secret.encode()).hexdigest()[:16]
    return f"{corp_id}:{digest}"


def usable_until(now: float, expires_in: float) -> float:
    """When to stop using a token that WeCom says lives ``expires_in`` seconds."""
    margin = min(MAX_SAFETY_MARGIN, expires_in / 10)
    return now + expires_in - margin


class TokenManager:
    """One (corp, app)'s token: cached locally, backed by a store, refreshed once at a time.

    ``get(fetch)`` takes the function that calls ``gettoken`` (with its retries) and
    returns ``(access_token, expires_in)``; the caller that starts a refresh lends
    its own, and every caller that arrives meanwhile shares that refresh.
    """

    def __init__(
        self,
        key: str,
        store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._store = store
        self._clock = clock
        self._seen: deque[str] = deque(maxlen=_REMEMBERED)
        self._local: AccessToken | None = None
        # The last value a call rejected: a store that is slow to forget it (another
        # process, a network store) must not hand it back to us.
        self._rejected: str | None = None
        self._refresh: asyncio.Future[str] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<TokenManager key={self._key!r} cached={self._local is not None}>"

    @property
    def store(self) -> TokenStore:
        return self._store

    def recent_values(self) -> tuple[str, ...]:
        """The last few token values this manager held: the secrets to mask in text."""
        return tuple(self._seen)

    def _hold(self, token: AccessToken) -> str:
        self._local = token
        if token.value not in self._seen:
            self._seen.append(token.value)
        return token.value

    def held(self) -> str | None:
        """The token this process holds, while it is fresh; None means :meth:`get` is needed.

        Most calls need nothing more, and this costs them no await.
        """
        local = self._local
        if local is not None and local.is_fresh(self._clock()):
            return local.value
        return None

    async def get(self, fetch: Fetch, max_wait: float | None = None) -> str:
        """The current token, refreshing it with ``fetch`` (as a single flight) when needed.

        A refresh runs under the policy of the ``fetch`` that started it;
        ``max_wait`` bounds how long a caller waits on it (its own policy may allow
        less), the one that started it included. Past it,
        :class:`~wecom_async.WeComTransportError`; the refresh goes on for the others.
        """
        held = self.held()
        if held is not None:
            return held
        refresh = self._refresh
        if refresh is None:
            refresh = self._refresh = asyncio.ensure_future(self._load(fetch))
            refresh.add_done_callback(self._refresh_done)
        # shield: a caller cancelled while waiting must not cancel the refresh that
        # every other waiter is sharing.
        try:
            if max_wait is None:
                return await asyncio.shield(refresh)
            # asyncio.wait, not wait_for: on 3.11, wait_for swallows a cancellation
            # that lands as the refresh completes, and the cancelled caller runs on.
            # wait never cancels what it waits for, so the refresh goes on regardless.
            await asyncio.wait((refresh,), timeout=max_wait)
            if not refresh.done():
                raise WeComTransportError(
                    f"gettoken: the token refresh under way outlasted this call's {max_wait:g}s",
                    path="gettoken",
                    retryable=False,
                )
            return refresh.result()
        except asyncio.CancelledError:
            if self._closed and refresh.cancelled() and not _being_cancelled():
                # The refresh was cancelled by aclose(), not this caller: say so,
                # rather than hand a CancelledError to a task nobody cancelled.
                raise WeComClosedError("the client was closed while fetching a token") from None
            raise

    def _refresh_done(self, refresh: asyncio.Future[str]) -> None:
        if self._refresh is refresh:
            self._refresh = None
        if not refresh.cancelled():
            # Mark the exception retrieved: when every waiter was cancelled, nobody
            # else will, and asyncio would log it as never retrieved.
            refresh.exception()

    def _usable(self, token: AccessToken | None) -> bool:
        return token is not None and token.is_fresh(self._clock()) and token.value != self._rejected

    async def _load(self, fetch: Fetch) -> str:
        stored = await self._store.get(self._key)
        if stored is not None and self._usable(stored):
            return self._hold(stored)
        refresh_lock = getattr(self._store, "refresh_lock", None)
        if refresh_lock is None:
            return await self._fetch_and_store(fetch)
        # A shared store: one process fetches while the others wait on its lock,
        # then find the new token in the store instead of fetching their own.
        async with refresh_lock(self._key):
            stored = await self._store.get(self._key)
            if stored is not None and self._usable(stored):
                return self._hold(stored)
            return await self._fetch_and_store(fetch)

    async def _fetch_and_store(self, fetch: Fetch) -> str:
        value, expires_in = await fetch()
        token = AccessToken(value, usable_until(self._clock(), expires_in))
        self._hold(token)
        await self._store.set(self._key, token)
        return value

    async def invalidate(self, value: str) -> None:
        """Drop ``value`` if it is still the cached token; a newer one is left alone."""
        self._rejected = value
        if self._local is not None and self._local.value == value:
            self._local = None
        await self._store.invalidate(self._key, value)

    async def aclose(self) -> None:
        """Cancel a refresh in flight (the client is closing)."""
        self._closed = True
        refresh = self._refresh
        if refresh is not None and not refresh.done():
            refresh.cancel()
            await asyncio.gather(refresh, return_exceptions=True)
