"""Temporary media (素材) endpoints (``media/*``): files in and out, on the one call path."""

from __future__ import annotations

import mimetypes
from typing import Final

from .._call_options import BINARY_KEY, CallOptions, Upload
from .._paging import require_id
from ..errors import WeComDecodeError, WeComInputError
from ._base import Namespace

__all__ = ["MEDIA_LIMITS", "MediaAPI"]

_MiB: Final = 1024 * 1024

#: The largest file of each kind WeCom takes (path/90253); every file is over 5 bytes.
MEDIA_LIMITS: Final = {"image": 10 * _MiB, "voice": 2 * _MiB, "video": 10 * _MiB, "file": 20 * _MiB}
_MIN_BYTES: Final = 5

#: The default cap on a downloaded file: the largest file WeCom takes. A customer's
#: file in a customer-service session may be larger; pass ``max_bytes`` for those.
DEFAULT_GET_MAX_BYTES: Final = 20 * _MiB


class MediaAPI(Namespace):
    """``client.media``: upload temporary media and download media by id.

    Both go through the client's one call path (token, rate limit, retries).
    Temporary media live 3 days.
    """

    __slots__ = ()

    async def upload(self, kind: str, filename: str, data: bytes) -> str:
        """Upload a temporary file and return its ``media_id`` (valid 3 days).

        POST /cgi-bin/media/upload?type=KIND (multipart, field ``media``)
        https://developer.work.weixin.qq.com/document/path/90253

        ``kind`` is ``image`` (up to 10 MiB), ``voice`` (2 MiB, AMR), ``video``
        (10 MiB, MP4) or ``file`` (20 MiB). The form is rebuilt for every try.

        Raises:
            WeComInputError: an unknown kind, an empty filename, or a size WeCom refuses.
        """
        path = "media/upload"
        limit = MEDIA_LIMITS.get(kind) if isinstance(kind, str) else None
        if limit is None:
            raise WeComInputError(f"kind must be one of {sorted(MEDIA_LIMITS)}, got {kind!r}")
        require_id(filename, "filename")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise WeComInputError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if not _MIN_BYTES < len(data) <= limit:
            raise WeComInputError(
                f"a {kind} must be more than {_MIN_BYTES} bytes and at most {limit} bytes, "
                f"got {len(data)}"
            )
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        options = CallOptions(
            upload=Upload(filename=filename, data=data, content_type=content_type)
        )
        answer = await self._client._call("POST", path, {"type": kind}, None, options)
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WeComDecodeError(f"{path} answered without a media_id", path=path)
        return media_id

    async def get(self, media_id: str, *, max_bytes: int = DEFAULT_GET_MAX_BYTES) -> bytes:
        """Download a file by ``media_id`` and return its bytes.

        GET /cgi-bin/media/get
        https://developer.work.weixin.qq.com/document/path/90254

        WeCom answers the file itself, or an errcode JSON body on failure, which
        raises its typed error as any call does. A file over ``max_bytes`` (after
        decompression) raises :class:`~wecom_async.WeComTransportError`, not retried.

        Raises:
            WeComInputError: an empty ``media_id`` or a ``max_bytes`` below 1.
        """
        require_id(media_id, "media_id")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise WeComInputError(f"max_bytes must be an integer >= 1, got {max_bytes!r}")
        options = CallOptions(binary=True, max_body=max_bytes)
        answer = await self._client._call("GET", "media/get", {"media_id": media_id}, None, options)
        body: bytes = answer[BINARY_KEY]
        return body
