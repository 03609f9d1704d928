"""The message pump: ``kf_msg_or_event`` callbacks in, each new message to a handler once.

    pump = KfPump(client, handle, store=FileCursorStore("state/kf"))
    receiver = CallbackReceiver(crypto, pump.on_event)

For each event the pump runs ``kf/sync_msg`` with the event's token from the
account's saved cursor, one run at a time per ``open_kfid`` (in this process,
and across processes with :class:`RedisPumpLock`). After every message the
handler finished it saves a :class:`~wecom_async.cursors.Checkpoint` (the
cursor and the msgids of the page already handled), and after every page the
next cursor. So a crash never skips a message, and a message whose handler
finished is never handed over again. The one gap, a crash between the handler's
last step and the save, is closed by sending with :func:`reply_msgid`: WeCom
takes a msgid once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .cursors import Checkpoint, CursorStore, MemoryCursorStore
from .errors import WeComAPIError, WeComInputError, WeComStoreError
from .models.kf import KfMessage

if TYPE_CHECKING:
    from .client import WeComClient

__all__ = ["KfPump", "LocalPumpLock", "PumpLock", "RedisPumpLock", "reply_msgid"]

logger = logging.getLogger("wecom_async.pump")

Handler = Callable[[KfMessage], Awaitable[Any]]

#: kf/sync_msg's answer to a callback token that is unknown or past its 10 minutes.
INVALID_SYNC_TOKEN = 95007


def reply_msgid(message: KfMessage, salt: str = "") -> str:
    """A msgid for the answer to ``message``: the same on every run, so sent once.

    Pass it to ``kf.send_msg(..., msgid=...)``; ``salt`` tells apart several
    answers to one message.
    """
    digest = hashlib.sha256(f"{message.msgid}\x00{salt}".encode()).hexdigest()
    return "r" + digest[:31]


class PumpLock(Protocol):
    """One run at a time per key, across whatever the lock spans."""

    def hold(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """An async context manager held while one run for ``key`` goes on."""
        ...


class LocalPumpLock:
    """One run at a time per key in this process (the default)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock in this process for the ``async with`` body."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            yield


