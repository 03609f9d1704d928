"""Where the message pump keeps its place: a cursor, and the msgids handled after it.

A :class:`Checkpoint` is saved after every message the handler finished and after
every page, so a process that dies resumes at the first message it had not
finished, and skips the ones it had. Three stores: in memory, in files (one per
account, written aside and renamed into place), and in Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

import attrs

from .errors import WeComInputError, WeComStoreError

__all__ = ["Checkpoint", "CursorStore", "FileCursorStore", "MemoryCursorStore", "RedisCursorStore"]


@attrs.frozen
class Checkpoint:
    """A ``kf/sync_msg`` cursor and the msgids of its page already handled."""

    cursor: str = ""
    handled: frozenset[str] = frozenset()

    def to_json(self) -> str:
        """The checkpoint as a JSON document, as the stores keep it."""
        return json.dumps({"cursor": self.cursor, "handled": sorted(self.handled)})

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Checkpoint:
        """Read :meth:`to_json`'s document; ``where`` names it in the error if unreadable."""
        try:
            data = json.loads(text)
            cursor, handled = data["cursor"], data["handled"]
            if not isinstance(cursor, str) or not all(isinstance(h, str) for h in handled):
                raise TypeError
            return cls(cursor, frozenset(handled))
        except (ValueError, KeyError, TypeError) as exc:
            raise WeComStoreError(f"the checkpoint in {where} is not readable") from exc


class CursorStore(Protocol):
    """Loads and saves one :class:`Checkpoint` per key (a corp and an ``open_kfid``)."""

    async def load(self, key: str) -> Checkpoint:
        """The checkpoint saved under ``key``, or an empty one (start of the 3-day window)."""
        ...

    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` under ``key``, replacing the previous one."""
        ...


class MemoryCursorStore:
    """Checkpoints in this process: lost on exit, so a restart starts from the 3-day window."""

    def __init__(self) -> None:
        self._checkpoints: dict[str, Checkpoint] = {}

    async def load(self, key: str) -> Checkpoint:
        """The checkpoint saved under ``key``, or an empty one."""
        return self._checkpoints.get(key, Checkpoint())

    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` under ``key``."""
        self._checkpoints[key] = checkpoint


class FileCursorStore:
    """One small JSON file per key in ``directory``, replaced atomically.

    Each save writes a temporary file beside the target, flushes it to disk and
    renames it over the old one, so a crash (or a full disk) leaves the previous
    checkpoint or the new one, never half of one. Disk work runs in a thread.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"<FileCursorStore {str(self.directory)!r}>"

    def path(self, key: str) -> Path:
        """The file of ``key``: readable, and unique even for keys that differ in odd characters."""
        if not isinstance(key, str) or not key:
            raise WeComInputError(f"key must be a non-empty string, got {key!r}")
        readable = re.sub(r"[^0-9A-Za-z_-]", "_", key)[:80]
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.directory / f"{readable}.{digest}.json"

    async def load(self, key: str) -> Checkpoint:
        """The checkpoint in ``key``'s file, or an empty one when there is no file."""
        path = self.path(key)
        try:
            text = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return Checkpoint()
        except OSError as exc:
            raise WeComStoreError(f"cannot read {path}: {exc.strerror}") from None
        return Checkpoint.from_json(text, str(path))

    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` aside and rename it over ``key``'s file."""
        await asyncio.to_thread(self._write, self.path(key), checkpoint.to_json().encode())

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except OSError as exc:
            Path(temp).unlink(missing_ok=True)
            raise WeComStoreError(f"cannot save the checkpoint {path}: {exc.strerror}") from None
        # The rename itself is durable only once the directory is flushed.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class RedisCursorStore:
    """Checkpoints in Redis (``redis.asyncio.Redis``), shared by every worker.

    Keys are ``{prefix}:kf:cursor:{key}``. A Redis error raises
    :class:`~wecom_async.WeComStoreError`.
    """

    def __init__(self, redis: Any, *, prefix: str = "wecom_async") -> None:
        self._redis = redis
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"<RedisCursorStore prefix={self._prefix!r}>"

    def _key(self, key: str) -> str:
        return f"{self._prefix}:kf:cursor:{key}"

    async def load(self, key: str) -> Checkpoint:
        """The checkpoint under ``key`` in Redis, or an empty one."""
        try:
            text = await self._redis.get(self._key(key))
        except Exception as exc:  # redis-py's errors are not imported: the extra is optional
            raise WeComStoreError(
                f"Redis failed loading a checkpoint: {type(exc).__name__}"
            ) from None
        return Checkpoint() if text is None else Checkpoint.from_json(text, self._key(key))

    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` under ``key`` in Redis."""
        try:
            await self._redis.set(self._key(key), checkpoint.to_json())
        except Exception as exc:
            raise WeComStoreError(
                f"Redis failed saving a checkpoint: {type(exc).__name__}"
            ) from None
