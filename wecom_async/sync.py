"""Bulk export of a corp's whole customer book, resumable page by page.

:func:`iter_customers` lists the members with customer contact, fetches their
(customer, member) pairs with ``batch/get_by_user`` in concurrent chunks, and yields
each customer once with every member who follows it merged in (a
:class:`~wecom_async.models.SyncedCustomer`). :func:`sync_customers` is built on the
same run and writes one JSON line per customer::

    {"external_contact": {...}, "follow_info": [{"userid": ...}, ...]}

``external_contact`` and each ``follow_info`` entry are WeCom's JSON as sent (same
wire names, unknown fields kept); ``follow_info`` is ordered by userid. A lone
UTF-16 surrogate in WeCom's text (an emoji cut in half) is written as its ``\\uXXXX``
escape, so the output is always valid UTF-8 and reads back to the same string.

A customer followed by several members shows up in several members' pages, so the
pairs are first spilled into a SQLite file (the *state*, see ``_sync_state.py``),
read back sorted by (customer, member): memory stays bounded whatever the corp's
size, and a pair fetched twice counts once. Each stored page moves its chunk's cursor in the
same transaction, so a killed sync resumes from the pages it had. One run at a time
holds the state (and the output) under an OS lock that a crash releases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import attrs

from ._converter import decode
from ._json import dumps, escape_surrogates, loads
from ._paging import Stream, array_field, gather_all
from ._pairs import usable_pair
from ._sync_files import Output, os_error, remove_quietly
from ._sync_state import Chunk, Group, Row, Store, same_file
from .api.external_contact import BATCH_MAX_USERIDS, unlicensed_in
from .errors import WeComAPIError, WeComDecodeError, WeComInputError
from .models.external_contact import SyncedCustomer

if TYPE_CHECKING:
    from .client import WeComClient

__all__ = ["CustomerStream", "SyncProgress", "SyncReport", "iter_customers", "sync_customers"]

logger = logging.getLogger("wecom_async.sync")

_PATH = "externalcontact/batch/get_by_user"
#: Customers read back from the state between two progress reports.
_EXPORT_STEP = 2000
#: A member WeCom refuses (40003, invalid userid: left the corp since the member
#: list) fails its whole chunk; the chunk is split until that member is alone.
_ISOLATE_ERRCODES = frozenset({40003})
#: How old a state may be and still be resumed: older pairs are too stale to merge.
DEFAULT_MAX_STATE_AGE = 24 * 3600.0
#: An attribute of the log records that the SyncReport restates (members refused,
#: pairs skipped), so that a front end printing the report can leave them out.
IN_REPORT_KEY = "wecom_sync_in_report"
_IN_REPORT = {IN_REPORT_KEY: True}


@attrs.frozen
class SyncProgress:
    """Where a sync is. ``phase`` is ``members``, ``fetch``, ``export`` or ``done``."""

    phase: Literal["members", "fetch", "export", "done"]
    members_total: int = 0
    members_done: int = 0
    pairs: int = 0
    """(customer, member) pairs fetched in this run."""
    customers_written: int = 0


@attrs.frozen
class SyncReport:
    """What a finished sync did."""

    out: Path | None
    """The file written; None when the lines went to a stream (stdout)."""
    customers: int
    """Customers written or yielded: each exactly once."""
    members: int
    resumed_members: int
    """Members already finished by an earlier, interrupted run."""
    pairs: int
    unlicensed_userids: tuple[str, ...]
    """Members WeCom skipped for lack of an interop licence: their customers are missing."""
    elapsed: float
    failed_userids: tuple[str, ...] = ()
    """Members WeCom refused (40003): their customers are missing, everyone else's are in."""
    skipped_pairs: int = 0
    """Pairs left out: no customer (``external_contact: null``) or no member to file them under."""


def _rows(page: Mapping[str, Any], userids: Sequence[str]) -> tuple[list[Row], int]:
    """The pairs of one page as rows, and how many were skipped (see ``_pairs.py``)."""
    rows: list[Row] = []
    skipped = 0
    for item in array_field(page, "external_contact_list", _PATH):
        pair = usable_pair(item, userids)
        if pair is None:
            skipped += 1
            continue
        ext_id, userid, contact, info = pair
        rows.append(
            (escape_surrogates(ext_id), dumps(contact), escape_surrogates(userid), dumps(info))
        )
    if skipped:
        logger.warning(
            "%s: skipped %d pairs without a customer or a member to file them under",
            _PATH,
            skipped,
            extra=_IN_REPORT,
        )
    return rows, skipped


