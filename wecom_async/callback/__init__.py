"""Receive WeCom's callbacks: verified, decrypted, typed, acknowledged in time.

Needs the ``[callback]`` extra (``pip install 'wecom-async[callback]'``) for AES.

    crypto = CallbackCrypto(token, encoding_aes_key, corp_id)
    receiver = CallbackReceiver(crypto, handle)      # async def handle(event): ...
    receiver.attach(app, "/wecom/callback")          # aiohttp
    fastapi_app.mount("/wecom/callback", receiver.asgi)   # or any ASGI host

See :class:`CallbackReceiver` for what is answered when, and
:class:`RedisStreamQueue` for many workers behind one URL.
"""

from typing import TYPE_CHECKING, Any

try:
    import cryptography  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "wecom_async.callback needs the 'cryptography' package: pip install 'wecom-async[callback]'"
    ) from exc

from ._crypto import CallbackCrypto
from ._events import (
    CallbackEvent,
    ExternalChatEvent,
    ExternalContactEvent,
    ExternalTagEvent,
    KfMsgOrEvent,
    UnknownEvent,
    parse_event,
)
from ._queue import CallbackQueue, Delivery, MemoryQueue
from ._receiver import CallbackReceiver, ReceiverStats

if TYPE_CHECKING:
    from ._redis_queue import RedisStreamQueue


def __getattr__(name: str) -> Any:
    # Imported on first use: it needs the [redis] extra, which the rest does not.
    if name == "RedisStreamQueue":
        from ._redis_queue import RedisStreamQueue

        return RedisStreamQueue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CallbackCrypto",
    "CallbackEvent",
    "CallbackQueue",
    "CallbackReceiver",
    "Delivery",
    "ExternalChatEvent",
    "ExternalContactEvent",
    "ExternalTagEvent",
    "KfMsgOrEvent",
    "MemoryQueue",
    "ReceiverStats",
    "RedisStreamQueue",
    "UnknownEvent",
    "parse_event",
]
