"""Bulk export of a corp's whole customer book to JSON Lines, resumable.

:func:`sync_customers` lists the members with customer contact, fetches their
(customer, member) pairs with ``batch/get_by_user`` in concurrent chunks, and writes
one line per customer::

    {"external_contact": {...}, "follow_info": [{"userid": ...}, ...]}

``external_contact`` and each ``follow_info`` entry are WeCom's JSON as sent (same
wire names, unknown fields kept); ``follow_info`` merges every member who follows
the customer, ordered by userid.

A customer followed by several members shows up in several members' pages, so the
pairs are first spilled into a SQLite file beside the output (the *state*), keyed
by (customer, member): memory stays bounded whatever the corp's size, and a pair
fetched twice is stored once. The state also records which members are finished,
so an interrupted sync resumes where it stopped and re-fetches only unfinished
members. The output is written to a temporary file and renamed into place, so a
reader never sees a partial file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from ._paging import array_field, chunked, gather_all
from .api.external_contact import BATCH_MAX_USERIDS, unlicensed_in
from .errors import WeComDecodeError, WeComInputError

if TYPE_CHECKING:
    from .client import WeComClient

__all__ = ["SyncProgress", "SyncReport", "sync_customers"]

T = TypeVar("T")
_PATH = "externalcontact/batch/get_by_user"
_SCHEMA_VERSION = "1"
#: Lines written between two progress reports (and two hops to the store's thread).
_EXPORT_STEP = 2000


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

    out: Path
    customers: int
    """Lines written: one per customer, each exactly once."""
    members: int
    resumed_members: int
    """Members already finished by an earlier, interrupted run."""
    pairs: int
    unlicensed_userids: tuple[str, ...]
    """Members WeCom skipped for lack of an interop licence: their customers are missing."""
    elapsed: float


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _rows(page: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(external_userid, contact JSON, member userid, follow_info JSON) for each pair."""
    rows = []
    for item in array_field(page, "external_contact_list", _PATH):
        contact = item.get("external_contact") if isinstance(item, Mapping) else None
        info = item.get("follow_info") if isinstance(item, Mapping) else None
        ext_id = contact.get("external_userid") if isinstance(contact, Mapping) else None
        userid = info.get("userid") if isinstance(info, Mapping) else None
        if not (isinstance(ext_id, str) and ext_id and isinstance(userid, str) and userid):
            raise WeComDecodeError(
                f"{_PATH} answered a pair without external_userid or userid", path=_PATH
            )
        rows.append((ext_id, _dumps(contact), userid, _dumps(info)))
    return rows


