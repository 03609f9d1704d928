"""OpenTelemetry spans and metrics, read back from the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer
from wecom_async import RateLimit, RetryPolicy, SessionPool, WeComClient, WeComNotFoundError
from wecom_async.otel import OpenTelemetryHooks, url_filter

OK = {"errcode": 0, "external_userid": ["wm1"]}
FAST = RetryPolicy(max_attempts=5, backoff_base=0.001, backoff_max=0.2)


class Telemetry:
    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.hooks = OpenTelemetryHooks(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_out.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def sequence(*answers: Any) -> Any:
    queue = list(answers)

    def route(request: web.Request) -> web.Response:
        answer = queue.pop(0) if queue else OK
        if isinstance(answer, int):
            return web.Response(status=answer, text="bad gateway")
        return web.json_response(answer)

    return route


def every_text_of(spans: list[ReadableSpan]) -> str:
    parts = []
    for s in spans:
        events = [(e.name, dict(e.attributes or {})) for e in s.events]
        parts.append(f"{s.name} {dict(s.attributes or {})} {events}")
    return "\n".join(parts)


def tokens_of(server: TinyServer) -> list[str]:
    return [f"TOKEN-{i}-0123456789abcdef" for i in range(1, server.tokens_issued + 1)]


async def test_one_span_per_call_with_a_child_per_attempt(
    server: TinyServer, otel: Telemetry
) -> None:
    server.route = sequence({"errcode": -1, "errmsg": "busy"}, 502)
    tracer = otel.tracer_provider.get_tracer("the-app")
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=FAST, hooks=otel.hooks
    ) as client:
        with tracer.start_as_current_span("handle request") as parent:
            await client.external_contact.list("zhangsan")
    spans = {s.name: s for s in otel.spans if s.kind != SpanKind.CLIENT}
    call = spans["WeCom externalcontact/list"]
    assert call.parent is not None and call.parent.span_id == parent.get_span_context().span_id
    assert call.kind == SpanKind.INTERNAL
    attempts = [
        s
        for s in otel.spans
        if s.parent is not None
        and s.parent.span_id == call.context.span_id
        and s.kind == SpanKind.CLIENT
    ]
    assert [s.name for s in attempts] == ["GET externalcontact/list"] * 3
    attrs = [dict(s.attributes or {}) for s in attempts]
    assert [a.get("http.response.status_code") for a in attrs] == [200, 502, 200]
    assert [a.get("wecom.errcode") for a in attrs] == [-1, None, 0]
    assert [a.get("http.request.resend_count") for a in attrs] == [None, 1, 2]
    assert [a.get("error.type") for a in attrs] == ["WeComBusyError", "WeComTransportError", None]
    first = attrs[0]
    assert first["wecom.corp_id"] == CORP_ID and first["wecom.path"] == "externalcontact/list"
    assert first["http.request.method"] == "GET"
    assert first["url.full"] == server.base_url + "externalcontact/list?userid=zhangsan"
    assert first["server.address"] == "127.0.0.1"
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert all(call.start_time <= s.start_time <= s.end_time <= call.end_time for s in attempts)
    assert dict(call.attributes or {})["wecom.errcode"] == 0
    assert call.status.status_code == StatusCode.UNSET
    # The token refresh is a call of its own, under the call that needed it.
    refresh = spans["WeCom gettoken"]
    assert refresh.parent is not None and refresh.parent.span_id == call.context.span_id
    (fetch,) = [s for s in otel.spans if s.name == "GET gettoken"]
    assert dict(fetch.attributes or {})["url.full"] == (
        server.base_url + f"gettoken?corpid={CORP_ID}"
    )
    text = every_text_of(otel.spans)
    assert SECRET not in text and "corpsecret" not in text and "access_token" not in text
    assert not any(t in text for t in tokens_of(server))


async def test_a_failed_call_ends_its_span_in_error(server: TinyServer, otel: Telemetry) -> None:
    server.route = sequence({"errcode": 40096, "errmsg": "invalid external userid"})
    async with WeComClient(
        CORP_ID, SECRET, base_url=server.base_url, retry=FAST, hooks=otel.hooks
    ) as client:
        with pytest.raises(WeComNotFoundError):
            await client.external_contact.list("nobody")
        await client.external_contact.list("somebody")  # the next call has its own span
    calls = [s for s in otel.spans if s.name == "WeCom externalcontact/list"]
    assert len(calls) == 2
    failed = calls[0]
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "WeComNotFoundError"
    assert dict(failed.attributes or {})["wecom.errcode"] == 40096
    assert calls[1].parent is None  # the failed call's span did not stay current


async def test_metrics_count_requests_retries_45009s_refreshes_and_waits(
    server: TinyServer, otel: Telemetry
) -> None:
    server.route = sequence({"errcode": 45009, "errmsg": "freq"}, {"errcode": -1})
    limit = RateLimit(2, 0.2)
    async with WeComClient(
        CORP_ID,
        SECRET,
        base_url=server.base_url,
        retry=FAST,
        rate_limit=limit,
        hooks=otel.hooks,
    ) as client:
        await asyncio.gather(*(client.external_contact.list("u") for _ in range(4)))
    found = otel.metrics()
    data = {"wecom.corp_id": CORP_ID, "wecom.path": "externalcontact/list"}

    def points(name: str, **match: Any) -> list[Any]:
        want = {**data, **match}
        return [
            p for p in found[name] if all(dict(p.attributes).get(k) == v for k, v in want.items())
        ]

    durations = points("http.client.request.duration")
    assert sum(p.count for p in durations) == server.hits  # one per HTTP attempt
    by_errcode = {dict(p.attributes).get("wecom.errcode"): p.count for p in durations}
    assert by_errcode == {45009: 1, -1: 1, 0: 4}
    assert [p.value for p in points("wecom.client.rate_limited")] == [1]
    assert sum(p.value for p in points("wecom.client.retries")) == client.stats.retries == 2
    refreshes = [p for p in found["wecom.client.token_refreshes"]]
    assert [(dict(p.attributes)["wecom.outcome"], p.value) for p in refreshes] == [("ok", 1)]
    (waits,) = points("wecom.client.rate_limit.wait")
    assert waits.count >= 2 and waits.max > 0.1  # four calls through two slots of 0.2 s


async def test_generic_aiohttp_instrumentation_leaks_the_token_unless_filtered(
    server: TinyServer, otel: Telemetry
) -> None:
    async def run(**kwargs: Any) -> str:
        otel.spans_out.clear()
        config = create_trace_config(tracer_provider=otel.tracer_provider, **kwargs)
        async with SessionPool(trace_configs=[config]) as pool:
            async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, pool=pool) as c:
                for i in range(3):
                    await c.external_contact.list(f"u{i}")
        spans = otel.spans
        assert len(spans) == 4  # gettoken and three calls: the trace config ran
        return every_text_of(spans)

    # The danger the README warns about, shown: the URL carries both secrets.
    leaky = await run()
    assert SECRET in leaky and tokens_of(server)[0] in leaky
    # The redacting setup the README shows.
    text = await run(url_filter=url_filter)
    assert SECRET not in text and not any(t in text for t in tokens_of(server))
    assert "access_token" not in text and "corpsecret" not in text
    assert "userid=u2" in text
