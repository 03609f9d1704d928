"""The 45009 pause: after WeCom says "over the limit", one (corp, API) waits as a whole.

A 45009 is not always the client's own doing: another app of the same corp spends
the same per-corp budget, and the client's sliding window cannot see that. WeCom
then blocks the API for the rest of its window (about a minute). If every caller
retried on its own, they would all come back together and earn the block again.

So a 45009 pauses its (corp, API) for every caller on the pool. When the pause
ends, one caller goes first as a probe while the others keep waiting; a probe
that comes back without 45009 opens the gate for all, one that meets 45009 again
starts a new pause. Waiters wake with jitter so that they do not arrive together.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Final

from .errors import WeComPausedError

__all__ = ["PauseBoard", "PauseGate"]

#: The errcode that pauses an API: over the frequency limit.
PAUSING_ERRCODE: Final = 45009

#: Waiters wake spread over this share of the pause (at most _MAX_SPREAD seconds).
_SPREAD_SHARE: Final = 0.1
_MAX_SPREAD: Final = 2.0


class PauseGate:
    """The pause state of one (corp, API path), shared by every caller on a pool."""

    __slots__ = ("_changed", "_jitter", "_needs_probe", "_probe_out", "_since", "_until")

    def __init__(self, jitter: Callable[[], float] = random.random) -> None:
        self._until = 0.0  # loop time when the current pause ends
        self._since = 0.0  # loop time when the current pause began
        self._needs_probe = False  # a pause ended and nobody has got through since
        self._probe_out = False  # a probe is in flight
        self._changed: asyncio.Event | None = None
        self._jitter = jitter

    @property
    def is_open(self) -> bool:
        """No pause, no probe: a caller may go straight through."""
        return not self._needs_probe and not self._probe_out

    @property
    def paused_since(self) -> float:
        """Loop time of the 45009 that began the current (or last) pause."""
        return self._since

    def pause(self, seconds: float) -> bool:
        """A request met 45009: nobody goes for ``seconds``, then one probe first.

        Returns whether the gate was already paused (the pause is renewed).
        """
        loop = asyncio.get_running_loop()
        renewed = not self.is_open
        if not renewed:
            self._since = loop.time()
        self._until = max(self._until, loop.time() + seconds)
        self._needs_probe = True
        self._notify()
        return renewed

    async def enter(self, max_wait: float, path: str) -> bool:
        """Wait until this caller may send; return whether it goes as the probe.

        A caller that would have to wait longer than ``max_wait`` seconds raises
        :class:`~wecom_async.WeComPausedError` at once, without sending: a web
        handler with a short retry budget fails fast rather than hang.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self.is_open:
                return False
            remaining = self._until - loop.time()
            if remaining > max_wait:
                raise WeComPausedError(path, remaining, max_wait)
            if remaining > 0:
                spread = min(_MAX_SPREAD, _SPREAD_SHARE * remaining)
                await asyncio.sleep(remaining + spread * self._jitter())
                continue
            if not self._probe_out:
                self._probe_out = True
                return True
            await self._wait_for_change()

    def probe_done(self, answered: bool) -> None:
        """The probe is back. ``answered``: WeCom gave it an answer that was not 45009.

        A 45009 has called :meth:`pause` before this. A probe that got no answer at
        all (cancelled, timed out, connection lost) proves nothing, so the next
        waiter goes as the probe instead.
        """
        self._probe_out = False
        if answered and self._until <= asyncio.get_running_loop().time():
            self._needs_probe = False  # the API answers again: let everyone through
        self._notify()

    async def _wait_for_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()


class PauseBoard:
    """The pause gates of a pool, one per (corp, path), made on the first 45009."""

    __slots__ = ("_gates", "_jitter")

    def __init__(self, jitter: Callable[[], float] = random.random) -> None:
        self._gates: dict[tuple[str, str], PauseGate] = {}
        self._jitter = jitter

    def get(self, corp_id: str, path: str) -> PauseGate | None:
        """The gate of (corp, path), or None when it has never been paused."""
        return self._gates.get((corp_id, path))

    def gate(self, corp_id: str, path: str) -> PauseGate:
        """The gate of (corp, path), made if needed."""
        key = (corp_id, path)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = PauseGate(self._jitter)
        return gate
