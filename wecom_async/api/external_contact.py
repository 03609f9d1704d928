"""Customer contact endpoints (``externalcontact/*``)."""

from __future__ import annotations

import builtins
import contextlib
import copy
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from .._call_options import CallOptions
from .._converter import decode
from .._fast_decode import FastDecoder, FastPage, MergedPages, array_of, decode_page
from .._paging import (
    Stream,
    array_field,
    chunked,
    follow_cursor,
    merge_streams,
    require_id,
    unique_ids,
)
from .._pairs import usable_pair
from ..errors import (
    WeComAPIError,
    WeComBusyError,
    WeComDecodeError,
    WeComError,
    WeComInputError,
    WeComNotFoundError,
)
from ..models.external_contact import BatchContact, ExternalContactDetail, FailInfo
from ._base import Namespace

__all__ = ["BatchGetByUserStream", "DetailStream", "ExternalContactAPI"]

logger = logging.getLogger("wecom_async")

#: batch/get_by_user takes at most 100 userids a call and returns at most 100 pairs.
BATCH_MAX_USERIDS = 100
BATCH_MAX_LIMIT = 100

#: externalcontact/get's answers, decoded straight into the model when they fit.
_DETAIL = CallOptions(fast=FastDecoder(ExternalContactDetail))


# The two id lists, decoded straight into tuples when they fit.
@attrs.frozen(kw_only=True)
class _CustomerIds:
    """``externalcontact/list``'s answer."""

    external_userid: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class _FollowUserIds:
    """``externalcontact/get_follow_user_list``'s answer."""

    follow_user: tuple[str, ...] = ()


_CUSTOMER_IDS = CallOptions(fast=FastDecoder(_CustomerIds))
_FOLLOW_USER_IDS = CallOptions(fast=FastDecoder(_FollowUserIds))

#: 60011: the app may not see this customer's followers; it concerns only that id.
_PER_ID_PERMISSION_ERRCODES = frozenset({60011})


class BatchGetByUserStream(Stream[BatchContact]):
    """The (customer, member) pairs of ``batch/get_by_user``, as they arrive.

    ``unlicensed_userid_list`` collects the members WeCom skipped for lack of an
    interop licence (``fail_info``); ``skipped_pairs`` counts pairs left out because
    they name no customer or no member (see :func:`wecom_async.sync.sync_customers`,
    which skips the same ones). Both are complete once the stream is exhausted.
    """

    def __init__(self, source: AsyncGenerator[BatchContact, None], unlicensed: list[str]):
        super().__init__(source)
        self.unlicensed_userid_list = unlicensed
        self.skipped_pairs = 0

    @property
    def fail_info(self) -> FailInfo:
        """WeCom's ``fail_info`` merged over every page so far, as a model."""
        return FailInfo(unlicensed_userid_list=tuple(self.unlicensed_userid_list))


class DetailStream(Stream[ExternalContactDetail]):
    """Customer details as they arrive (in completion order, not input order).

    ``failures`` maps each id that failed on its own (not found, no relationship, a
    bad id, an answer that would not decode) to its error; it is complete once the
    stream is exhausted. Errors that would fail every id (a wrong secret, a
    forbidden API, the network gone) end the stream instead.
    """

    def __init__(
        self, source: AsyncGenerator[ExternalContactDetail, None], failures: dict[str, WeComError]
    ):
        super().__init__(source)
        self.failures = failures


class _Breaker:
    """Counts failures of one kind in a row, across the workers of one stream."""

    __slots__ = ("_kind", "_limit", "count")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kind: object = None
        self.count = 0

    def trips(self, exc: WeComError) -> bool:
        """Record a failure; whether it makes ``limit`` of one kind in a row."""
        kind = _failure_kind(exc)
        if kind is None:
            return False  # per-id: says nothing about the others, and breaks no run
        self.count = self.count + 1 if kind == self._kind else 1
        self._kind = kind
        return self.count >= self._limit

    def reset(self) -> None:
        self._kind, self.count = None, 0


E = TypeVar("E", bound=BaseException)


