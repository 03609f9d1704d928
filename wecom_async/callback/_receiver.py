"""CallbackReceiver: answer WeCom at once, handle the callback in the background.

WeCom waits 5 s for an answer and then retries, 3 tries in all (path/90930). So a
POST is verified, decrypted, deduplicated and queued, answered 200, and only then
handed to the application's handler by one of ``concurrency`` workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

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


@attrs.define
class ReceiverStats:
    """Counters since the receiver was made."""

    verified: int = 0
    """URL checks (GET) answered."""
    received: int = 0
    """POSTs verified and queued, duplicates excluded."""
    duplicates: int = 0
    """POSTs dropped as a retry of one queued before."""
    rejected: int = 0
    """Requests refused (bad signature, bad body, wrong method, too large)."""
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
        max_body: bytes a POST may have (WeCom's are a few kilobytes).
        drain_timeout: seconds :meth:`aclose` waits for queued and running
            handlers before cancelling them.

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
        max_body: int = 1 << 20,
        drain_timeout: float = 10.0,
    ) -> None:
        if concurrency < 1 or max_body < 1 or drain_timeout < 0:
            raise WeComInputError("concurrency and max_body must be positive")
        self.crypto = crypto
        self.handler = handler
        self.queue: CallbackQueue = queue if queue is not None else MemoryQueue()
        self.concurrency = concurrency
        self.max_body = max_body
        self.drain_timeout = drain_timeout
        self.stats = ReceiverStats()
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False

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
            event = parse_event(delivery.payload)
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
        """Answer one request: ``(status, text)``. Both entry points call this.

        GET is the URL check: 200 with the decrypted echostr. POST is a callback:
        200 (empty) once queued or recognised as a duplicate; 403 for a bad
        signature; 400 for a body that does not decrypt or parse; 503 when the
        queue cannot take it, so that WeCom tries again.
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
                self.stats.rejected += 1
                return 405, "method not allowed"
            xml = self.crypto.decrypt(signature, timestamp, nonce, body)
            key = parse_event(xml).dedup_key
        except WeComSignatureError as exc:
            self.stats.rejected += 1
            logger.warning("callback refused: %s", exc)
            return 403, "forbidden"
        except WeComCallbackError as exc:
            self.stats.rejected += 1
            logger.warning("callback refused: %s", exc)
            return 400, "bad request"
        try:
            fresh = await self.queue.put(key, xml)
        except WeComStoreError as exc:
            self.stats.unavailable += 1
            logger.error("callback not queued, WeCom will retry: %s", exc)
            return 503, "unavailable"
        if fresh:
            self.stats.received += 1
        else:
            self.stats.duplicates += 1
        return 200, ""

    # -- aiohttp --

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler for GET and POST on one route."""
        body = b""
        if request.method == "POST":
            if (request.content_length or 0) > self.max_body:
                self.stats.rejected += 1
                return web.Response(status=413, text="too large")
            body = await request.content.read(self.max_body + 1)
            if len(body) > self.max_body:
                self.stats.rejected += 1
                return web.Response(status=413, text="too large")
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
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body:
                self.stats.rejected += 1
                await _send_text(send, 413, "too large")
                return
        query = scope.get("query_string", b"").decode("latin-1")
        status, text = await self.respond(scope["method"], query, bytes(body))
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


async def _send_text(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [*_TEXT, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
