"""Raw HTTP/1.1 over asyncio sockets: a request sent in given pieces with given gaps,
and the answer read back, for what aiohttp's client is too polite to send.

Each piece is written and drained on its own with ``TCP_NODELAY`` set, so pieces
leave as separate TCP segments. The answer is read while the pieces are still
going out: a server may answer (413, 408) before the request is whole, and then
sending stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import attrs

__all__ = [
    "NoAnswer",
    "RawAnswer",
    "Target",
    "chunked",
    "exchange",
    "request_head",
    "split",
    "target",
]


class NoAnswer(AssertionError):
    """The server closed the connection, or went quiet, before a whole answer."""


@attrs.frozen
class Target:
    """Where to send: host, port, and the path with its query."""

    host: str
    port: int
    path: str

    def with_query(self, query: str) -> Target:
        return Target(self.host, self.port, f"{self.path.partition('?')[0]}?{query}")


def target(url: str, query: str = "") -> Target:
    """The :class:`Target` of an ``http://host:port/path`` URL, with ``query`` if given."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    path = parts.path or "/"
    if query or parts.query:
        path = f"{path}?{query or parts.query}"
    return Target(parts.hostname, parts.port, path)


@attrs.frozen
class RawAnswer:
    """What came back."""

    status: int
    reason: str
    headers: Mapping[str, str]
    """By lower-cased name (the last one of a name wins)."""
    body: bytes
    seconds: float
    """From the first piece written to the status line read."""
    sent: int
    """Request bytes written before the answer was read whole."""
    closed: bool | None
    """Whether the server closed the connection after the answer (None: not checked)."""
    statuses: tuple[int, ...] = ()
    """With ``answers`` > 1, the status of every answer, in order."""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request_head(
    method: str, to: Target, headers: Iterable[tuple[str, str]] = (), *, host: bool = True
) -> bytes:
    """The request line and headers, ending in the blank line."""
    lines = [f"{method} {to.path} HTTP/1.1"]
    if host:
        lines.append(f"Host: {to.host}:{to.port}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def split(data: bytes, n: int) -> list[bytes]:
    """``data`` in ``n`` non-empty pieces of nearly equal size."""
    assert 1 <= n <= len(data), (n, len(data))
    cuts = [len(data) * i // n for i in range(n + 1)]
    return [data[cuts[i] : cuts[i + 1]] for i in range(n)]


def chunked(body: bytes, n: int, *, last: bool = True) -> list[bytes]:
    """``body`` as ``n`` chunks of chunked transfer coding, one piece each; the
    terminating zero-size chunk rides with the last piece unless ``last`` is False."""
    pieces = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in split(body, n)]
    if last:
        pieces[-1] += b"0\r\n\r\n"
    return pieces


async def exchange(
    to: Target,
    pieces: Sequence[bytes],
    *,
    gap: float = 0.0,
    timeout: float = 10.0,
    close_within: float | None = None,
    answers: int = 1,
    first_sent: asyncio.Event | None = None,
) -> RawAnswer:
    """Send ``pieces`` (the first holds at least the request line) with ``gap``
    seconds between them, and read the answer.

    Sending stops once the answer is in (or the server stops taking bytes).
    ``close_within``: wait that long after the answer for the server to close the
    connection (``RawAnswer.closed``). ``answers``: how many answers to read (to
    pipelined requests); the last is returned. ``first_sent`` is set once the first
    piece is out. Raises :class:`NoAnswer` when no whole
    answer came within ``timeout`` seconds of the first piece.
    """
    reader, writer = await asyncio.open_connection(to.host, to.port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = asyncio.get_running_loop()
    answered = asyncio.Event()
    sent = 0
    started = loop.time()

    async def send() -> None:
        nonlocal sent, started
        for i, piece in enumerate(pieces):
            if i and gap:
                # The gap between two pieces, cut short when the answer is in.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(answered.wait(), gap)
            if answered.is_set():
                return
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                return  # the server closed: its answer, if any, is read below
            if i == 0:
                started = loop.time()
                if first_sent is not None:
                    first_sent.set()
            sent += len(piece)

    sender = asyncio.create_task(send())
    try:
        statuses: list[int] = []
        for _ in range(answers):
            try:
                status, reason, headers, body, at = await asyncio.wait_for(
                    _read_answer(reader, loop), timeout
                )
            except asyncio.TimeoutError:
                raise NoAnswer(f"no answer within {timeout:g} s ({sent} bytes sent)") from None
            statuses.append(status)
        answered.set()
        written = sent
        await sender
        closed: bool | None = None
        if close_within is not None:
            try:
                closed = await asyncio.wait_for(reader.read(1), close_within) == b""
            except asyncio.TimeoutError:
                closed = False
            except ConnectionError:
                closed = True
        return RawAnswer(
            status, reason, headers, body, at - started, written, closed, tuple(statuses)
        )
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _read_answer(
    reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop
) -> tuple[int, str, dict[str, str], bytes, float]:
    try:
        line = await reader.readuntil(b"\r\n")
        at = loop.time()
        head = await reader.readuntil(b"\r\n\r\n") if not line.startswith(b"\r\n") else b""
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise NoAnswer(f"the connection ended before an answer: {exc!r}") from None
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise NoAnswer(f"not an HTTP answer: {line!r}")
    headers: dict[str, str] = {}
    for raw in head.decode("latin-1").split("\r\n"):
        if raw:
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
    try:
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")  # no trailers expected
        else:
            body = await reader.read()
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise NoAnswer(f"the connection ended inside the answer: {exc!r}") from None
    return int(code), reason, headers, body, at