def plan_chunks(members: Sequence[str], per_call: int, lanes: int) -> list[list[str]]:
    """Split members into even chunks, as many as a multiple of ``lanes`` allows.

    6 chunks of 100 in 4 lanes run in two waves, the second half empty; 8 chunks of
    75 keep every lane busy in both. A chunk's pages follow one cursor, one after
    another, and only its last page is partly empty: each chunk more costs half a
    request on average, and 8 is the fewest that give each of 4 lanes two chunks.
    """
    if not members:
        return []
    count = math.ceil(len(members) / per_call)
    if count % lanes:
        count = min(len(members), count + lanes - count % lanes)
    n = len(members)
    return [list(members[i * n // count : (i + 1) * n // count]) for i in range(count)]


class _Run:
    """One run over a state: members listed, every chunk fetched, customers read back."""

    def __init__(self, store: Store, members: list[str], resumed: int) -> None:
        self.store = store
        self.members = members
        self.resumed = resumed
        self.done = resumed
        self.pairs = 0
        self.customers = 0
        self.finished = False

    async def groups(self) -> AsyncIterator[list[Group]]:
        """The customers in id order, in batches, each exactly once."""
        while batch := await self.store.run(self.store.groups, _EXPORT_STEP):
            self.customers += len(batch)
            yield batch

    async def complete(self) -> None:
        """Mark the state finished: from now on a crash does not make a rerun resume it."""
        await self.store.run(self.store.mark_complete)
        self.finished = True

    async def report(self, out: Path | None, started: float) -> SyncReport:
        unlicensed, failed, skipped = await self.store.run(self.store.summary)
        return SyncReport(
            out=out,
            customers=self.customers,
            members=len(self.members),
            resumed_members=self.resumed,
            pairs=self.pairs,
            unlicensed_userids=unlicensed,
            elapsed=time.monotonic() - started,
            failed_userids=failed,
            skipped_pairs=skipped,
        )


@attrs.frozen
class _Options:
    restart: bool
    keep_state: bool
    concurrency: int
    members_per_call: int
    limit: int
    max_state_age: float
    progress: Callable[[SyncProgress], None] | None

    def report(self, p: SyncProgress) -> None:
        if self.progress is not None:
            self.progress(p)


def _options(
    restart: bool,
    keep_state: bool,
    concurrency: int,
    members_per_call: int,
    limit: int,
    max_state_age: float,
    progress: Callable[[SyncProgress], None] | None,
) -> _Options:
    if not 1 <= members_per_call <= BATCH_MAX_USERIDS:
        raise WeComInputError(f"members_per_call must be 1 to {BATCH_MAX_USERIDS}")
    if concurrency < 1:
        raise WeComInputError("concurrency must be >= 1")
    if not 1 <= limit <= 100:
        raise WeComInputError("limit must be 1 to 100")
    if not max_state_age > 0:
        raise WeComInputError("max_state_age must be a positive number of seconds")
    return _Options(
        restart, keep_state, concurrency, members_per_call, limit, max_state_age, progress
    )


async def _fetch_chunk(
    client: WeComClient, store: Store, chunk: Chunk, run: _Run, opts: _Options
) -> list[Chunk]:
    """Fetch one chunk from its cursor to its end; returns the chunks it was split into."""
    cid, userids, cursor = chunk
    while True:
        pages = client.external_contact.batch_get_by_user_pages(
            userids, limit=opts.limit, cursor=cursor
        )
        got_page = False
        try:
            async for page in pages:
                got_page = True
                rows, skipped = _rows(page, userids)
                next_cursor = page.get("next_cursor") or ""
                if not isinstance(next_cursor, str):
                    raise WeComDecodeError(f"{_PATH} answered a next_cursor that is not a string")
                await store.run(
                    store.add_page, cid, rows, unlicensed_in(page), skipped, next_cursor
                )
                run.pairs += len(rows)
                opts.report(SyncProgress("fetch", len(run.members), run.done, run.pairs))
        except WeComAPIError as exc:
            if exc.errcode in _ISOLATE_ERRCODES:
                if len(userids) == 1:
                    logger.warning(
                        "member %r refused by WeCom (%s); skipped",
                        userids[0],
                        exc,
                        extra=_IN_REPORT,
                    )
                    await store.run(store.fail, cid, userids[0], exc.errcode)
                    return []
                half = len(userids) // 2
                return await store.run(store.split, cid, [userids[:half], userids[half:]])
            if cursor and not got_page:
                # A cursor kept from an earlier run that WeCom no longer takes: fetch the
                # chunk again from its start (pairs stored twice count once).
                logger.warning("%s: a resumed cursor was refused (%s); chunk restarted", _PATH, exc)
                cursor = ""
                continue
            raise
        run.done += len(userids)
        opts.report(SyncProgress("fetch", len(run.members), run.done, run.pairs))
        return []


async def _fetch_all(client: WeComClient, store: Store, run: _Run, opts: _Options) -> None:
    planned = await store.run(store.planned)
    new = [m for m in run.members if m not in planned]
    await store.run(store.add_chunks, plan_chunks(new, opts.members_per_call, opts.concurrency))
    queue: deque[Chunk] = deque(await store.run(store.chunks))

    async def lane() -> None:
        # Lanes pull the next chunk when free; a split chunk's halves go first.
        while queue:
            more = await _fetch_chunk(client, store, queue.popleft(), run, opts)
            queue.extendleft(reversed(more))

    await gather_all(lane() for _ in range(min(opts.concurrency, len(queue))))


@contextlib.asynccontextmanager
async def _fetched(client: WeComClient, state: Path, opts: _Options) -> AsyncIterator[_Run]:
    """Hold the state's lock, fetch what the state lacks, and hand the run over."""
    store = Store(state)
    await asyncio.to_thread(store.lock.acquire)
    run: _Run | None = None
    try:
        resumed, reason = await store.run(
            store.open, client.corp_id, opts.restart, opts.max_state_age
        )
        if reason:
            logger.warning(
                "the sync state %r is not resumed: %s; starting over", str(state), reason
            )
        opts.report(SyncProgress("members"))
        run = _Run(store, await client.external_contact.get_follow_user_list(), resumed)
        opts.report(SyncProgress("fetch", len(run.members), resumed))
        await _fetch_all(client, store, run, opts)
        yield run
    finally:
        try:
            finished = run is not None and run.finished
            await store.aclose(remove=finished and not opts.keep_state)
        finally:
            store.lock.release()


def _state_path(state: str | os.PathLike[str] | None, default: Path | None) -> Path:
    if state is None:
        if default is None:
            raise WeComInputError("a sync to a stream needs a state path (state=)")
        return default
    if not os.fspath(state):
        raise WeComInputError("the state path is empty")
    return Path(state)


def iter_customers(
    client: WeComClient,
    *,
    state: str | os.PathLike[str],
    restart: bool = False,
    keep_state: bool = False,
    concurrency: int = 4,
    members_per_call: int = BATCH_MAX_USERIDS,
    limit: int = 100,
    max_state_age: float = DEFAULT_MAX_STATE_AGE,
    progress: Callable[[SyncProgress], None] | None = None,
) -> CustomerStream:
    """Every customer of the client's corp, once each, with all its followers merged.

    Fetches every member's pairs into ``state`` first (resuming what an earlier run
    of the same state left, page by page), then yields one
    :class:`~wecom_async.models.SyncedCustomer` per customer, in external_userid
    order. Use ``async with`` so that breaking out early releases the state's lock
    at once. Exhausting the stream finishes the run: the state is removed (or, with
    ``keep_state``, marked finished, so the next run starts afresh) and the
    stream's ``report`` is set. A run that stops earlier keeps the state, and the
    next run resumes it without fetching again what it had.

    Args:
        client: the corp's client (its rate limits and retries apply).
        state: the checkpoint file. Only one run may use it at a time.
        restart: discard an existing state of this library and start over.
        keep_state: keep the state file after the run (marked finished).
        concurrency: how many member chunks are fetched at once; the members are
            split into even chunks, a multiple of this many when that fits.
        members_per_call: at most this many members per ``batch/get_by_user`` chunk
            (1 to 100).
        limit: pairs per page (1 to 100).
        max_state_age: seconds after its run began that a state is no longer
            resumed but started over (with a warning): 24 h by default.
        progress: called with a :class:`SyncProgress` after every page and step.

    Raises:
        WeComSyncError: another run holds the state, the state file is not this
            library's (it is left untouched), or the disk failed.
        WeComError: an API failure that retries did not cure; the state keeps what
            was fetched, so running again resumes.
    """
    opts = _options(
        restart, keep_state, concurrency, members_per_call, limit, max_state_age, progress
    )
    state_path = _state_path(state, None)

    async def customers() -> AsyncIterator[SyncedCustomer]:
        started = time.monotonic()
        async with _fetched(client, state_path, opts) as run:
            async for batch in run.groups():
                for contact, infos in batch:
                    yield _customer(contact, infos)
            await run.complete()
            stream.report = await run.report(None, started)

    stream = CustomerStream(customers())
    return stream


class CustomerStream(Stream[SyncedCustomer]):
    """The customers of :func:`iter_customers`; ``report`` is set once it is exhausted."""

    def __init__(self, source: Any) -> None:
        super().__init__(source)
        self.report: SyncReport | None = None


def _customer(contact: str, infos: list[str]) -> SyncedCustomer:
    data = {"external_contact": loads(contact), "follow_info": [loads(i) for i in infos]}
    return decode(data, SyncedCustomer, path=_PATH)


def _line(contact: str, infos: list[str]) -> str:
    return f'{{"external_contact":{contact},"follow_info":[{",".join(infos)}]}}\n'


def _write(f: IO[bytes], batch: list[Group]) -> None:
    f.write("".join(_line(c, i) for c, i in batch).encode("utf-8"))


def _finish_file(f: IO[bytes], sync_to_disk: bool) -> None:
    f.flush()
    if sync_to_disk:
        os.fsync(f.fileno())


def _close_quietly(f: IO[bytes]) -> None:
    # Closing flushes what is buffered, and on a full disk that fails again.
    with contextlib.suppress(OSError):
        f.close()


async def sync_customers(
    client: WeComClient,
    out: str | os.PathLike[str] | IO[bytes],
    *,
    state: str | os.PathLike[str] | None = None,
    restart: bool = False,
    keep_state: bool = False,
    concurrency: int = 4,
    members_per_call: int = BATCH_MAX_USERIDS,
    limit: int = 100,
    max_state_age: float = DEFAULT_MAX_STATE_AGE,
    progress: Callable[[SyncProgress], None] | None = None,
) -> SyncReport:
    """Export every customer of the client's corp to ``out`` as JSON Lines.

    Built on the run of :func:`iter_customers` (same arguments, same state).

    Args:
        client: the corp's client.
        out: the JSON Lines file, replaced atomically at the end through a hidden
            temporary file beside it (unique per run). A symlink is followed: its
            target is replaced and the link stays. A directory, device, FIFO or
            socket is refused. Or a binary stream (``sys.stdout.buffer``), written
            as the run goes; then ``state`` is required.
        state: the checkpoint file; defaults to ``out`` + ``.sync-state``. It may
            not be the output or its temporary file.

    ``restart``, ``keep_state``, ``concurrency``, ``members_per_call``, ``limit``,
    ``max_state_age`` and ``progress`` are as for :func:`iter_customers`.

    Raises:
        WeComInputError: a bad argument or path, before any request.
        WeComSyncError: another sync holds the output or the state, the state file
            is not this library's, or writing failed (the partial output is
            removed; the state is kept, so running again resumes).
        WeComError: an API failure that retries did not cure.
    """
    opts = _options(
        restart, keep_state, concurrency, members_per_call, limit, max_state_age, progress
    )
    started = time.monotonic()
    if isinstance(out, (str, os.PathLike)):
        target = Output(out)
        given = Path(out)
        state_path = _state_path(state, given.with_name(given.name + ".sync-state"))
        if target.is_own_file(state_path) or same_file(state_path, target.target):
            raise WeComInputError(
                f"the state {str(state_path)!r} is the output or its temporary file; "
                "give another state path"
            )
        output: Output | None = target
    else:
        output = None
        state_path = _state_path(state, None)

    async with contextlib.AsyncExitStack() as stack:
        if output is not None:
            await asyncio.to_thread(output.lock.acquire)
            stack.callback(output.lock.release)
            await asyncio.to_thread(output.remove_stale_partials)
            # Fail on an unwritable destination before any request is made.
            await asyncio.to_thread(output.create_tmp)
            stack.callback(remove_quietly, output.tmp)
        run = await stack.enter_async_context(_fetched(client, state_path, opts))
        report = await _export(run, output, out, opts, started)
    opts.report(SyncProgress("done", len(run.members), len(run.members), run.pairs, run.customers))
    return report


async def _export(
    run: _Run, output: Output | None, out: object, opts: _Options, started: float
) -> SyncReport:
    store = run.store
    if output is not None:
        where = f"cannot write {str(output.given)!r}"
        try:
            f: IO[bytes] = await store.run(open, output.tmp, "wb")
        except OSError as exc:
            raise os_error(where, exc) from None
    else:
        where = "cannot write the output stream"
        f = out  # type: ignore[assignment]
    try:
        try:
            async for batch in run.groups():
                await store.run(_write, f, batch)
                total = len(run.members)
                opts.report(SyncProgress("export", total, total, run.pairs, run.customers))
            await store.run(_finish_file, f, output is not None)
            if output is not None:
                await store.run(f.close)
        except OSError as exc:
            raise os_error(where, exc) from None
    finally:
        if output is not None:
            _close_quietly(f)
    report = await run.report(output.target if output is not None else None, started)
    # Finished before the rename: a crash between the two must not make the next
    # run resume a state whose customers are already out (it starts afresh).
    await run.complete()
    if output is not None:
        try:
            await store.run(os.replace, output.tmp, output.target)
        except OSError as exc:
            raise os_error(where, exc) from None
    return report
