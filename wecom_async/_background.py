"""Work that outlives the call that started it: one registry, flushed on close.

A rate slot is released after its caller has gone (``release()`` is synchronous,
as the client's ``finally`` needs), a lock taken by a cancelled caller is given
back later, and a watcher waits for a shared store to come back. Each such task is
kept referenced here until it ends (asyncio keeps only weak references), and a
closing client waits for the ones that carry state (:meth:`Background.flush`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]


class Background:
    """The background tasks of one shared store: jobs to finish, watchers to stop.

    A *job* (a release, a give-back) must reach the store before the process
    exits; :meth:`flush` waits for jobs. A *watcher* (a recovery probe, a pub/sub
    listener) runs for as long as it is useful and is restarted on demand;
    :meth:`flush` cancels watchers.
    """

    __slots__ = ("_jobs", "_watchers")

    def __init__(self) -> None:
        self._jobs: set[asyncio.Task[Any]] = set()
        self._watchers: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<Background jobs={len(self._jobs)} watchers={len(self._watchers)}>"

    def job(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` to completion in the background; :meth:`flush` waits for it."""
        return self._keep(self._jobs, coro)

    def watcher(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` until it ends or :meth:`flush` cancels it."""
        return self._keep(self._watchers, coro)

    @staticmethod
    def _keep(tasks: set[asyncio.Task[Any]], coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def flush(self) -> None:
        """Wait for every job started so far (and any they start); cancel the watchers."""
        while self._jobs or self._watchers:
            for task in self._watchers:
                task.cancel()
            await asyncio.gather(*self._jobs, *self._watchers, return_exceptions=True)