class _Store:
    """The sync's SQLite state, used from one worker thread only.

    Every call hops to that thread, so the event loop never blocks on disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wecom-sync-state")
        self._db: sqlite3.Connection | None = None
        self._export: tuple[sqlite3.Cursor, Any] | None = None
        # The customer being grouped while exporting: id, contact JSON, follow infos.
        self._pending: tuple[str, str, list[str]] | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # Each _do_* method runs on the store's thread.

    def _do_open(self, corp_id: str, restart: bool) -> set[str]:
        if restart:
            self._do_remove_files()
        db = self._db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS done (userid TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS unlicensed (userid TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS contacts (
                external_userid TEXT PRIMARY KEY, contact TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS follows (
                external_userid TEXT NOT NULL, userid TEXT NOT NULL, info TEXT NOT NULL,
                PRIMARY KEY (external_userid, userid)) WITHOUT ROWID;
            """
        )
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("complete") == "1" and meta.get("corp_id") == corp_id:
            # A kept state of a finished sync: the next sync starts afresh, so that
            # customers who have left since are not exported again.
            db.executescript(
                "DELETE FROM done; DELETE FROM unlicensed; DELETE FROM contacts; "
                "DELETE FROM follows; DELETE FROM meta;"
            )
            meta = {}
        if meta and (meta.get("corp_id"), meta.get("version")) != (corp_id, _SCHEMA_VERSION):
            db.close()
            self._db = None
            raise WeComInputError(
                f"the sync state {str(self.path)!r} belongs to another corp or version; "
                "start over with restart=True (--restart)"
            )
        db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("corp_id", corp_id), ("version", _SCHEMA_VERSION)],
        )
        db.commit()
        return {u for (u,) in db.execute("SELECT userid FROM done")}

    def _db_(self) -> sqlite3.Connection:
        assert self._db is not None, "the sync state is not open"
        return self._db

    def _do_add(self, rows: list[tuple[str, str, str, str]], unlicensed: list[str]) -> None:
        db = self._db_()
        db.executemany(
            "INSERT OR REPLACE INTO contacts VALUES (?, ?)", [(r[0], r[1]) for r in rows]
        )
        db.executemany(
            "INSERT OR REPLACE INTO follows VALUES (?, ?, ?)", [(r[0], r[2], r[3]) for r in rows]
        )
        db.executemany("INSERT OR IGNORE INTO unlicensed VALUES (?)", [(u,) for u in unlicensed])

    def _do_mark_done(self, userids: list[str]) -> None:
        db = self._db_()
        db.executemany("INSERT OR IGNORE INTO done VALUES (?)", [(u,) for u in userids])
        db.commit()  # the checkpoint: these members' pairs are on disk

    def _do_mark_complete(self) -> None:
        db = self._db_()
        db.execute("INSERT OR REPLACE INTO meta VALUES ('complete', '1')")
        db.commit()

    def _do_unlicensed(self) -> tuple[str, ...]:
        return tuple(u for (u,) in self._db_().execute("SELECT userid FROM unlicensed ORDER BY 1"))

    def _do_export_start(self, tmp: Path) -> None:
        # One pass over the pairs in customer order; each customer's rows are
        # consecutive, so grouping needs only the current customer in memory.
        cursor = self._db_().execute(
            "SELECT f.external_userid, c.contact, f.info FROM follows f "
            "JOIN contacts c USING (external_userid) ORDER BY f.external_userid, f.userid"
        )
        self._export = (cursor, tmp.open("w", encoding="utf-8"))
        self._pending = None

    def _do_export_step(self, max_lines: int) -> tuple[int, bool]:
        assert self._export is not None
        cursor, out = self._export
        written = 0
        while written < max_lines:
            row = cursor.fetchone()
            pending = self._pending
            if row is None:
                if pending is not None:
                    out.write(_line(pending))
                    written += 1
                    self._pending = None
                out.flush()
                os.fsync(out.fileno())
                out.close()
                self._export = None
                return written, True
            ext_id, contact, info = row
            if pending is not None and pending[0] == ext_id:
                pending[2].append(info)
                continue
            if pending is not None:
                out.write(_line(pending))
                written += 1
            self._pending = (ext_id, contact, [info])
        return written, False

    def _do_close(self) -> None:
        if self._export is not None:
            self._export[1].close()
            self._export = None
        if self._db is not None:
            self._db.close()
            self._db = None

    def _do_remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").unlink()

    # The async face.

    async def open(self, corp_id: str, restart: bool) -> set[str]:
        return await self._run(self._do_open, corp_id, restart)

    async def add(self, rows: list[tuple[str, str, str, str]], unlicensed: list[str]) -> None:
        await self._run(self._do_add, rows, unlicensed)

    async def mark_done(self, userids: list[str]) -> None:
        await self._run(self._do_mark_done, userids)

    async def mark_complete(self) -> None:
        await self._run(self._do_mark_complete)

    async def unlicensed(self) -> tuple[str, ...]:
        return await self._run(self._do_unlicensed)

    async def export_start(self, tmp: Path) -> None:
        await self._run(self._do_export_start, tmp)

    async def export_step(self, max_lines: int) -> tuple[int, bool]:
        return await self._run(self._do_export_step, max_lines)

    async def close(self, *, remove: bool) -> None:
        try:
            await self._run(self._do_close)
            if remove:
                await self._run(self._do_remove_files)
        finally:
            self._thread.shutdown(wait=False)


def _check_writable(out: Path, tmp: Path) -> None:
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a directory, not a file to write")
    tmp.open("w", encoding="utf-8").close()