def _without_frames(exc: E) -> E:
    """``exc`` with the traceback frames of it and its chain dropped, to keep it cheaply."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        todo += [current.__cause__, current.__context__]
    return exc


def _failure_kind(exc: WeComError) -> tuple[type, object] | None:
    """What a failure says about the server, for the circuit breaker; None for per-id ones.

    Not found and bad input concern only that id however often they come; a run of
    the same decode error, busy errcode or HTTP status says every id will fail alike.
    """
    if isinstance(exc, (WeComNotFoundError, WeComInputError)):
        return None
    return (type(exc), getattr(exc, "errcode", None) or getattr(exc, "status", None))


def _fails_only_this_id(exc: WeComError) -> bool:
    if isinstance(exc, (WeComInputError, WeComDecodeError, WeComNotFoundError, WeComBusyError)):
        return True
    if isinstance(exc, WeComAPIError):
        return type(exc) is WeComAPIError or exc.errcode in _PER_ID_PERMISSION_ERRCODES
    return False


class ExternalContactAPI(Namespace):
    """``client.external_contact``: customers and the members who follow them."""

    __slots__ = ()

    async def get(self, external_userid: str) -> ExternalContactDetail:
        """Get a customer's detail, with every follower from every cursor page.

        GET /cgi-bin/externalcontact/get
        https://developer.work.weixin.qq.com/document/path/92114

        WeCom pages ``follow_user`` once a customer has more than 500 followers;
        the pages are fetched in turn and their followers merged in order.
        """
        path = "externalcontact/get"
        require_id(external_userid, "external_userid")

        params = {"external_userid": external_userid}
        first = await self._client._call("GET", path, params, None, _DETAIL)
        if type(first) is FastPage and first["next_cursor"] == "":
            # Most customers: one page, which fit the model as it came.
            return decode_page(first, ExternalContactDetail, path=path)

        async def call(params: Mapping[str, Any]) -> dict[str, Any]:
            return await self._client._call("GET", path, params, None, _DETAIL)

        detail = MergedPages(ExternalContactDetail, ("follow_user",), path=path)
        detail.add(first)
        if first.get("next_cursor") not in (None, ""):
            # Paged (over 500 followers) or a cursor to refuse: the pager decides.
            # Most customers have one page, which needs no pager at all.
            pages = follow_cursor(
                call,
                params,
                path,
                items_key="follow_user",
                max_pages=self._client.max_pages,
                first=first,
            )
            async for page in pages:
                detail.add(page)
        return detail.result()

    async def list(self, userid: str) -> builtins.list[str]:
        """List the external_userid of every customer of one member (no paging).

        GET /cgi-bin/externalcontact/list
        https://developer.work.weixin.qq.com/document/path/92113
        """
        path = "externalcontact/list"
        require_id(userid, "userid")
        try:
            page = await self._client._call("GET", path, {"userid": userid}, None, _CUSTOMER_IDS)
        except WeComAPIError as exc:
            # A member without customers has been answered 84061 ("not external
            # contact") instead of an empty list (WxJava #1528); path/92113.
            if exc.errcode == 84061:
                return []
            raise
        return builtins.list(array_of(page, "external_userid", str, path=path))

    async def get_follow_user_list(self) -> builtins.list[str]:
        """List the userid of every member with customer contact enabled.

        GET /cgi-bin/externalcontact/get_follow_user_list
        https://developer.work.weixin.qq.com/document/path/92571
        """
        path = "externalcontact/get_follow_user_list"
        page = await self._client._call("GET", path, None, None, _FOLLOW_USER_IDS)
        return builtins.list(array_of(page, "follow_user", str, path=path))

    def batch_get_by_user(
        self, userid_list: Iterable[str], *, limit: int = BATCH_MAX_LIMIT
    ) -> BatchGetByUserStream:
        """Stream every (customer, member) pair of the given members.

        POST /cgi-bin/externalcontact/batch/get_by_user
        https://developer.work.weixin.qq.com/document/path/92994

        Any number of userids: duplicates are dropped, the rest split into chunks of
        100 that run concurrently, each following ``next_cursor`` to the end. Items
        of one chunk come in order; chunks interleave. ``limit`` is the page size
        (1 to 100). Members without an interop licence end up in the stream's
        ``unlicensed_userid_list``.

        Raises:
            WeComInputError: at once, for an empty list, a bad userid or limit.
        """
        path = "externalcontact/batch/get_by_user"
        userids = unique_ids(userid_list, "userid_list")
        _check_limit(limit)
        unlicensed: builtins.list[str] = []

        async def chunk_pages(
            chunk: Sequence[str],
        ) -> AsyncIterator[tuple[Sequence[str], dict[str, Any]]]:
            async for page in self.batch_get_by_user_pages(chunk, limit=limit):
                yield chunk, page

        async def items() -> AsyncGenerator[BatchContact, None]:
            sources = [chunk_pages(chunk) for chunk in chunked(userids, BATCH_MAX_USERIDS)]
            # aclosing: closing this stream must close the merge (and cancel its
            # chunk tasks) at once, not whenever the garbage collector runs.
            async with contextlib.aclosing(merge_streams(sources)) as pages:
                async for chunk, page in pages:
                    # fail_info comes with every page of a chunk; report each member once.
                    unlicensed.extend(u for u in unlicensed_in(page) if u not in unlicensed)
                    for item in array_field(page, "external_contact_list", path):
                        pair = usable_pair(item, chunk)
                        if pair is None:
                            stream.skipped_pairs += 1
                            continue
                        _, _, contact, info = pair
                        yield decode(
                            {"external_contact": contact, "follow_info": info},
                            BatchContact,
                            path=path,
                        )

        stream = BatchGetByUserStream(items(), unlicensed)
        return stream

    async def batch_get_by_user_pages(
        self, userid_list: Iterable[str], *, limit: int = BATCH_MAX_LIMIT, cursor: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the raw answer pages of ``batch/get_by_user`` for at most 100 members.

        POST /cgi-bin/externalcontact/batch/get_by_user

        The building block under :meth:`batch_get_by_user` for callers that want
        WeCom's JSON as sent (a bulk export) and one chunk at a time (to checkpoint
        it). ``cursor`` starts from a page's ``next_cursor`` instead of the first page
        (a resumed checkpoint). When none of the members has an interop licence
        WeCom answers 701008; that yields one empty page whose ``fail_info`` names
        them all.

        Raises:
            WeComInputError: more than 100 userids, or a bad userid or limit.
        """
        path = "externalcontact/batch/get_by_user"
        userids = unique_ids(userid_list, "userid_list")
        if len(userids) > BATCH_MAX_USERIDS:
            raise WeComInputError(
                f"userid_list holds {len(userids)} userids; one call takes at most "
                f"{BATCH_MAX_USERIDS} (batch_get_by_user splits longer lists)"
            )
        _check_limit(limit)

        async def call(body: Mapping[str, Any]) -> dict[str, Any]:
            return await self._client._call("POST", path, None, body)

        first: dict[str, Any] = {"userid_list": userids, "limit": limit}
        if cursor:
            first["cursor"] = cursor
        pages = follow_cursor(
            call,
            first,
            path,
            items_key="external_contact_list",
            max_pages=self._client.max_pages,
        )
        try:
            async for page in pages:
                yield page
        except WeComAPIError as exc:
            if exc.errcode != 701008:
                raise
            yield {"external_contact_list": [], "fail_info": {"unlicensed_userid_list": userids}}

    def iter_details(
        self,
        external_userids: Iterable[str],
        *,
        concurrency: int = 16,
        max_consecutive_failures: int = 20,
    ) -> DetailStream:
        """Stream the details of many customers, at most ``concurrency`` at a time.

        GET /cgi-bin/externalcontact/get, once per id (with its cursor pages).

        Details come in completion order. An id that fails on its own (see
        :class:`DetailStream`) is recorded in ``failures`` and the others go on.
        ``external_userids`` may be any iterable, read lazily, so a long or
        generated list is never held in memory.

        A circuit breaker ends the stream, raising the error, once
        ``max_consecutive_failures`` ids in a row have failed the same way (an HTML
        page instead of JSON, -1 after every retry): then every id would, and each
        would spend its retries. Not-found answers never trip it.
        """
        if isinstance(external_userids, (str, bytes)):
            raise WeComInputError("external_userids must be an iterable of ids, not one string")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise WeComInputError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        limit = max_consecutive_failures
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise WeComInputError(
                f"max_consecutive_failures must be an integer >= 1, got {limit!r}"
            )
        failures: dict[str, WeComError] = {}
        ids = iter(external_userids)
        breaker = _Breaker(limit)

        async def worker() -> AsyncIterator[ExternalContactDetail]:
            # Workers share one iterator: each takes the next id when it is free.
            for external_userid in ids:
                try:
                    detail = await self.get(external_userid)
                except WeComError as exc:
                    if not _fails_only_this_id(exc):
                        raise
                    logger.info("customer %r failed: %s", external_userid, exc)
                    failures[str(external_userid)] = _without_frames(exc)
                    if breaker.trips(exc):
                        logger.warning(
                            "%d customers in a row failed alike; ending the stream: %s",
                            breaker.count,
                            exc,
                        )
                        # A copy: the one in failures stays without frames.
                        raise copy.copy(exc) from None
                    continue
                breaker.reset()
                yield detail

        return DetailStream(merge_streams([worker() for _ in range(concurrency)]), failures)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= BATCH_MAX_LIMIT:
        raise WeComInputError(
            f"limit must be an integer from 1 to {BATCH_MAX_LIMIT}, got {limit!r}"
        )


def unlicensed_in(page: Mapping[str, Any]) -> builtins.list[str]:
    """The members a ``batch/get_by_user`` page reports as unlicensed (``fail_info``)."""
    path = "externalcontact/batch/get_by_user"
    fail_info = page.get("fail_info")
    if not isinstance(fail_info, Mapping):
        return []
    return builtins.list(
        decode(array_field(fail_info, "unlicensed_userid_list", path), tuple[str, ...], path=path)
    )
