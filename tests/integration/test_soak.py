"""Soak: thousands of fetches and a full sync under 15% faults, then the bookkeeping."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wecom_async import RetryPolicy
from wecom_async.otel import OpenTelemetryHooks
from wecom_async.sync import sync_customers
from wecom_async.testing import FakeWeCom, Faults

MAX_ATTEMPTS = 8


class EveryEvent:
    """A hook object that keeps the repr of every event it is told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __getattr__(self, name: str) -> object:
        if not name.startswith("on_"):
            raise AttributeError(name)
        return lambda event: self.seen.append(repr(event))


def every_text(exc: BaseException) -> str:
    """All an exception can show: message, repr, traceback, causes and contexts."""
    seen, todo, parts = set(), [exc], []
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [str(e), repr(e), "".join(traceback.format_exception(e))]
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


async def test_soak_under_fifteen_percent_faults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = Faults(busy=0.03, http_502=0.03, drop=0.03, timeout=0.03, rate_limited=0.03, delay=3.0)
    policy = RetryPolicy(max_attempts=MAX_ATTEMPTS, backoff_base=0.005, backoff_max=0.05)
    out = tmp_path / "customers.jsonl"
    bogus = [f"wmBOGUS{i:025d}" for i in range(20)]
    async with FakeWeCom(
        customers=5000, members=100, faults=faults, seed=21, latency=(0.0, 0.005)
    ) as fake:
        revocations = 0
        finished = asyncio.Event()

        async def revoke_every(n: int) -> None:
            nonlocal revocations
            mark = n
            while not finished.is_set():
                if fake.stats.calls >= mark:
                    fake.revoke_token()
                    revocations += 1
                    mark += n
                await asyncio.sleep(0.005)

        revoker = asyncio.create_task(revoke_every(1500))
        events = EveryEvent()
        spans = InMemorySpanExporter()
        tracing = TracerProvider()
        tracing.add_span_processor(SimpleSpanProcessor(spans))
        hooks = [events, OpenTelemetryHooks(tracer_provider=tracing)]
        with caplog.at_level(logging.DEBUG, logger="wecom_async"):
            async with fake.client(retry=policy, timeout=1.0, hooks=hooks) as client:
                ids = [fake.corp.customer_id(i) for i in range(5000)]
                stream = client.external_contact.iter_details(ids + bogus, concurrency=32)
                async with stream:
                    details = [d async for d in stream]
                report = await sync_customers(client, out, concurrency=4)
                reprs = [repr(x) for x in (client, client.stats, stream, report, fake)]
                reprs += [repr(d) for d in details[:200]]
        finished.set()
        await revoker

    # Every record exactly once, or its failure reported with its errcode.
    got = [d.external_contact.external_userid for d in details]
    assert len(got) == len(set(got)) == 5000
    assert sorted(got) == sorted(ids)
    assert sorted(stream.failures) == sorted(bogus)
    assert {getattr(e, "errcode", None) for e in stream.failures.values()} == {40096}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    synced = [x["external_contact"]["external_userid"] for x in lines]
    assert len(synced) == len(set(synced)) == 5000

    # The faults happened, of every kind, and retries stayed within the policy.
    kinds = {c.fault for c in fake.calls if c.fault}
    assert kinds == {"busy", "http_502", "drop", "timeout", "rate_limited"}
    assert revocations >= 2
    stats = client.stats
    assert stats.retries > 0
    assert stats.retries <= stats.calls * (MAX_ATTEMPTS - 1)
    # Per call, too: no detail was asked for more often than the policy allows (each
    # try may be repeated once, after a revoked token).
    tries: dict[tuple[tuple[str, str], ...], int] = {}
    for call in fake.calls_to("externalcontact/get"):
        tries[call.query] = tries.get(call.query, 0) + 1
    assert max(tries.values()) <= MAX_ATTEMPTS * 2
    assert len([q for q in tries if dict(q)["external_userid"] in set(ids)]) >= 5000

    # No more than one token fetched per revocation (plus the first); gettoken's own
    # injected faults are retried, but only one answer per revocation hands a token.
    fetched = [c for c in fake.calls_to("gettoken") if c.errcode == 0]
    assert len(fetched) <= 1 + revocations
    assert fake.stats.tokens_issued <= 1 + revocations

    # No secret anywhere: DEBUG logs and their fields, every failure, every repr,
    # every hook event, every span.
    secrets = [*fake.issued_tokens, fake.corp_secret]
    texts = [r.getMessage() + (r.exc_text or "") + repr(vars(r)) for r in caplog.records]
    texts += [every_text(e) for e in stream.failures.values()]
    texts += reprs
    texts += events.seen
    finished_spans = spans.get_finished_spans()
    texts += [f"{s.name} {dict(s.attributes or {})} {s.events}" for s in finished_spans]
    tracing.shutdown()
    assert len(caplog.records) > 5000  # the DEBUG lines really were captured
    assert len(events.seen) > 10000 and len(finished_spans) > 10000
    leaked = [s[:8] for s in secrets if any(s in t for t in texts)]
    assert leaked == []