class RedisPumpLock:
    """One run at a time per key across processes, with redis-py's lock.

    The lock expires ``timeout`` seconds after its holder stops renewing it (it
    renews every third of that while it runs), so a worker killed mid-run holds
    up the account for at most ``timeout``.
    """

    def __init__(self, redis: Any, *, prefix: str = "wecom_async", timeout: float = 60.0) -> None:
        if not timeout > 0:
            raise WeComInputError(f"timeout must be positive, got {timeout!r}")
        self._redis = redis
        self._prefix = prefix
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<RedisPumpLock prefix={self._prefix!r} timeout={self._timeout}>"

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s Redis lock, renewed while the ``async with`` body runs."""
        lock = self._redis.lock(f"{self._prefix}:kf:lock:{key}", timeout=self._timeout)
        try:
            await lock.acquire()
        except Exception as exc:
            raise WeComStoreError(
                f"Redis failed taking the pump lock: {type(exc).__name__}"
            ) from None
        renew = asyncio.create_task(self._renew(lock))
        try:
            yield
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            with contextlib.suppress(Exception):  # expired already: another may hold it now
                await lock.release()

    async def _renew(self, lock: Any) -> None:
        while True:
            await asyncio.sleep(self._timeout / 3)
            await lock.reacquire()


class KfPump:
    """Turns ``kf_msg_or_event`` callbacks into calls of ``handler(message)``, each once.

    Args:
        client: the client whose ``kf.sync_msg`` is used.
        handler: ``async def handler(message: KfMessage)``. Every message and
            event is handed over, the app's own answers (``origin`` 5) included.
            If it raises, the run stops there and the error reaches the caller;
            the message is handed over again on the next run.
        store: where checkpoints are kept (in memory by default: use
            :class:`~wecom_async.cursors.FileCursorStore` or ``RedisCursorStore``
            to survive a restart).
        lock: one run at a time per account beyond this process
            (:class:`RedisPumpLock`); runs in this process are serialised anyway.
        max_age: skip (without handing over) messages older than this many
            seconds, so that a first start does not answer 3 days of history.
        remember: how many recent msgids are kept in memory to drop repeats.
    """

    def __init__(
        self,
        client: WeComClient,
        handler: Handler,
        *,
        store: CursorStore | None = None,
        lock: PumpLock | None = None,
        max_age: float | None = None,
        remember: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if remember < 0:
            raise WeComInputError(f"remember must be >= 0, got {remember!r}")
        self.client = client
        self.handler = handler
        self.store: CursorStore = store if store is not None else MemoryCursorStore()
        self._shared_lock = lock
        self._local = LocalPumpLock()
        self._max_age = max_age
        self._clock = clock
        self._remember = remember
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._queued: dict[str, asyncio.Future[int]] = {}
        self._tokens: dict[str, str] = {}
        self.handled = 0
        """Messages handed to the handler so far."""
        self.runs = 0
        """``sync_msg`` runs made so far."""

    def __repr__(self) -> str:
        return f"<KfPump of {self.client!r} store={self.store!r}>"

    async def on_event(self, event: object) -> None:
        """A receiver's handler: pumps on ``kf_msg_or_event``, ignores any other event."""
        from .callback import KfMsgOrEvent  # the [callback] extra, only when used

        if isinstance(event, KfMsgOrEvent) and event.open_kfid:
            await self.pump(event.open_kfid, token=event.token or None)

    async def pump(self, open_kfid: str, *, token: str | None = None) -> int:
        """Hand every new message of ``open_kfid`` to the handler; returns how many.

        Calls that arrive while a run waits to start share that run (it uses the
        newest token), so a burst of callbacks costs one or two runs, and each
        call returns only once a run that started after it has finished.
        """
        if token:
            self._tokens[open_kfid] = token
        queued = self._queued.get(open_kfid)
        if queued is not None:  # a run that has not started yet covers this call
            return await asyncio.shield(queued)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._queued[open_kfid] = future
        try:
            async with self._local.hold(open_kfid):
                del self._queued[open_kfid]  # calls from now on need another run
                latest = self._tokens.pop(open_kfid, None)
                async with self._shared(open_kfid):
                    count = await self._run(open_kfid, latest)
        except BaseException as exc:
            if self._queued.get(open_kfid) is future:
                del self._queued[open_kfid]
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            raise
        future.set_result(count)
        return count

    def _shared(self, open_kfid: str) -> contextlib.AbstractAsyncContextManager[None]:
        if self._shared_lock is None:
            return contextlib.nullcontext()
        return self._shared_lock.hold(f"{self.client.corp_id}:{open_kfid}")

    async def _run(self, open_kfid: str, token: str | None) -> int:
        self.runs += 1
        try:
            return await self._sync(open_kfid, token)
        except WeComAPIError as exc:
            if token is None or exc.errcode != INVALID_SYNC_TOKEN:
                raise
        # The callback's token outlived its 10 minutes (a late or redelivered
        # event): go on without one, under the 10-a-minute budget.
        logger.info("kf/sync_msg token for %s expired; syncing without one", open_kfid)
        return await self._sync(open_kfid, None)

    async def _sync(self, open_kfid: str, token: str | None) -> int:
        key = f"{self.client.corp_id}:{open_kfid}"
        checkpoint = await self.store.load(key)
        cursor, done = checkpoint.cursor, set(checkpoint.handled)
        count = 0
        pages = self.client.kf.sync_msg_pages(
            token=token, open_kfid=open_kfid, cursor=cursor or None
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                for message in page.msg_list:
                    if message.msgid in done or message.msgid in self._recent:
                        continue
                    if not self._too_old(message):
                        await self.handler(message)
                        count += 1
                        self.handled += 1
                    done.add(message.msgid)
                    self._remember_id(message.msgid)
                    await self.store.save(key, Checkpoint(cursor, frozenset(done)))
                cursor, done = page.next_cursor, set()
                await self.store.save(key, Checkpoint(cursor))
        return count

    def _too_old(self, message: KfMessage) -> bool:
        return self._max_age is not None and message.send_time < self._clock() - self._max_age

    def _remember_id(self, msgid: str) -> None:
        if self._remember:
            self._recent[msgid] = None
            if len(self._recent) > self._remember:
                self._recent.popitem(last=False)


def _retrieve(future: asyncio.Future[int]) -> None:
    # Coalesced callers may all be gone: mark the error seen so asyncio does not log it.
    if not future.cancelled():
        future.exception()
