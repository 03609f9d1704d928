"""README: Seeing what the client does."""

from __future__ import annotations

from typing import Protocol

from wecom_async import SessionPool
from wecom_async.hooks import CallStarted


class _Histogram(Protocol):
    def labels(self, *values: str) -> _Histogram: ...
    def observe(self, value: float) -> None: ...


class _Audit:
    def on_call_start(self, event: CallStarted) -> None:
        print(event.path)


def hooks(histogram: _Histogram, audit: _Audit) -> None:
    # README {
    from wecom_async.hooks import AttemptEnded, Hooks

    class Latency(Hooks):                      # subclassing is optional
        def on_attempt(self, event: AttemptEnded) -> None:
            histogram.labels(event.corp_id, event.path, str(event.errcode)).observe(event.duration)

    pool = SessionPool(hooks=[Latency(), audit])   # one object, or a list
    # README }


def otel() -> None:
    # README {
    from wecom_async.otel import OpenTelemetryHooks

    pool = SessionPool(hooks=OpenTelemetryHooks())   # or tracer_provider=, meter_provider=
    # README }


def otel_aiohttp() -> None:
    # README {
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config
    from wecom_async.otel import url_filter

    pool = SessionPool(trace_configs=[create_trace_config(url_filter=url_filter)])
    # README }
