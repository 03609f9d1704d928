"""Paging, chunking and fan-out, built on the client's one call path.

Nothing here touches the transport: it only decides which calls to make, runs
them, and puts their answers back in order.
"""

from __future__ import annotations

import asyncio
import hashlib
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


#: Empty pages in a row that still carry a cursor, before the pager is judged stuck.
MAX_EMPTY_PAGES = 3


async def follow_cursor(
    call: Call,
    params: Mapping[str, Any],
    path: str,
    *,
    items_key: str,
    max_pages: int,
    cursor_key: str = "cursor",
    more: Callable[[Mapping[str, Any]], bool] | None = None,
    max_empty_pages: int = MAX_EMPTY_PAGES,
    first: dict[str, Any] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield each page of a cursor-paged endpoint, following ``next_cursor`` to the end.

    The end is an empty ``next_cursor``, or, when ``more`` is given, a page for
    which ``more(page)`` is false (``kf/sync_msg`` always hands out a cursor and
    says ``has_more``). A pager that does not end is stopped with
    :class:`WeComDecodeError`: one that repeats a cursor, hands out more than
    ``max_pages`` pages, or hands out ``max_empty_pages`` pages in a row with
    nothing in ``items_key`` yet a cursor to go on. Memory stays bounded with the
    page count. ``first`` is the first page when the caller fetched it already:
    it is not yielded again, and the pages after it are.
    """
    if first is None:
        page = await call(params)
        yield page
    else:
        page = first
    # Digests, not the cursors: a server may hand out cursors as long as the body
    # cap allows, and a thousand of those would not fit in memory.
    seen: set[bytes] = set()
    pages = 1
    empty_run = 0
    while True:
        if more is not None and not more(page):
            return
        cursor = page.get("next_cursor")
        if cursor is None or cursor == "":
            return
        if not isinstance(cursor, str):
            raise WeComDecodeError(f"{path} answered a next_cursor that is not a string", path=path)
        digest = hashlib.blake2b(cursor.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in seen:
            raise WeComDecodeError(
                # The cursor is not shown: a server may echo the access token in it.
                f"{path}: the pager did not end: a next_cursor came back twice",
                path=path,
            )
        empty_run = 0 if page.get(items_key) else empty_run + 1
        if empty_run >= max_empty_pages:
            raise WeComDecodeError(
                f"{path}: the pager did not end: {empty_run} empty pages in a row, "
                "each with a next_cursor",
                path=path,
            )
        if pages >= max_pages:
            raise WeComDecodeError(
                f"{path}: the pager did not end: still a next_cursor after {pages} pages "
                f"(max_pages={max_pages})",
                path=path,
            )
        seen.add(digest)
        pages += 1
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


_S = TypeVar("_S", bound="Stream[Any]")


class Stream(AsyncIterator[T]):
    """An async iterator over a running fan-out, closable with ``async with``.

    ``async for`` works on its own; use ``async with`` (or :meth:`aclose`) when you
    may stop early, so that requests still in flight are cancelled at once rather
    than when the garbage collector gets to them.
    """

    def __init__(self, source: AsyncGenerator[T, None]) -> None:
        self._source = source

    def __aiter__(self: _S) -> _S:
        return self

    async def __anext__(self) -> T:
        return await self._source.__anext__()

    async def aclose(self) -> None:
        await self._source.aclose()

    async def __aenter__(self: _S) -> _S:
        # The subclass itself, so that ``async with ... as pairs`` keeps its extra
        # attributes (``pairs.unlicensed_userid_list``) for a type checker.
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
