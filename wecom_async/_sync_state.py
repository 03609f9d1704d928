"""The bulk sync's state: a SQLite file of pairs fetched and each chunk's cursor.

Every stored page is one transaction that also moves its chunk's cursor, so a sync
killed at any moment loses at most the pages in flight. All disk work happens on
one worker thread, so the event loop never waits on the disk.

The state is recognised by a marker in its ``meta`` table; a file without it is
someone else's and is neither changed nor removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ._sync_files import Lock, remove_quietly, sync_error
from .errors import WeComInputError

__all__ = ["Chunk", "Group", "Row", "Store"]

T = TypeVar("T")

FORMAT = "wecom_async.sync"
VERSION = "3"
#: The tables of a version-1 state (no format marker yet): ours, but not resumable.
_V1_TABLES = {"meta", "done", "unlicensed", "contacts", "follows"}
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, userids TEXT NOT NULL, cursor TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'todo');
CREATE TABLE failed (userid TEXT PRIMARY KEY, errcode INTEGER NOT NULL);
CREATE TABLE unlicensed (userid TEXT PRIMARY KEY);
CREATE TABLE pairs (
    external_userid TEXT NOT NULL, contact TEXT NOT NULL, userid TEXT NOT NULL,
    info TEXT NOT NULL);
"""
# Pairs are appended in the order pages were stored, and sorted once, when they are
# read back. Keyed by (customer, member) instead, each page's 100 rows landed on
# ~100 random leaves: 1.4 MB of WAL per page, half the sync's CPU.

Row = tuple[str, str, str, str]
"""(external_userid, contact JSON, member userid, follow_info JSON)."""
Chunk = tuple[int, list[str], str]
"""(id, member userids, cursor to go on from; empty for the first page)."""
Group = tuple[str, list[str]]
"""One customer: its contact JSON and the follow_info JSON of each member, by userid."""


def _ownership(path: Path) -> str:
    """``new`` (no file), ``ours``, ``v1`` (ours, an older layout) or why it is not ours."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return "new"
    if head != _SQLITE_MAGIC:
        return "it is not a SQLite database" if head else "it is empty"
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA query_only=ON")  # looking must not change it
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta: dict[str, str] = {}
        if "meta" in tables:
            with contextlib.suppress(sqlite3.Error):
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    if meta.get("format") == FORMAT:
        return "ours"
    if tables == _V1_TABLES and meta.get("version") == "1":
        return "v1"
    return "it has no wecom-async sync marker"


class _Customer:
    """One customer's rows as they are read back (sorted by member, then storage order)."""

    __slots__ = ("contact", "ext_id", "infos", "last_rowid", "last_userid")

    def __init__(self, ext_id: str, rowid: int, contact: str, userid: str, info: str) -> None:
        self.ext_id = ext_id
        self.last_rowid = rowid
        self.contact = contact
        self.last_userid = userid
        self.infos = [info]

    def add(self, rowid: int, contact: str, userid: str, info: str) -> None:
        if userid == self.last_userid:
            self.infos[-1] = info  # the same pair stored again: the later copy wins
        else:
            self.infos.append(info)
            self.last_userid = userid
        if rowid > self.last_rowid:
            self.last_rowid, self.contact = rowid, contact

    def group(self) -> Group:
        return self.contact, self.infos


