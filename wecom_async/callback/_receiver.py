"""CallbackReceiver: answer WeCom at once, handle the callback in the background.

WeCom waits 5 s for an answer and then retries, 3 tries in all (path/90930). So a
POST is verified, decrypted, deduplicated and queued, answered 200, and only then
handed to the application's handler by one of ``concurrency`` workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

import attrs
from aiohttp import StreamReader, web

from .._deadline import within
from ..errors import WeComCallbackError, WeComInputError, WeComSignatureError, WeComStoreError
from ._crypto import CallbackCrypto, parse_query
from ._events import CallbackEvent, parse_event
from ._queue import CallbackQueue, Delivery, MemoryQueue

__all__ = ["CallbackReceiver", "ReceiverStats"]

logger = logging.getLogger("wecom_async")

Handler = Callable[[CallbackEvent], Awaitable[Any]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]

#: Seconds between two log lines about refused requests.
_REFUSAL_LOG_EVERY = 10.0
#: WeCom's callbacks are a few kilobytes; a group's member list makes the largest.
DEFAULT_MAX_BODY = 64 * 1024


@attrs.define
class ReceiverStats:
    """Counters since the receiver was made."""

    verified: int = 0
    """URL checks (GET) answered."""
    received: int = 0
    """Callbacks queued: the POST that queued each one, answered 200."""
    duplicates: int = 0
    """POSTs answered 200 without queueing: a retry or replay of one queued before."""
    rejected: int = 0
    """Requests refused with a 4xx (no or a bad signature, a stale timestamp, not an
    envelope, no decrypt, a bad plaintext, too large, too slow, wrong method)."""
    unavailable: int = 0
    """POSTs answered 503 because the queue could not take them (WeCom retries)."""
    handled: int = 0
    """Handler calls that returned."""
    failed: int = 0
    """Handler calls that raised."""


class CallbackReceiver:
    """Receive WeCom's callbacks on one URL, for aiohttp or any ASGI server.

    Args:
        crypto: verifies and decrypts (see :class:`CallbackCrypto`).
        handler: ``async def handler(event)``, called once per callback, in the
            background, with at most ``concurrency`` calls at a time.
        queue: where callbacks wait; a :class:`MemoryQueue` by default, a
            :class:`RedisStreamQueue` for many workers that must not lose one.
        concurrency: handler calls running at once.
        max_body: bytes a POST may have (64 KiB; WeCom's are a few kilobytes);
            a larger one is answered 413. A compressed body is answered 415.
        read_timeout: seconds the whole body may take to arrive (2 s); a slower
            one is answered 408.
        queue_timeout: seconds the queue may take to accept a callback (2 s);
            past it the POST is answered 503 and WeCom tries again. With
            ``read_timeout`` it keeps every answer well inside WeCom's 5 s.
        drain_timeout: seconds :meth:`aclose` waits for queued and running
            handlers before cancelling them.

    Raises:
        WeComInputError: a bound is not positive, or the queue forgets a callback
            sooner than twice the crypto's ``max_age`` (then a replay inside the
            replay window would be handled again).

    Entry points: :meth:`aiohttp_handler` (or :meth:`attach` to an app) and
    the receiver itself, an ASGI app (``app.mount("/wecom", receiver.asgi)``). Workers
    start with the app (aiohttp's startup, ASGI's lifespan), on :meth:`start`,
    or at the first request; :meth:`aclose` stops them.
    """

    def __init__(
        self,
        crypto: CallbackCrypto,
        handler: Handler,
        *,
        queue: CallbackQueue | None = None,
        concurrency: int = 8,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = 2.0,
        queue_timeout: float = 2.0,
        drain_timeout: float = 10.0,
    ) -> None:
        if concurrency < 1 or max_body < 1 or drain_timeout < 0:
            raise WeComInputError("concurrency and max_body must be positive")
        if not (read_timeout > 0 and queue_timeout > 0):
            raise WeComInputError("read_timeout and queue_timeout must be positive")
        self.crypto = crypto
        self.handler = handler
        self.queue: CallbackQueue = queue if queue is not None else MemoryQueue()
        remembers = getattr(self.queue, "dedup_ttl", None)
        if crypto.max_age is not None and remembers is not None and remembers < 2 * crypto.max_age:
            # A timestamp may be up to max_age ahead of the clock when first seen,
            # and stays acceptable until max_age behind it.
            raise WeComInputError(
                f"the queue forgets a callback after {remembers:g} s, sooner than twice the "
                f"replay window ({crypto.max_age:g} s): raise its dedup_ttl"
            )
        self.concurrency = concurrency
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.queue_timeout = queue_timeout
        self.drain_timeout = drain_timeout
        self.stats = ReceiverStats()
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False
        self._next_refusal_log = 0.0
        self._refusals_unlogged = 0

    def __repr__(self) -> str:
        return f"<CallbackReceiver {self.crypto!r} queue={self.queue!r}>"

    # -- lifetime --

    async def start(self) -> None:
        """Start the workers (again after :meth:`aclose`); idempotent."""
        self._start()

    def _start(self) -> None:
        if self._workers:
            return
        self._closing = False
        self._workers = [
            asyncio.create_task(self._work(), name=f"wecom-callback-worker-{n}")
            for n in range(self.concurrency)
        ]

    async def aclose(self) -> None:
        """Stop the workers: wait up to ``drain_timeout`` for what is queued and running.

        With the memory queue, callbacks still waiting after that are logged and
        lost; with a Redis stream they stay pending for another worker.
        """
        workers, self._workers = self._workers, []
        if not workers:
            return
        self._closing = True
        try:
            if self.queue.redelivers:  # workers leave after their current read or handler
                _, running = await asyncio.wait(workers, timeout=self.drain_timeout)
                if running:
                    raise asyncio.TimeoutError
            else:
                await asyncio.wait_for(self.queue.join(), self.drain_timeout)
        except asyncio.TimeoutError:
            logger.warning(
                "callback handlers still busy after %.1f s: cancelled (%r)",
                self.drain_timeout,
                self.queue,
            )
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        close = getattr(self.queue, "aclose", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> CallbackReceiver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the workers --

    async def _work(self) -> None:
        queue = self.queue
        while not (self._closing and queue.redelivers):
            try:
                delivery = await queue.get()
            except Exception:  # a store that is down: say so, wait, try again
                logger.exception("callback queue read failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            if delivery is not None:
                await self._run(delivery)

    async def _run(self, delivery: Delivery) -> None:
        queue = self.queue
        event: CallbackEvent | None = None
        keepalive = (
            asyncio.create_task(self._keepalive(delivery, queue.touch_interval))
            if queue.touch_interval
            else None
        )
        try:
            event = delivery.event
            await self.handler(event)
        except Exception:
            self.stats.failed += 1
            fate = "kept for redelivery" if queue.redelivers else "not retried"
            # The event rides along in ``extra`` for a log handler that keeps it.
            logger.exception(
                "callback handler failed on %r (delivery %d, %s)",
                event,
                delivery.attempt,
                fate,
                extra={"wecom_event": event},
            )
            await self._settle(queue.nack, delivery)
        else:
            self.stats.handled += 1
            await self._settle(queue.ack, delivery)
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive

    @staticmethod
    async def _settle(step: Callable[[Delivery], Awaitable[None]], delivery: Delivery) -> None:
        try:
            await step(delivery)
        except Exception:  # not acknowledged: a redelivering queue hands it out again
            logger.exception("callback queue could not settle delivery %s", delivery.id)

    async def _keepalive(self, delivery: Delivery, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.queue.touch(delivery)
            except Exception:
                logger.exception("could not renew the claim on callback %s", delivery.id)

    # -- HTTP, framework-free --

    async def respond(self, method: str, query_string: str, body: bytes) -> tuple[int, str]:
        """Answer one request whose body was read whole: ``(status, text)``.

        Both entry points call this once they have the body (within ``max_body``
        and ``read_timeout``). GET is the URL check: 200 with the decrypted
        echostr. POST is a callback: 200 (empty) once durably queued, or
        recognised as one queued before; 403 for no signature, a bad one or a
        timestamp outside the replay window; 400 for a body that is not an
        envelope or does not decrypt or parse; 503 when the queue does not take
        it within ``queue_timeout``, so that WeCom tries again. The text names
        the fault; it never holds the token, the key or the plaintext.
        """
        if self._closing:
            return 503, "closed"  # WeCom retries; another worker may take it
        self._start()
        params = parse_query(query_string)
        signature = params.get("msg_signature", "")
        timestamp = params.get("timestamp", "")
        nonce = params.get("nonce", "")
        try:
            if method == "GET":
                echostr = self.crypto.verify_url(
                    signature, timestamp, nonce, params.get("echostr", "")
                )
                self.stats.verified += 1
                return 200, echostr
            if method != "POST":
                return self._refused(405, "method not allowed")
            # Nothing an unsigned sender controls is parsed or decrypted before
            # the signature checks out (decrypt), and the plaintext is parsed once.
            event = parse_event(self.crypto.decrypt(signature, timestamp, nonce, body))
        except WeComSignatureError as exc:
            return self._refused(403, str(exc))
        except WeComCallbackError as exc:
            return self._refused(400, str(exc))
        put_now = getattr(self.queue, "put_nowait", None)
        try:
            if put_now is not None:  # a queue that never waits needs no deadline
                fresh = put_now(event.dedup_key, event)
            else:
                fresh = await within(self.queue_timeout, self.queue.put(event.dedup_key, event))
        except (WeComStoreError, asyncio.TimeoutError) as exc:
            self.stats.unavailable += 1
            why = str(exc) or f"not queued within {self.queue_timeout:g} s"
            logger.error("callback not queued, WeCom will retry: %s", why)
            return 503, "queue unavailable"
        except Exception:  # a queue's own bug: still an answer WeCom retries, not a 500
            self.stats.unavailable += 1
            logger.exception("callback not queued (the queue raised), WeCom will retry")
            return 503, "queue unavailable"
        if fresh:
            self.stats.received += 1
        else:
            self.stats.duplicates += 1
        return 200, ""

    def _refused(self, status: int, reason: str) -> tuple[int, str]:
        """Count and log a refusal; the log says so once per 10 s at most (a flood
        of junk must not become a flood of log lines)."""
        self.stats.rejected += 1
        now = time.monotonic()
        if now >= self._next_refusal_log:
            since, self._refusals_unlogged = self._refusals_unlogged, 0
            self._next_refusal_log = now + _REFUSAL_LOG_EVERY
            more = f" ({since} more refused since the last line)" if since else ""
            logger.warning("callback refused with %d: %s%s", status, reason, more)
        else:
            self._refusals_unlogged += 1
        return status, reason

    def _refuse_headers(self, encodings: list[str], length: int | None) -> tuple[int, str] | None:
        """What the headers alone refuse: a compressed body, or one declared too large.

        ``encodings`` are the values of every Content-Encoding header.
        """
        for value in encodings:
            if any(part.strip().lower() not in ("", "identity") for part in value.split(",")):
                # WeCom never compresses a callback; refusing it keeps the cap a cap.
                return self._refused(415, "unsupported content-encoding")
        if length is not None and length > self.max_body:
            return self._refused(413, f"too large: over {self.max_body} bytes")
        return None

    async def _read(self, chunks: Callable[[], Awaitable[bytes | None]]) -> bytes | tuple[int, str]:
        """The whole body from ``chunks`` (None at its end), or a refusal.

        A body arrives in as many segments as the network made of it; it is read
        to its end, no further than ``max_body``, within ``read_timeout``.
        """
        body = bytearray()

        async def read_all() -> None:
            while (chunk := await chunks()) is not None:
                body.extend(chunk)
                if len(body) > self.max_body:
                    return  # no further: refused as it stands

        try:
            await within(self.read_timeout, read_all())
        except asyncio.TimeoutError:
            return self._refused(408, f"too slow: the body took over {self.read_timeout:g} s")
        return self._whole(bytes(body))

    def _whole(self, body: bytes) -> bytes | tuple[int, str]:
        """``body``, or the refusal of one over ``max_body``."""
        if len(body) > self.max_body:
            return self._refused(413, f"too large: over {self.max_body} bytes")
        return body

    # -- aiohttp --

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler for GET and POST on one route."""
        body = b""
        if request.method == "POST":
            content = request.content
            read: bytes | tuple[int, str] | None = self._refuse_headers(
                request.headers.getall("Content-Encoding", []), request.content_length
            )
            if read is None and content.is_eof():
                # All of it has arrived (a few KB mostly come in one segment): no
                # waiting, so no deadline to set.
                read = self._whole(content.read_nowait())
            elif read is None:
                read = await self._read(_AiohttpBody(content).next)
            if isinstance(read, tuple):
                return await _refuse_and_close(request, *read)
            body = read
        # The raw query: aiohttp's decoded one turns a "+" in echostr into a space.
        status, text = await self.respond(request.method, request.rel_url.raw_query_string, body)
        return web.Response(status=status, body=text.encode(), content_type="text/plain")

    def attach(self, app: web.Application, path: str) -> None:
        """Route GET and POST on ``path`` here; start and stop with ``app``."""
        app.router.add_route("GET", path, self.aiohttp_handler)
        app.router.add_route("POST", path, self.aiohttp_handler)

        async def start(_: web.Application) -> None:
            await self.start()

        async def stop(_: web.Application) -> None:
            await self.aclose()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)

    # -- ASGI --

    @property
    def asgi(self) -> CallbackReceiver:
        """The receiver as an ASGI app (it is one: see :meth:`__call__`)."""
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 app: mount it in FastAPI or Starlette, or serve it alone.

        Served alone it follows the lifespan protocol; mounted, start the workers
        in the host app's lifespan (``await receiver.start()``) or let the first
        request start them, and ``await receiver.aclose()`` on shutdown.
        """
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        if scope["method"] == "POST":
            encodings: list[str] = []
            length: int | None = None
            for name, value in scope.get("headers", ()):
                name = name.lower()
                if name == b"content-encoding":
                    encodings.append(value.decode("latin-1"))
                elif name == b"content-length" and value.isdigit():
                    # More digits than any body has: too large, not an int to parse.
                    length = int(value) if len(value) < 19 else self.max_body + 1
            chunks = _AsgiBody(receive)
            read = self._refuse_headers(encodings, length) or await self._read(chunks.next)
            if chunks.gone:
                return  # the client left: there is nobody to answer
            if isinstance(read, tuple):
                await _send_text(send, *read, close=True)
                return
            body = read
        query = scope.get("query_string", b"").decode("latin-1")
        status, text = await self.respond(scope["method"], query, body)
        await _send_text(send, status, text)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _refuse_and_close(request: web.Request, status: int, text: str) -> web.Response:
    """Answer a refused body, then close the connection.

    Closed rather than kept alive: aiohttp would otherwise read and discard what is
    left of the body for up to its lingering time (10 s), a slow drip included.
    """
    response = web.Response(status=status, text=text)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()  # after what was written has been sent
    return response


class _AiohttpBody:
    """aiohttp's request stream as chunks: whatever has arrived, None at the end."""

    def __init__(self, stream: StreamReader) -> None:
        self._stream = stream

    async def next(self) -> bytes | None:
        return await self._stream.readany() or None  # b"" only at the end


class _AsgiBody:
    """An ASGI request's ``http.request`` messages as chunks, None at the end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._done = False
        self.gone = False
        """The client disconnected before the body ended."""

    async def next(self) -> bytes | None:
        if self._done:
            return None
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._done = self.gone = True
            return None
        self._done = not message.get("more_body", False)
        return bytes(message.get("body", b""))


async def _send_text(send: Send, status: int, text: str, *, close: bool = False) -> None:
    body = text.encode()
    headers = [*_TEXT, (b"content-length", str(len(body)).encode())]
    if close:  # what is left of the body is not read
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
