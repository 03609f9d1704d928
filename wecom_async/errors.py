"""The exceptions this library raises, and the map from WeCom errcodes to them.

Every exception derives from :class:`WeComError`. Errors that WeCom reports in an
answer's ``errcode`` are :class:`WeComAPIError` (or one of its family subclasses,
chosen by errcode alone, never by ``errmsg``). Faults below the API (connection
errors, timeouts, HTTP 5xx) are :class:`WeComTransportError`; answers that cannot
be decoded are :class:`WeComDecodeError`.

No exception message built here contains the access token or the corp secret.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "WeComAPIError",
    "WeComBusyError",
    "WeComCallbackError",
    "WeComClosedError",
    "WeComDecodeError",
    "WeComError",
    "WeComInputError",
    "WeComNotFoundError",
    "WeComPausedError",
    "WeComPermissionError",
    "WeComRateLimitError",
    "WeComSignatureError",
    "WeComStoreError",
    "WeComSyncError",
    "WeComTokenError",
    "WeComTransportError",
    "WeComUsageError",
    "error_for_errcode",
]


class WeComError(Exception):
    """Base class of every error raised by wecom_async."""


class WeComInputError(WeComError, ValueError):
    """An argument was rejected before any request was sent."""


class WeComClosedError(WeComError, RuntimeError):
    """The client or session pool was used after it was closed."""


class WeComUsageError(WeComError, RuntimeError):
    """The library was used in a way it cannot work: a slot released twice, or a
    client used from an event loop other than the one it started on."""


class WeComTransportError(WeComError):
    """The request did not produce a usable HTTP answer.

    Connection errors, timeouts, dropped connections and non-2xx statuses land here.
    ``status`` is the HTTP status when there was one. The underlying aiohttp or
    asyncio exception is chained as ``__cause__`` unless its text would show a secret.
    ``retryable`` is false for answers that another try would not change: an HTTP
    status below 500 (a 3xx or 4xx) and a body over the size cap.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.status = status
        if retryable is None:
            # 5xx and 429 pass; any other status is the same on every try.
            retryable = status is None or status >= 500 or status == 429
        self.retryable = retryable
        self.retry_after = retry_after
        """Seconds the server asked us to wait (HTTP ``Retry-After``), when it said."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: rebuild through a helper so pickling keeps them all.
        fields = (self.path, self.status, self.retryable, self.retry_after)
        return (_rebuild_transport_error, (type(self), str(self), *fields))


class WeComDecodeError(WeComError):
    """An answer could not be decoded into JSON or into the expected model.

    ``retryable`` is true when the body was not JSON at all (an HTML error page
    from a proxy, a truncated body): that is a transport fault and worth a retry.
    A well-formed JSON answer of the wrong shape is not.
    """

    def __init__(self, message: str, *, path: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_decode_error, (type(self), str(self), self.path, self.retryable))


class WeComSyncError(WeComError, OSError):
    """A bulk sync could not use its files: the output, its state or their locks.

    Another sync holding the same output or state, a state file that is not this
    library's, a write that failed (a full disk). Also an :class:`OSError`, so code
    that caught the sync's file errors before still does.
    """


class WeComStoreError(WeComError):
    """The shared store (Redis) behind a token store or rate limiter failed.

    Retried like a transport fault, since a store that restarts comes back.
    ``unreachable`` is true when the store did not answer (refused, reset, or past
    its time limit): an outage, which a fallback wrapper may ride out locally. A
    store that answered with an error (a misconfiguration) is not retryable.
    """

    retryable = True
    unreachable = False


class WeComAPIError(WeComError):
    """WeCom answered with a non-zero ``errcode``.

    Attributes:
        errcode: WeCom's error code; the only thing decisions are based on.
        errmsg: WeCom's text, kept for humans (it carries a hint and a help link).
        path: the API path that was called, such as ``externalcontact/get``.
    """

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(f"WeCom errcode {errcode} on {path}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path

    def __reduce__(self) -> tuple[type[WeComAPIError], tuple[int, str, str]]:
        # Keep the three fields through pickling (multiprocessing, task queues).
        return (type(self), (self.errcode, self.errmsg, self.path))


class WeComTokenError(WeComAPIError):
    """The access token was missing, invalid or expired (41001, 40014, 42001)."""


class WeComBusyError(WeComAPIError):
    """WeCom was busy or hit a data-version conflict (-1, 6000); transient."""


class WeComRateLimitError(WeComAPIError):
    """A frequency limit (45009) or concurrency limit (45033) was exceeded.

    ``retry_after`` is a hint in seconds: a minute limit blocks for about 60 s.
    """

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(errcode, errmsg, path)
        self.retry_after: float | None = 60.0 if errcode == 45009 else None


class WeComPausedError(WeComRateLimitError):
    """Not sent: the API is paused after a 45009 for longer than this call may wait.

    Every caller of a (corp, API) waits out a 45009 together; a call whose retry
    policy allows shorter waits (``backoff_max``) fails with this at once instead.
    ``retry_after`` is how long the pause has left. Never retried.
    """

    def __init__(self, path: str, retry_after: float, max_wait: float) -> None:
        super().__init__(
            45009,
            f"not sent: paused for another {retry_after:.1f}s after a 45009, longer than "
            f"this call's backoff_max of {max_wait:g}s",
            path,
        )
        self.retry_after = retry_after
        self._max_wait = max_wait

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.retry_after, self._max_wait))


class WeComPermissionError(WeComAPIError):
    """The app's configuration or permissions forbid the call.

    Wrong secret or corp id (40001, 40013, 40091), API not allowed (48002), outside
    the visibility scope (60011), untrusted caller IP (60020), no licence (701008).
    Retrying does not help until the configuration changes.
    """


class WeComNotFoundError(WeComAPIError):
    """The user, customer or relationship does not exist (40003, 40096, 84061)."""


_FAMILIES: dict[int, type[WeComAPIError]] = {
    -1: WeComBusyError,
    6000: WeComBusyError,
    40014: WeComTokenError,
    41001: WeComTokenError,
    42001: WeComTokenError,
    45009: WeComRateLimitError,
    45033: WeComRateLimitError,
    40001: WeComPermissionError,
    40013: WeComPermissionError,
    40091: WeComPermissionError,
    48002: WeComPermissionError,
    60011: WeComPermissionError,
    60020: WeComPermissionError,
    701008: WeComPermissionError,
    40003: WeComNotFoundError,
    40096: WeComNotFoundError,
    84061: WeComNotFoundError,
}


def error_for_errcode(errcode: int, errmsg: str, path: str) -> WeComAPIError:
    """Build the exception for a non-zero errcode, of the family that errcode belongs to."""
    return _FAMILIES.get(errcode, WeComAPIError)(errcode, errmsg, path)


class WeComCallbackError(WeComError):
    """A callback from WeCom could not be verified, decrypted or parsed.

    Raised by :mod:`wecom_async.callback` for a malformed body, a ciphertext that
    does not decrypt (a wrong EncodingAESKey), a plaintext whose length or receive
    id does not check out, and XML that is unsafe or broken. The message never
    contains the callback token or the key.
    """


class WeComSignatureError(WeComCallbackError):
    """A callback's ``msg_signature`` did not match, or its timestamp was too old.

    The request did not come from WeCom (or was replayed): answer 403, handle nothing.
    """


def _rebuild_transport_error(
    cls: type[WeComTransportError],
    message: str,
    path: str,
    status: int | None,
    retryable: bool,
    retry_after: float | None,
) -> WeComTransportError:
    return cls(message, path=path, status=status, retryable=retryable, retry_after=retry_after)


def _rebuild_decode_error(
    cls: type[WeComDecodeError], message: str, path: str, retryable: bool
) -> WeComDecodeError:
    return cls(message, path=path, retryable=retryable)
