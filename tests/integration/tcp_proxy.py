"""A TCP proxy on loopback that can stall, refuse, and count the Redis commands it carries."""

from __future__ import annotations

import asyncio
import contextlib


class RespCounter:
    """Counts the commands in a client's RESP stream (arrays of bulk strings)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._bulk_left = 0  # bulk strings still to read in the current command
        self._skip = -1  # bytes of the current bulk string still to skip (+2 for CRLF)
        self.commands = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._skip >= 0:
                if len(self._buffer) < self._skip:
                    return
                self._buffer = self._buffer[self._skip :]
                self._skip = -1
                self._bulk_left -= 1
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            if line.startswith(b"*") and self._bulk_left == 0:
                self.commands += 1
                self._bulk_left = int(line[1:])
            elif line.startswith(b"$"):
                self._skip = int(line[1:]) + 2


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a Redis; ``stall``/``refuse`` play an outage.

    - :meth:`stall`: connections stay open and bytes stop flowing both ways (a
      black-holed server); :meth:`resume` lets them flow again.
    - :meth:`refuse`: open connections are cut and new ones are closed at once (a
      restarting server); :meth:`resume` accepts them again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.counter = RespCounter()
        self.connections = 0
        self.port = 0

    @property
    def commands(self) -> int:
        """Commands clients have sent through the proxy so far."""
        return self.counter.commands

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._flowing.clear()

    def refuse(self) -> None:
        self._refusing = True
        for writer in list(self._writers):
            writer.transport.abort()

    def resume(self) -> None:
        self._refusing = False
        self._flowing.set()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        up = asyncio.ensure_future(self._pipe(reader, up_writer, count=True))
        down = asyncio.ensure_future(self._pipe(up_reader, writer, count=False))
        self._tasks.update((up, down))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self._tasks.difference_update((up, down))
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()  # stalled: hold the bytes, answer nothing
                if count:
                    self.counter.feed(data)
                writer.write(data)
                await writer.drain()
