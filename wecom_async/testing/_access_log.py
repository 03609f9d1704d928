"""The fake's access log: aiohttp's request lines, with the secrets masked.

aiohttp logs each request line to ``aiohttp.access`` at INFO, query included, so
a test that captures the root logger would see the corp secret on ``gettoken``
and the access token on every call. The fake logs its lines through
:class:`MaskedAccessLogger` instead, which masks them as the client's own log
lines are masked (:func:`~wecom_async._observe.redact_url`).
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .._observe import redact_url

__all__ = ["MaskedAccessLogger"]


class MaskedAccessLogger(AbstractAccessLogger):
    """One INFO line per request: peer, request line (secrets masked), status, size,
    user agent and time taken. aiohttp's ``access_log_format`` is not used."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = request.version
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d "%s" %.1f ms',
            request.remote or "-",
            request.method,
            redact_url(request.rel_url),
            version.major,
            version.minor,
            response.status,
            response.body_length,
            request.headers.get("User-Agent", "-"),
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        """Whether a line would be written (aiohttp skips the call otherwise)."""
        return self.logger.isEnabledFor(logging.INFO)
