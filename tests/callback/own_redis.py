"""A redis-server of the test's own, on a free loopback port: it can be frozen
(SIGSTOP), thawed (SIGCONT), killed (SIGKILL) and restarted on the same port with
the same append-only file, so that what it acknowledged survives the restart.

``own_redis`` and ``volatile_redis`` are fixtures (import them into the test
module); they skip when redis-server is not installed, and fail instead under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_redis import _free_port


class OwnRedis:
    """One redis-server process at a time, always on ``port``, keeping its data in ``dir``."""

    def __init__(self, directory: Path, *, aof: bool = True) -> None:
        self.dir = directory
        self.aof = aof
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    def start(self) -> None:
        """Start the server and wait until it answers PING (its AOF loaded)."""
        assert self.proc is None, "already running"
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.aof
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--dir", str(self.dir), "--logfile", str(self.log), *persistence],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text()[-2000:]}")
            if self._pong():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def _pong(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
        ):
            s.settimeout(0.5)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
        return False

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None, "not running"
        os.kill(self.proc.pid, sig)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is read or answered."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: it reads and runs whatever was sent to it meanwhile."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL (frozen or not): what it had not written to its AOF is gone."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def _started(directory: Path, *, aof: bool) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not on PATH; CI must have it")
        pytest.skip("redis-server is not on PATH")
    server = OwnRedis(directory, aof=aof)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A started redis-server of this test's own, with an append-only file."""
    yield from _started(tmp_path, aof=True)


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A started redis-server of this test's own that keeps nothing on disk: a
    restart loses every key (as CI's and many caches' Redis do)."""
    yield from _started(tmp_path, aof=False)