class Store:
    """The sync's SQLite state, used from one worker thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = Lock(path.with_name(path.name + ".lock"), "state")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wecom-sync-state")
        self._db: sqlite3.Connection | None = None
        self._groups: sqlite3.Cursor | None = None
        self._pending: _Customer | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the store's thread (file writes of the export go here too)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "the sync state is not open"
        return self._db

    # -- opening --

    def open(self, corp_id: str, restart: bool, max_age: float) -> tuple[int, str | None]:
        """Open or create the state; (members already done, why it started over or None).

        Raises:
            WeComSyncError: the file is not a state of this library (left untouched).
            WeComInputError: a state of another corp.
        """
        owner = _ownership(self.path)
        if owner not in ("new", "ours", "v1"):
            raise sync_error(
                errno.EEXIST,
                f"{str(self.path)!r} is not a wecom-async sync state ({owner}); it was left "
                "untouched: give another --state path",
            )
        reason: str | None = None
        if owner == "v1":
            reason = "it was written by an older version"
        elif owner == "ours" and not restart:
            reason = self._why_not_resume(corp_id, max_age)
        if restart or reason is not None:
            self.remove_files()
            reason = reason or None
        db = self._db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives the process being killed, which is what resuming
        # needs; only a power cut may lose the last pages, and they are fetched again.
        db.execute("PRAGMA synchronous=NORMAL")
        if not {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
            db.executescript(_SCHEMA)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("format", FORMAT),
                    ("version", VERSION),
                    ("corp_id", corp_id),
                    ("started_at", repr(time.time())),
                    ("skipped", "0"),
                ],
            )
            db.commit()
        (done,) = db.execute(
            "SELECT count(*) FROM chunks c, json_each(c.userids) WHERE c.status = 'done'"
        ).fetchone()
        return int(done), reason

    def _why_not_resume(self, corp_id: str, max_age: float) -> str | None:
        """None to resume; otherwise why to start over ("" when that needs no warning)."""
        db = sqlite3.connect(self.path)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
        if meta.get("corp_id") != corp_id:
            raise WeComInputError(
                f"the sync state {str(self.path)!r} belongs to another corp; "
                "start over with restart=True (--restart)"
            )
        if meta.get("version") != VERSION:
            return "it was written by another version"
        if meta.get("complete") == "1":
            # A finished sync is finished: the next one fetches everything afresh, so
            # customers who left since are not exported again.
            return ""  # started afresh without a warning: that is what finished means
        try:
            age = time.time() - float(meta.get("started_at", "0"))
        except ValueError:
            age = float("inf")
        if age > max_age:
            return (
                f"it was begun {age / 3600:.1f} h ago, more than the {max_age / 3600:g} h "
                "a state may be resumed after"
            )
        return None

    # -- planning and storing --

    def chunks(self) -> list[Chunk]:
        """The chunks not finished yet, each with its cursor."""
        rows = self._conn().execute(
            "SELECT id, userids, cursor FROM chunks WHERE status = 'todo' ORDER BY id"
        )
        return [(i, json.loads(u), c) for i, u, c in rows]

    def planned(self) -> set[str]:
        """Every member some chunk covers, whatever its status."""
        rows = self._conn().execute("SELECT value FROM chunks, json_each(chunks.userids)")
        return {u for (u,) in rows}

    def add_chunks(self, groups: Sequence[Sequence[str]]) -> list[Chunk]:
        """Store new chunks of members to fetch; returns them with their ids."""
        db = self._conn()
        made = []
        for userids in groups:
            cur = db.execute("INSERT INTO chunks (userids) VALUES (?)", (json.dumps(userids),))
            assert cur.lastrowid is not None
            made.append((cur.lastrowid, list(userids), ""))
        db.commit()
        return made

    def add_page(
        self, chunk: int, rows: list[Row], unlicensed: list[str], skipped: int, cursor: str
    ) -> None:
        """Store one page and move its chunk's cursor, in one transaction (the checkpoint)."""
        db = self._conn()
        with db:
            db.executemany("INSERT INTO pairs VALUES (?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT OR IGNORE INTO unlicensed VALUES (?)", [(u,) for u in unlicensed]
            )
            if skipped:
                db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'skipped'",
                    (skipped,),
                )
            db.execute(
                "UPDATE chunks SET cursor = ?, status = ? WHERE id = ?",
                (cursor, "todo" if cursor else "done", chunk),
            )

    def split(self, chunk: int, halves: Sequence[Sequence[str]]) -> list[Chunk]:
        """Replace a chunk by smaller ones (to isolate a member WeCom refuses)."""
        self._conn().execute("UPDATE chunks SET status = 'split' WHERE id = ?", (chunk,))
        return self.add_chunks(halves)

    def fail(self, chunk: int, userid: str, errcode: int) -> None:
        """Record a member WeCom refused, and close its one-member chunk."""
        db = self._conn()
        with db:
            db.execute("INSERT OR REPLACE INTO failed VALUES (?, ?)", (userid, errcode))
            db.execute("UPDATE chunks SET status = 'failed' WHERE id = ?", (chunk,))

    def summary(self) -> tuple[tuple[str, ...], tuple[str, ...], int]:
        """(unlicensed members, members WeCom refused, pairs skipped)."""
        db = self._conn()
        unlicensed = tuple(u for (u,) in db.execute("SELECT userid FROM unlicensed ORDER BY 1"))
        failed = tuple(u for (u,) in db.execute("SELECT userid FROM failed ORDER BY 1"))
        (skipped,) = db.execute("SELECT value FROM meta WHERE key = 'skipped'").fetchone()
        return unlicensed, failed, int(skipped)

    def mark_complete(self) -> None:
        """Record that the run finished: the next run with this state starts afresh."""
        db = self._conn()
        with db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('complete', '1')")

    # -- reading the customers back --

    def groups(self, max_groups: int) -> list[Group]:
        """The next customers in id order, each with every follower's info; [] at the end.

        One pass over the pairs in customer order: each customer's rows are
        consecutive, so grouping keeps only the current customer in memory. A pair
        stored twice (a page fetched again after a crash) counts once, and the copy
        stored last wins, as does the customer's contact stored last.
        """
        if self._groups is None:
            db = self._conn()
            with db:
                db.execute(
                    "CREATE INDEX IF NOT EXISTS pairs_order ON pairs (external_userid, userid)"
                )
            self._groups = db.execute(
                "SELECT rowid, external_userid, contact, userid, info FROM pairs "
                "ORDER BY external_userid, userid, rowid"
            )
            self._pending = None
        cursor = self._groups
        out: list[Group] = []
        while len(out) < max_groups:
            rows = cursor.fetchmany(1000)
            if not rows:
                if self._pending is not None:
                    out.append(self._pending.group())
                    self._pending = None
                break
            for rowid, ext_id, contact, userid, info in rows:
                pending = self._pending
                if pending is not None and pending.ext_id == ext_id:
                    pending.add(rowid, contact, userid, info)
                    continue
                if pending is not None:
                    out.append(pending.group())
                self._pending = _Customer(ext_id, rowid, contact, userid, info)
        return out

    # -- closing --

    def close(self) -> None:
        """Close the database (on the store's thread)."""
        self._groups = None
        if self._db is not None:
            self._db.close()
            self._db = None

    def remove_files(self) -> None:
        """Remove the state and SQLite's side files: only ever called on a state of ours."""
        for suffix in ("", "-wal", "-shm"):
            remove_quietly(Path(f"{self.path}{suffix}"))

    async def aclose(self, *, remove: bool) -> None:
        """Close, remove the files if asked, and stop the thread."""
        try:
            await self.run(self.close)
            if remove:
                await self.run(self.remove_files)
        finally:
            self._thread.shutdown(wait=False)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (after symlinks), existing or not."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
