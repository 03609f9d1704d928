"""One deadline over one await, without a task of its own where Python allows."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["within"]

T = TypeVar("T")


async def within(seconds: float, step: Coroutine[Any, Any, T]) -> T:
    """``await step``, or raise ``asyncio.TimeoutError`` once ``seconds`` have passed.

    ``asyncio.timeout`` where there is one (3.11): a timer on the caller's own task.
    ``wait_for`` runs the step in a task of its own, which cost a callback POST more
    than its crypto did, and a Redis command more than its round trip.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await step
    return await asyncio.wait_for(step, seconds)  # pragma: no cover - Python 3.10