def _line(pending: tuple[str, str, list[str]]) -> str:
    _, contact, infos = pending
    return f'{{"external_contact":{contact},"follow_info":[{",".join(infos)}]}}\n'


async def sync_customers(
    client: WeComClient,
    out: str | os.PathLike[str],
    *,
    state: str | os.PathLike[str] | None = None,
    restart: bool = False,
    keep_state: bool = False,
    concurrency: int = 4,
    members_per_call: int = BATCH_MAX_USERIDS,
    limit: int = 100,
    progress: Callable[[SyncProgress], None] | None = None,
) -> SyncReport:
    """Export every customer of the client's corp to ``out`` as JSON Lines.

    Args:
        client: the corp's client (its rate limits and retries apply).
        out: the JSON Lines file to write; replaced atomically at the end.
        state: the checkpoint file; defaults to ``out`` + ``.sync-state``. When it
            exists, the sync resumes: finished members are not fetched again.
        restart: discard an existing state and start over.
        keep_state: keep the state file after success (it is removed by default);
            the next sync with it starts afresh.
        concurrency: how many member chunks are fetched at once.
        members_per_call: members per ``batch/get_by_user`` chunk (1 to 100); a
            smaller chunk makes finer checkpoints at the cost of more calls.
        limit: pairs per page (1 to 100).
        progress: called with a :class:`SyncProgress` after every page and step.

    Raises:
        WeComError: an API failure that retries did not cure; the state keeps what
            was finished, so running again resumes.
        OSError: ``out`` or the state cannot be written.
    """
    if not 1 <= members_per_call <= BATCH_MAX_USERIDS:
        raise WeComInputError(f"members_per_call must be 1 to {BATCH_MAX_USERIDS}")
    if concurrency < 1:
        raise WeComInputError("concurrency must be >= 1")
    started = time.monotonic()
    out_path = Path(out)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    state_path = (
        Path(state) if state is not None else out_path.with_name(out_path.name + ".sync-state")
    )
    # Fail on an unwritable destination before any request is made.
    await asyncio.to_thread(_check_writable, out_path, tmp)

    def report(p: SyncProgress) -> None:
        if progress is not None:
            progress(p)

    store = _Store(state_path)
    succeeded = False
    try:
        done = await store.open(client.corp_id, restart)
        report(SyncProgress("members"))
        members = await client.external_contact.get_follow_user_list()
        todo = [m for m in members if m not in done]
        resumed = len(members) - len(todo)
        counts = {"members": resumed, "pairs": 0}
        report(SyncProgress("fetch", len(members), resumed))

        async def fetch(chunk: list[str], gate: asyncio.Semaphore) -> None:
            async with gate:
                pages = client.external_contact.batch_get_by_user_pages(chunk, limit=limit)
                async for page in pages:
                    rows = _rows(page)
                    await store.add(rows, unlicensed_in(page))
                    counts["pairs"] += len(rows)
                    report(SyncProgress("fetch", len(members), counts["members"], counts["pairs"]))
                await store.mark_done(chunk)
                counts["members"] += len(chunk)
                report(SyncProgress("fetch", len(members), counts["members"], counts["pairs"]))

        gate = asyncio.Semaphore(concurrency)
        await gather_all(fetch(list(c), gate) for c in chunked(todo, members_per_call))

        await store.export_start(tmp)
        written, finished = 0, False
        while not finished:
            step, finished = await store.export_step(_EXPORT_STEP)
            written += step
            report(SyncProgress("export", len(members), len(members), counts["pairs"], written))
        unlicensed = await store.unlicensed()
        os.replace(tmp, out_path)
        succeeded = True
        if keep_state:
            await store.mark_complete()
    finally:
        await store.close(remove=succeeded and not keep_state)
        if not succeeded:
            with contextlib.suppress(OSError):
                tmp.unlink()
    report(SyncProgress("done", len(members), len(members), counts["pairs"], written))
    return SyncReport(
        out=out_path,
        customers=written,
        members=len(members),
        resumed_members=resumed,
        pairs=counts["pairs"],
        unlicensed_userids=unlicensed,
        elapsed=time.monotonic() - started,
    )
