"""What happens on the wire below the call path: one send per slot, bounded bodies, safe errors.

Three things aiohttp would otherwise decide for us, each a promise of the client:

- **One send per slot.** aiohttp re-sends an idempotent request once, by itself,
  when a connection turns out closed. That re-send would reach WeCom without a
  rate-limit slot. A session middleware turns the drop into an error that aiohttp
  does not retry; the client's retry policy, which takes a new slot, decides.
- **The body cap counts bytes after decompression.** The session does not
  decompress; :func:`read_body` inflates gzip and deflate itself, never producing
  more than the cap, so a small gzip body cannot grow into gigabytes in memory.
- **Errors show no secret.** :func:`transport_error` builds its text from a short
  list of fields that cannot hold the request URL (the exception's type, an OS
  error's text, an HTTP status), so nothing needs scrubbing afterwards.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
import zlib
from typing import Final

import aiohttp

from .errors import WeComTransportError

__all__ = [
    "ACCEPT_ENCODING",
    "ConnectionLost",
    "no_silent_resend",
    "read_body",
    "retry_after",
    "transport_error",
]

#: The encodings read_body can inflate, and so the only ones asked for.
ACCEPT_ENCODING: Final = "gzip, deflate"

_CHUNK: Final = 65536
_GZIP_MAGIC: Final = b"\x1f\x8b"


class ConnectionLost(aiohttp.ClientConnectionError):
    """A connection closed under a request; unlike aiohttp's own errors, never re-sent by it."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause_name = type(cause).__name__


async def no_silent_resend(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Session middleware: a dropped connection ends the exchange instead of a silent re-send.

    aiohttp retries GETs after ``ServerDisconnectedError`` or ``ClientOSError``
    (RFC 9112 section 9.3.1.1); any other exception passes through it. Failing to
    connect at all (``ClientConnectorError``) sent nothing and stays as it is.
    """
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        raise ConnectionLost(exc) from None


def _decompressor(encoding: str, path: str) -> zlib._Decompress | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        # zlib-wrapped or raw: 32 + MAX_WBITS detects a zlib or gzip header, and
        # _inflate falls back to raw deflate when there is none.
        return zlib.decompressobj(32 + zlib.MAX_WBITS)
    raise WeComTransportError(
        f"{path} answered with Content-Encoding {encoding[:40]!r}, which was not asked for",
        path=path,
        retryable=False,
    )


def _over_cap(path: str, cap: int, what: str) -> WeComTransportError:
    # Never retried: the same request gets the same body.
    return WeComTransportError(
        f"{path} answered {what} over the {cap}-byte cap", path=path, retryable=False
    )


def _trailing(path: str, encoding: str) -> WeComTransportError:
    # Never retried: the same request gets the same body.
    return WeComTransportError(
        f"{path} answered a {encoding} body with data after its end", path=path, retryable=False
    )


async def read_body(resp: aiohttp.ClientResponse, cap: int, path: str) -> bytes:
    """The whole body, decompressed, refusing one that is (or inflates to) over ``cap`` bytes."""
    told = resp.headers.get("Content-Encoding")
    encoding = "" if told is None else told.strip().lower()
    inflater = None if told is None else _decompressor(encoding, path)
    length = resp.content_length
    if inflater is None and length is not None:
        if length > cap:
            raise _over_cap(path, cap, f"{length} bytes,")
        return await resp.read()  # aiohttp stops at Content-Length: within the cap
    parts: list[bytes] = []
    size = 0  # inflated bytes
    received = 0  # bytes on the wire
    first = True
    tail = b""  # bytes after a member's end, too few yet to tell what they are
    async for chunk in resp.content.iter_chunked(_CHUNK):
        if inflater is None:
            size += len(chunk)
            if size > cap:
                raise _over_cap(path, cap, "a body")
            parts.append(chunk)
            continue
        # The wire bytes count too: a stream of empty gzip members inflates to
        # nothing, however long it runs.
        received += len(chunk)
        if received > cap:
            raise _over_cap(path, cap, f"a {encoding} body")
        if first and encoding == "deflate" and chunk and chunk[0] & 0x0F != 8:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no header
        first = False
        data = chunk
        while data:
            if inflater.eof:
                # Past a member's end. zlib would keep whatever follows in
                # unused_data, without bound, so it is judged here at once: another
                # gzip member (RFC 1952 allows several) is inflated on, anything
                # else is refused rather than read on.
                data, tail = tail + data, b""
                if len(data) < len(_GZIP_MAGIC):
                    tail = data
                    break
                if encoding not in ("gzip", "x-gzip") or not data.startswith(_GZIP_MAGIC):
                    raise _trailing(path, encoding)
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                # max_length: inflate at most one byte past the cap, then stop.
                out = inflater.decompress(data, cap - size + 1)
            except zlib.error:
                raise WeComTransportError(
                    f"{path} answered a {encoding} body that does not inflate", path=path
                ) from None
            size += len(out)
            if size > cap:
                raise _over_cap(path, cap, f"a {encoding} body that inflates")
            if out:
                parts.append(out)
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    if tail:
        raise _trailing(path, encoding)
    if inflater is not None and not inflater.eof:
        raise WeComTransportError(f"{path} answered a {encoding} body cut short", path=path)
    return b"".join(parts)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def transport_error(
    method: str, path: str, exc: BaseException, timeout: float | None
) -> WeComTransportError:
    """A WeComTransportError for ``exc``, worded from fields that cannot hold a secret.

    The original is not chained: aiohttp keeps the request URL, access token and
    all, on several of its exceptions.
    """
    if isinstance(exc, asyncio.TimeoutError):
        return WeComTransportError(f"{method} {path} timed out after {timeout}s", path=path)
    name = exc.cause_name if isinstance(exc, ConnectionLost) else type(exc).__name__
    detail = ""
    if isinstance(exc, aiohttp.ClientConnectorError):
        detail = f"cannot connect to {exc.host}:{exc.port}"
        if exc.os_error.strerror:
            detail += f": {exc.os_error.strerror}"
    elif isinstance(exc, ConnectionLost):
        detail = "the connection closed before the answer was complete"
    elif isinstance(exc, aiohttp.ClientResponseError):
        detail = f"HTTP {exc.status}"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        detail = "the body was cut short or malformed"
    elif isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    text = f"{method} {path} failed: {name}"
    return WeComTransportError(f"{text} ({detail})" if detail else text, path=path)
