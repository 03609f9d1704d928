"""The one sliding-window counter the fake's limits, its stats and the tests share."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wecom_async.testing import SlidingWindow, most_in_any_window


def test_a_time_counts_until_one_period_later_exclusive() -> None:
    window = SlidingWindow(1.0)
    assert [window.add(t) for t in (0.0, 0.5, 0.999)] == [1, 2, 3]
    assert window.add(1.0) == 3  # 0.0 left as 1.0 arrived: the window is half-open
    assert window.count(2.0) == 0 and window.most == 3


@given(st.lists(st.floats(min_value=0, max_value=10), max_size=40), st.sampled_from([0.1, 1, 3]))
def test_most_in_any_window_matches_counting_every_window(
    times: list[float], period: float
) -> None:
    brute = max((sum(1 for u in times if t <= u < t + period) for t in times), default=0)
    assert most_in_any_window(times, period) == brute
