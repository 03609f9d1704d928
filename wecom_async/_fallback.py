"""Riding out an outage of a shared store: this process goes on alone, within budget.

:class:`FallbackTokenStore` and :class:`FallbackRateLimiter` wrap a shared token
store and a shared rate limiter (Redis's) and keep the outage policy out of them.
When the shared one is unreachable, the first caller to find out logs one warning
and the wrapper switches to this process's own cache and windows; one background
probe pings the store until it answers, then the wrapper reports what it did alone,
logs one line, and switches back. Callers never wait out a time limit each.

The rate budget is never overspent: the shared windows may already be full when
the outage starts, so the local windows start as if their whole period were
spent, and then give this process only ``share`` of each limit (1/N for N
workers). The slots taken locally are added to the shared windows when the store
is back, so a window that spans the outage still counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator
from typing import Protocol

import attrs

from ._background import Background
from ._ratelimit import RateLimit, RateLimiter, RateSlot, SlidingWindow
from ._token import AccessToken, LockingTokenStore
from .errors import WeComInputError, WeComStoreError, WeComUsageError

__all__ = [
    "FallbackRateLimiter",
    "FallbackTokenStore",
    "SharedRateLimiter",
    "SharedTokenStore",
    "TakenSlot",
]

logger = logging.getLogger("wecom_async")


@attrs.frozen
class TakenSlot:
    """A slot this process took alone while the shared limiter was unreachable."""

    member: str
    """The slot's id, unique across processes."""
    age: float | None
    """Seconds since its answer came back, or None while it is still in flight."""


class SharedTokenStore(LockingTokenStore, Protocol):
    """A token store shared between processes that can say whether it is reachable."""

    background: Background

    async def ping(self) -> None: ...


class SharedRateLimiter(RateLimiter, Protocol):
    """A rate limiter shared between processes, which can take in slots taken elsewhere.

    ``record`` adds ``taken`` to the windows of (corp, path) and returns a slot,
    for each one still in flight, whose ``release()`` ends it as any other.
    """

    background: Background

    async def ping(self) -> None: ...

    async def record(
        self, corp_id: str, path: str, limits: tuple[RateLimit, ...], taken: list[TakenSlot]
    ) -> dict[str, RateSlot]: ...


class _Outage:
    """Whether the shared store is reachable; one warning each way; one probe while down."""

    def __init__(self, what: str, background: Background, probe_interval: float) -> None:
        if not (probe_interval > 0 and math.isfinite(probe_interval)):
            raise WeComInputError(f"probe_interval must be positive, got {probe_interval!r}")
        self._what = what
        self._background = background
        self._interval = probe_interval
        self._probe: asyncio.Task[None] | None = None
        self.down = False
        self.back = asyncio.Event()

    def begin(self, error: WeComStoreError) -> None:
        """A caller found the store unreachable (``error``); the first one says so."""
        if not error.unreachable:
            raise error
        if not self.down:
            self.down = True
            self.back = asyncio.Event()
            logger.warning(
                "%s is unreachable (%s); this process goes on alone until it is back",
                self._what,
                error,
            )
        self.watch()

    def watch(self) -> None:
        """Make sure one probe runs while the store is down (a closing client stops it)."""
        if self.down and (self._probe is None or self._probe.done()):
            self._probe = self._background.watcher(self._run())

    async def _run(self) -> None:
        while self.down:
            await asyncio.sleep(self._interval)
            try:
                await self.recover()
            except WeComStoreError as exc:
                logger.debug("%s is still unreachable: %s", self._what, exc)
                continue
            self.down = False
            self.back.set()
            logger.warning("%s is back; this process shares it again", self._what)

    async def recover(self) -> None:
        """Check the store answers, and hand it what was done alone; raise if it cannot."""
        raise NotImplementedError


class FallbackTokenStore(_Outage):
    """A shared token store that falls back to this process's cache during an outage.

    Tokens read or written while the store answers are kept here too, so the
    outage starts with the token every process was using.

    Args:
        shared: the shared store, such as :class:`~wecom_async.redis.RedisTokenStore`.
        probe_interval: seconds between two checks of an unreachable store.
    """

    def __init__(self, shared: SharedTokenStore, *, probe_interval: float = 0.5) -> None:
        super().__init__(repr(shared), shared.background, probe_interval)
        self._shared = shared
        self._local: dict[str, AccessToken] = {}

    def __repr__(self) -> str:
        return f"<FallbackTokenStore over {self._shared!r} down={self.down}>"

    async def recover(self) -> None:
        await self._shared.ping()

    async def get(self, key: str) -> AccessToken | None:
        """The shared token, or while the store is down, the one this process holds."""
        self.watch()
        if not self.down:
            try:
                token = await self._shared.get(key)
            except WeComStoreError as exc:
                self.begin(exc)
            else:
                if token is not None:
                    self._local[key] = token
                return token
        return self._local.get(key)

    async def set(self, key: str, token: AccessToken) -> None:
        """Keep ``token`` here, and in the shared store while it answers."""
        self._local[key] = token
        if not self.down:
            try:
                await self._shared.set(key, token)
            except WeComStoreError as exc:
                self.begin(exc)

    async def invalidate(self, key: str, value: str) -> None:
        """Drop ``value`` here, and in the shared store while it answers (compare first)."""
        current = self._local.get(key)
        if current is not None and current.value == value:
            del self._local[key]
        if not self.down:
            try:
                await self._shared.invalidate(key, value)
            except WeComStoreError as exc:
                self.begin(exc)

    @contextlib.asynccontextmanager
    async def refresh_lock(self, key: str) -> AsyncIterator[None]:
        """The shared refresh lock; while the store is down, this process's single flight."""
        async with contextlib.AsyncExitStack() as stack:
            if not self.down:
                try:
                    await stack.enter_async_context(self._shared.refresh_lock(key))
                except WeComStoreError as exc:
                    self.begin(exc)
            yield


