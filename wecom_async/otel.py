"""OpenTelemetry spans and metrics for wecom_async, built on its hooks (the ``[otel]`` extra).

::

    from wecom_async import SessionPool
    from wecom_async.otel import OpenTelemetryHooks

    pool = SessionPool(hooks=OpenTelemetryHooks())   # the global providers by default

**Spans.** One ``INTERNAL`` span per logical call (``WeCom externalcontact/get``),
under whatever span is current when the call is made, with one ``CLIENT`` child per
HTTP attempt (``GET externalcontact/get``). A token refresh is a logical call of its
own (``WeCom gettoken``), under the call that started it. Attributes follow
OpenTelemetry's HTTP conventions (``http.request.method``, ``url.full``,
``server.address``, ``server.port``, ``http.response.status_code``,
``http.request.resend_count``, ``error.type``) plus ``wecom.corp_id``,
``wecom.path`` and ``wecom.errcode``. ``url.full`` never holds ``access_token`` or
``corpsecret``: they are removed, not masked. A 45009 pause adds the events
``wecom.pause.start`` and ``wecom.pause.end`` to the call that saw it.

**Metrics** (attributes ``wecom.corp_id`` and ``wecom.path`` on each):

- ``http.client.request.duration`` (s): a histogram of HTTP attempts, with
  method, status, ``error.type`` and ``wecom.errcode``;
- ``wecom.client.retries``: retries scheduled, with ``error.type``;
- ``wecom.client.rate_limited``: 45009 answers;
- ``wecom.client.token_refreshes``: ``gettoken`` refreshes, with ``wecom.outcome``;
- ``wecom.client.rate_limit.wait`` (s): a histogram of waits for a rate-limit slot.

Generic aiohttp instrumentation puts the whole URL in its spans, access token and
corp secret included. Given to :class:`~wecom_async.SessionPool` as
``trace_configs=``, give it :func:`url_filter`::

    from opentelemetry.instrumentation.aiohttp_client import create_trace_config
    pool = SessionPool(trace_configs=[create_trace_config(url_filter=url_filter)])
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from yarl import URL

from . import __version__
from ._observe import strip_secrets
from .hooks import (
    AttemptEnded,
    CallEnded,
    CallStarted,
    Hooks,
    PauseEnded,
    PauseStarted,
    RateLimitWaited,
    RetryScheduled,
    TokenRefreshed,
)

__all__ = ["OpenTelemetryHooks", "url_filter"]

_SCOPE: Final = "wecom_async"

#: Attempt durations span from a loopback millisecond to a 10 s timeout and more.
_DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: Rate-limit waits run from a few ms to a minute's window.
_WAIT_BUCKETS: Final = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_RATE_LIMITED: Final = 45009

#: The call span open in this task, with what to undo when it ends.
_open_call: ContextVar[tuple[Span, object, Token[Any]] | None] = ContextVar(
    "wecom_async_otel_call", default=None
)


def url_filter(url: URL) -> str:
    """``url`` as text without ``access_token`` and ``corpsecret``.

    For the ``url_filter=`` of ``opentelemetry-instrumentation-aiohttp-client``.
    """
    return strip_secrets(url)


def _corp_path(corp_id: str, path: str) -> dict[str, Any]:
    return {"wecom.corp_id": corp_id, "wecom.path": path}


class OpenTelemetryHooks(Hooks):
    """Hooks that turn what the client does into OpenTelemetry spans and metrics.

    Args:
        tracer_provider: where spans go; the global provider by default.
        meter_provider: where metrics go; the global provider by default.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP attempts to WeCom, decoding included.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._retries = meter.create_counter(
            "wecom.client.retries", unit="{retry}", description="Retries scheduled."
        )
        self._rate_limited = meter.create_counter(
            "wecom.client.rate_limited",
            unit="{answer}",
            description="Answers of 45009 (over WeCom's frequency limit).",
        )
        self._refreshes = meter.create_counter(
            "wecom.client.token_refreshes",
            unit="{refresh}",
            description="Access token refreshes (gettoken with its retries).",
        )
        self._rate_wait = meter.create_histogram(
            "wecom.client.rate_limit.wait",
            unit="s",
            description="Waits for a slot in the client's rate-limit windows.",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )

    def __repr__(self) -> str:
        return "<OpenTelemetryHooks>"

    def on_call_start(self, event: CallStarted) -> None:
        """Open the logical call's span and make it current for the call's task."""
        attributes = _corp_path(event.corp_id, event.path)
        attributes["http.request.method"] = event.method
        span = self._tracer.start_span(
            f"WeCom {event.path}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        attached = otel_context.attach(trace.set_span_in_context(span))
        _open_call.set((span, attached, _open_call.set(None)))

    def on_call_end(self, event: CallEnded) -> None:
        """Close the logical call's span with its outcome."""
        opened = _open_call.get()
        if opened is None:
            return
        span, attached, previous = opened
        span.set_attribute("wecom.attempts", event.attempts)
        if event.errcode is not None:
            span.set_attribute("wecom.errcode", event.errcode)
        if event.error is not None:
            span.set_attribute("error.type", event.error)
            span.set_status(Status(StatusCode.ERROR, event.error))
        span.end()
        _open_call.reset(previous)
        otel_context.detach(attached)  # type: ignore[arg-type]

    def on_attempt(self, event: AttemptEnded) -> None:
        """A child span for the attempt (timed after the fact), and its duration."""
        end_ns = time.time_ns()
        start_ns = end_ns - int(event.duration * 1e9)
        url = URL(event.url)
        attributes = _corp_path(event.corp_id, event.path)
        attributes["http.request.method"] = event.method
        if url.host is not None:
            attributes["server.address"] = url.host
        if url.port is not None:
            attributes["server.port"] = url.port
        if event.status is not None:
            attributes["http.response.status_code"] = event.status
        if event.errcode is not None:
            attributes["wecom.errcode"] = event.errcode
        if event.error is not None:
            attributes["error.type"] = event.error
        self._duration.record(event.duration, attributes)
        if event.errcode == _RATE_LIMITED:
            self._rate_limited.add(1, _corp_path(event.corp_id, event.path))
        attributes["url.full"] = event.url
        attributes["http.response.body.size"] = event.body_size
        if event.attempt > 1:
            attributes["http.request.resend_count"] = event.attempt - 1
        span = self._tracer.start_span(
            f"{event.method} {event.path}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=start_ns,
        )
        if event.error is not None:
            span.set_status(Status(StatusCode.ERROR, event.error))
        span.end(end_time=end_ns)

    def on_retry(self, event: RetryScheduled) -> None:
        """Count the retry."""
        attributes = _corp_path(event.corp_id, event.path)
        attributes["error.type"] = event.error
        self._retries.add(1, attributes)

    def on_rate_limit_wait(self, event: RateLimitWaited) -> None:
        """Record the wait for a slot."""
        self._rate_wait.record(event.waited, _corp_path(event.corp_id, event.path))

    def on_token_refresh(self, event: TokenRefreshed) -> None:
        """Count the refresh, by outcome."""
        attributes = _corp_path(event.corp_id, "gettoken")
        attributes["wecom.outcome"] = event.outcome
        self._refreshes.add(1, attributes)

    def on_pause_start(self, event: PauseStarted) -> None:
        """Mark the pause on the call that met the 45009."""
        trace.get_current_span().add_event(
            "wecom.pause.start", {"wecom.pause.seconds": event.seconds}
        )

    def on_pause_end(self, event: PauseEnded) -> None:
        """Mark the end of the pause on the probe's call."""
        trace.get_current_span().add_event(
            "wecom.pause.end", {"wecom.pause.paused_for": event.paused_for}
        )
