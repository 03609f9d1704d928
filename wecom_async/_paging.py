"""Paging, chunking and fan-out, built on the client's one call path.

Nothing here touches the transport: it only decides which calls to make, runs
them, and puts their answers back in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from .errors import WeComDecodeError, WeComInputError

__all__ = [
    "Stream",
    "array_field",
    "chunked",
    "follow_cursor",
    "gather_all",
    "merge_streams",
    "require_id",
    "unique_ids",
]

T = TypeVar("T")

Call = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def require_id(value: object, name: str) -> str:
    """An id argument must be a non-empty string; anything else is refused before sending."""
    if not isinstance(value, str) or not value.strip():
        raise WeComInputError(f"{name} must be a non-empty string, got {value!r}")
    return value


def unique_ids(ids: Iterable[str], name: str) -> list[str]:
    """The ids in first-seen order without duplicates; refuses empty, bare-str or bad items."""
    if isinstance(ids, (str, bytes)):
        raise WeComInputError(f"{name} must be a list of ids, not a single {type(ids).__name__}")
    seen: dict[str, None] = {}
    for item in ids:
        seen[require_id(item, f"every item of {name}")] = None
    if not seen:
        raise WeComInputError(f"{name} must hold at least one id")
    return list(seen)


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` cut into consecutive slices of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run awaitables concurrently and return their results in order.

    Unlike a bare ``asyncio.gather``, the first failure (or the caller being
    cancelled) cancels the rest and waits for them, so no request is left running
    behind the caller's back.
    """
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    if not tasks:
        return []
    if len(tasks) == 1:
        return [await tasks[0]]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return [task.result() for task in tasks]


def array_field(page: Mapping[str, Any], key: str, path: str) -> list[Any]:
    """A page's array field; absent or null is empty, any other type is a decode error."""
    value = page.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise WeComDecodeError(f"{path} answered {key} as {type(value).__name__}", path=path)
    return value


async def follow_cursor(
    call: Call, params: Mapping[str, Any], path: str, *, cursor_key: str = "cursor"
) -> AsyncIterator[dict[str, Any]]:
    """Yield each page of a cursor-paged endpoint, following ``next_cursor`` to the end."""
    page = await call(params)
    yield page
    seen: set[str] = set()
    while True:
        cursor = page.get("next_cursor")
        if cursor is None or cursor == "":
            return
        if not isinstance(cursor, str):
            raise WeComDecodeError(f"{path} answered a next_cursor that is not a string", path=path)
        if cursor in seen:
            # A server that hands back a cursor twice would page forever.
            raise WeComDecodeError(f"{path} repeated next_cursor {cursor[:16]!r}", path=path)
        seen.add(cursor)
        page = await call({**params, cursor_key: cursor})
        yield page


_DONE = object()


async def merge_streams(
    sources: Sequence[AsyncIterator[T]], *, buffer: int = 1
) -> AsyncGenerator[T, None]:
    """Run async iterators concurrently and yield their items as they arrive.

    Each source runs in its own task and may run at most ``buffer`` items ahead of
    the consumer, so memory stays bounded by ``len(sources) * buffer`` items. The
    first source to fail cancels the rest and its error is raised here; closing this
    generator (or cancelling its consumer) cancels every source.
    """
    queue: asyncio.Queue[tuple[object, Any]] = asyncio.Queue(max(1, buffer * len(sources)))

    async def pump(source: AsyncIterator[T]) -> None:
        try:
            async for item in source:
                await queue.put((None, item))
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put((exc, None))
        else:
            await queue.put((_DONE, None))

    tasks = [asyncio.ensure_future(pump(source)) for source in sources]
    running = len(tasks)
    try:
        while running:
            signal, item = await queue.get()
            if signal is _DONE:
                running -= 1
            elif isinstance(signal, BaseException):
                raise signal
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Stream(AsyncIterator[T]):
    """An async iterator over a running fan-out, closable with ``async with``.

    ``async for`` works on its own; use ``async with`` (or :meth:`aclose`) when you
    may stop early, so that requests still in flight are cancelled at once rather
    than when the garbage collector gets to them.
    """

    def __init__(self, source: AsyncGenerator[T, None]) -> None:
        self._source = source

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._source.__anext__()

    async def aclose(self) -> None:
        await self._source.aclose()

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