class _AloneSlot:
    """A slot taken in this process during an outage; reported to the store later."""

    __slots__ = ("_local", "back_at", "member", "shared")

    def __init__(self, local: RateSlot) -> None:
        self._local: RateSlot | None = local
        self.member = uuid.uuid4().hex
        self.back_at: float | None = None
        self.shared: RateSlot | None = None  # once reported while still in flight

    def release(self) -> None:
        local, self._local = self._local, None
        if local is None:
            raise WeComUsageError("a rate-limit slot was released twice")
        local.release()
        self.back_at = asyncio.get_running_loop().time()
        if self.shared is not None:
            self.shared.release()

    def taken(self, now: float) -> TakenSlot:
        return TakenSlot(self.member, None if self.back_at is None else now - self.back_at)


_WindowKey = tuple[str, str, tuple[RateLimit, ...]]


class FallbackRateLimiter(_Outage):
    """A shared rate limiter that falls back to this process's windows during an outage.

    Args:
        shared: the shared limiter, such as :class:`~wecom_async.redis.RedisRateLimiter`.
        share: the share of each limit this process takes during an outage; 1/N
            keeps N workers within the budget between them.
        probe_interval: seconds between two checks of an unreachable limiter.

    The local windows of an outage start full (as if the current period were
    spent), because the shared windows may have been, so the first ``period`` of
    an outage sends nothing; callers waiting then go to the shared limiter as soon
    as it is back. The slots taken alone are added to the shared windows then.
    """

    def __init__(
        self, shared: SharedRateLimiter, *, share: float = 1.0, probe_interval: float = 0.5
    ) -> None:
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise WeComInputError(f"share must be in (0, 1], got {share!r}")
        super().__init__(repr(shared), shared.background, probe_interval)
        self._shared = shared
        self._share = share
        self._windows: dict[_WindowKey, SlidingWindow] = {}
        self._alone: dict[_WindowKey, list[_AloneSlot]] = {}

    def __repr__(self) -> str:
        return f"<FallbackRateLimiter over {self._shared!r} share={self._share} down={self.down}>"

    async def pause(self, corp_id: str, path: str, seconds: float) -> None:
        """Share a 45009 pause through the shared limiter; while it is down, skip it.

        Down, the local windows already start spent, which keeps this process
        quieter than any pause would.
        """
        if self.down:
            return
        share = getattr(self._shared, "pause", None)
        if share is None:
            return
        try:
            await share(corp_id, path, seconds)
        except WeComStoreError as exc:
            self.begin(exc)

    async def acquire(self, corp_id: str, path: str, limits: tuple[RateLimit, ...]) -> RateSlot:
        """A shared slot; while the shared limiter is down, one of this process's share."""
        while True:
            if not self.down:
                try:
                    return await self._shared.acquire(corp_id, path, limits)
                except WeComStoreError as exc:
                    self.begin(exc)
            slot = await self._alone_slot((corp_id, path, limits))
            if slot is not None:
                return slot

    async def _alone_slot(self, key: _WindowKey) -> RateSlot | None:
        """A local slot, or None if the shared limiter came back first."""
        back = self.back
        if back.is_set():
            return None
        self.watch()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow(
                [RateLimit(max(1, math.floor(lim.max_calls * self._share)), lim.period)
                 for lim in key[2]]
            )  # fmt: skip
            window.spend(asyncio.get_running_loop().time())
        take = asyncio.ensure_future(window.acquire())
        came_back = asyncio.ensure_future(back.wait())
        try:
            await asyncio.wait((take, came_back), return_when=asyncio.FIRST_COMPLETED)
        finally:
            came_back.cancel()
            if not take.done():
                take.cancel()
            # Collect the outcome (or the cancellation) so nothing is left unretrieved.
            await asyncio.gather(take, came_back, return_exceptions=True)
        local = None if take.cancelled() or take.exception() else take.result()
        if local is None:
            return None
        if back.is_set():
            local.release()  # taken as the store came back: unused, cooled locally
            return None
        slot = _AloneSlot(local)
        self._alone.setdefault(key, []).append(slot)
        return slot

    async def recover(self) -> None:
        await self._shared.ping()
        # Slots taken while a report is on its way join the next one: the store is
        # called back only once nothing taken alone is left unreported.
        while self._alone:
            key, slots = self._alone.popitem()
            corp_id, path, limits = key
            now = asyncio.get_running_loop().time()
            try:
                shared = await self._shared.record(
                    corp_id, path, limits, [slot.taken(now) for slot in slots]
                )
            except BaseException:
                self._alone.setdefault(key, []).extend(slots)
                raise
            for slot in slots:
                ending = shared.get(slot.member)
                if ending is None:
                    continue
                slot.shared = ending
                if slot.back_at is not None:  # answered while the report was on its way
                    ending.release()
        self._windows.clear()

    async def flush(self) -> None:
        """Wait until every slot released so far has reached the shared limiter."""
        await self._shared.background.flush()
