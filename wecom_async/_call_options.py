"""What a few calls need beyond a JSON body and a JSON answer, on the one call path.

Most endpoints send JSON and answer JSON. ``media/upload`` sends a multipart
body, ``media/get`` answers the file's bytes, and a ``kf/sync_msg`` call without
a callback token must hold a slot of a tighter budget too. :class:`CallOptions`
carries those needs through :meth:`WeComClient._call` to the exchange and decode
layers, so that such calls keep the same token, limits, pauses and retries.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import attrs

from ._ratelimit import RateLimit
from .errors import WeComDecodeError

if TYPE_CHECKING:
    from ._fast_decode import FastDecoder

__all__ = ["BINARY_KEY", "CallOptions", "ExtraBudget", "Upload", "binary_answer"]

#: The key under which a binary answer's bytes are handed back by ``_call``.
BINARY_KEY = "body"

#: A JSON error body is small; a file that starts with ``{`` and is larger is a file.
_MAX_JSON_ERROR = 64 * 1024


@attrs.frozen(kw_only=True)
class Upload:
    """One file for a multipart POST: built afresh for every try (a form is read once)."""

    filename: str
    data: bytes = attrs.field(repr=False)
    content_type: str = "application/octet-stream"
    field: str = "media"

    def form(self) -> aiohttp.FormData:
        form = aiohttp.FormData()
        # A file object, not bytes: aiohttp warns that large raw bytes block the loop.
        form.add_field(
            self.field,
            io.BytesIO(self.data),
            filename=self.filename,
            content_type=self.content_type,
        )
        return form


class ExtraBudget(NamedTuple):
    """A second rate budget a request holds a slot of, besides its path's own."""

    key: str
    """Stands for the path in the limiter's (corp, path) key."""
    limits: tuple[RateLimit, ...]


@attrs.frozen(kw_only=True)
class CallOptions:
    """What one call needs beyond JSON in and JSON out.

    Attributes:
        upload: send this file as ``multipart/form-data`` instead of a JSON body.
        binary: the answer is a file: hand back its bytes under :data:`BINARY_KEY`
            (with ``content_type`` and ``filename``), unless it is an errcode JSON body.
        max_body: the body cap for this call, in place of the pool's.
        extra_budget: also hold a slot of this budget for every request sent.
        fast: decode the answer straight into this decoder's model when it fits
            (a :class:`~wecom_async._fast_decode.FastPage`), else as JSON.
    """

    upload: Upload | None = None
    binary: bool = False
    max_body: int | None = None
    extra_budget: ExtraBudget | None = None
    fast: FastDecoder[Any] | None = None


def binary_answer(
    status: int,
    body: bytes,
    headers: tuple[str, str],
    path: str,
    json_decode: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The decode layer for a file answer: its bytes, or the error its JSON body names.

    ``headers`` are the answer's Content-Type and Content-Disposition. WeCom
    answers ``media/get`` with the file and a ``Content-Disposition: attachment``
    header, or with an errcode JSON body and no such header (path/90254); the
    errcode decides, through ``json_decode`` (the ordinary decode layer).
    """
    content_type, disposition = headers
    if not 200 <= status < 300:
        json_decode()  # raises the transport error for the status
    if not body:
        raise WeComDecodeError(f"{path} answered an empty body", path=path, retryable=True)
    if not disposition and len(body) <= _MAX_JSON_ERROR and body.lstrip()[:1] == b"{":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and "errcode" in data:
            json_decode()  # a non-zero errcode raises its typed error
    return {
        BINARY_KEY: body,
        "content_type": content_type,
        "filename": _filename(disposition),
    }


def _filename(disposition: str) -> str:
    """The ``filename`` of a Content-Disposition header, or an empty string."""
    for part in disposition.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() == "filename":
            return value.strip().strip('"')
    return ""
