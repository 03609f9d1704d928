"""The files a bulk sync touches: where the output goes, its temporary twin, and locks.

A nightly sync runs unattended beside other jobs, so every rule here is about not
harming what is not the sync's own: a second copy of the sync (the lock), a device
node or a symlink given as the output, a file that happens to sit where the state
should be.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from pathlib import Path

from .errors import WeComInputError, WeComSyncError

__all__ = ["Lock", "Output", "os_error", "remove_quietly", "sync_error"]

#: The first line of every lock file, so that a file the sync did not make is never
#: taken over or removed.
_LOCK_MARK = b"wecom-async sync lock\n"


def sync_error(code: int | None, message: str) -> WeComSyncError:
    """A :class:`WeComSyncError` whose text is just ``message`` and whose errno is ``code``."""
    exc = WeComSyncError(message)
    exc.errno = code
    return exc


def os_error(what: str, exc: OSError) -> WeComSyncError:
    """An OSError as one clear line that names what failed."""
    return sync_error(exc.errno, f"{what}: {exc.strerror or type(exc).__name__}")


def remove_quietly(path: Path) -> None:
    """Remove a file the sync made; a failure here must not hide the error that led here."""
    with contextlib.suppress(OSError):
        path.unlink()


class Lock:
    """An exclusive ``flock`` on a small file, held for one run.

    The kernel releases it when the process dies, even by SIGKILL, so a crashed run
    never blocks the next one. Taking it never waits: a second sync fails at once.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`WeComSyncError` at once if another run has it."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise os_error(f"cannot create the lock file {str(self.path)!r}", exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise sync_error(
                    errno.EBUSY,
                    f"another sync is running with the same {self._what} "
                    f"(lock {str(self.path)!r} is held); this one did nothing",
                ) from None
            # The last holder removes the file as it lets go: if that happened between
            # our open and our flock, we hold a lock on a file nobody else can see.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            head = os.pread(fd, len(_LOCK_MARK), 0)
            if head and head != _LOCK_MARK:
                os.close(fd)
                raise sync_error(
                    errno.EEXIST,
                    f"{str(self.path)!r} exists and is not a wecom-async lock file; "
                    "it was left untouched",
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, _LOCK_MARK + f"pid {os.getpid()}\n".encode(), 0)
            self._fd = fd
            return

    def release(self) -> None:
        """Remove the lock file and let go of the lock (in that order, see acquire)."""
        if self._fd is None:
            return
        remove_quietly(self.path)
        os.close(self._fd)
        self._fd = None


class Output:
    """Where the JSON Lines go: a regular file, written through a temporary twin.

    A symlink is followed (its target is replaced, the link stays); anything that is
    not a regular file (a directory, device, FIFO or socket) is refused before any
    request. The temporary file's name is unique per run, hidden, and beside the
    target so that the final rename is atomic.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        text = os.fspath(out)
        if not text:
            raise WeComInputError("the output path is empty")
        self.given = Path(text)
        self.target = Path(os.path.realpath(text))
        self.mode: int | None = None
        try:
            st = os.stat(self.target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise os_error(f"cannot use the output {text!r}", exc) from None
        else:
            if stat.S_ISDIR(st.st_mode):
                raise WeComInputError(f"{text} is a directory, not a file to write")
            if not stat.S_ISREG(st.st_mode):
                raise WeComInputError(
                    f"{text} is not a regular file (a device, FIFO or socket); "
                    "give a file path, or - for stdout"
                )
            self.mode = stat.S_IMODE(st.st_mode)
        name = self.target.name
        self.tmp = self.target.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
        self.lock = Lock(self.target.with_name(f".{name}.lock"), "output")
        self._partial = re.compile(rf"\.{re.escape(name)}(\.\d+\.[0-9a-f]{{8}})?\.partial")

    def is_own_file(self, path: Path) -> bool:
        """Whether ``path`` is the output, its lock, or a temporary file of a run of it."""
        real = Path(os.path.realpath(path))
        if real in (self.target, self.lock.path):
            return True
        return real.parent == self.target.parent and bool(self._partial.fullmatch(real.name))

    def remove_stale_partials(self) -> None:
        """Remove temporary files that killed runs of this output left behind.

        Only called while holding the output's lock, so none of them is in use.
        """
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.target.parent):
                if self._partial.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    remove_quietly(Path(entry.path))

    def create_tmp(self) -> None:
        """Create the temporary file now, so an unwritable place fails before any request."""
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise os_error(f"cannot write {str(self.given)!r}", exc) from None
        try:
            if self.mode is not None:  # the replacement keeps the old file's permissions
                os.fchmod(fd, self.mode)
        finally:
            os.close(fd)
