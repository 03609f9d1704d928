"""One sliding-window counter, for the fake's limits, its stats and tests' checks."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["SlidingWindow", "most_in_any_window"]


class SlidingWindow:
    """The times of events within the last ``period`` seconds, and the most it held.

    A time ``t`` counts until ``t + period``, exclusive: the same half-open window
    as the client's limiter, so "no more than N in any period" means the same on
    both sides.
    """

    __slots__ = ("most", "period", "times")

    def __init__(self, period: float) -> None:
        self.period = period
        self.times: deque[float] = deque()
        self.most = 0
        """The most events the window ever held at once."""

    def count(self, now: float) -> int:
        """How many events fall in the window ending at ``now``."""
        # t + period, not now - period: the arithmetic of "t counts until t + period".
        while self.times and self.times[0] + self.period <= now:
            self.times.popleft()
        return len(self.times)

    def add(self, now: float) -> int:
        """Record an event at ``now`` (times must not go backwards); the count after."""
        count = self.count(now) + 1
        self.times.append(now)
        self.most = max(self.most, count)
        return count


def most_in_any_window(times: Iterable[float], period: float) -> int:
    """The most of ``times`` that fall within any window of ``period`` seconds."""
    window = SlidingWindow(period)
    for t in sorted(times):
        window.add(t)
    return window.most
