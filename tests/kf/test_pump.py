"""KfPump against FakeWeCom: each message once, checkpoints only after success, one run
at a time per account (in process and across pumps sharing Redis), expired tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.integration.test_redis import REDIS_URL, redis_prefix  # noqa: F401 (fixture)
from wecom_async import WeComStoreError
from wecom_async.cursors import (
    Checkpoint,
    CursorStore,
    FileCursorStore,
    MemoryCursorStore,
    RedisCursorStore,
)
from wecom_async.models.kf import KfMessage
from wecom_async.pump import KfPump, RedisPumpLock, reply_msgid
from wecom_async.testing import FakeWeCom


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeCom]:
    async with FakeWeCom(customers=10, members=2) as f:
        yield f


@pytest.fixture(params=["memory", "file", "redis"])
async def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_prefix: str,  # noqa: F811
) -> AsyncIterator[CursorStore]:
    if request.param == "memory":
        yield MemoryCursorStore()
    elif request.param == "file":
        yield FileCursorStore(tmp_path / "cursors")
    else:
        r = aioredis.Redis.from_url(REDIS_URL)
        yield RedisCursorStore(r, prefix=redis_prefix)
        await r.aclose()


class Recorder:
    """A handler that records what it saw and can be told to fail on one text."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.seen: list[str] = []
        self.fail_on = fail_on
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, message: KfMessage) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let any other run in, if the lock allowed it
            text = message.text.content if message.text else ""
            if text == self.fail_on:
                raise RuntimeError("the handler failed")
            self.seen.append(text)
        finally:
            self.in_flight -= 1


async def test_each_message_once_and_the_checkpoint_only_after_success(
    fake: FakeWeCom, store: CursorStore
) -> None:
    who = fake.kf.new_customer()
    kfid = fake.kf.open_kfid
    for n in range(5):
        fake.kf.customer_says(who, f"m{n}")
    handler = Recorder(fail_on="m3")
    async with fake.client() as client:
        pump = KfPump(client, handler, store=store)
        with pytest.raises(RuntimeError):
            await pump.pump(kfid, token=fake.kf.issue_token())
        assert handler.seen == ["m0", "m1", "m2"]
        saved = await store.load(f"{client.corp_id}:{kfid}")
        assert saved.cursor == "" and len(saved.handled) == 3  # the page is not done
        # A new pump (a restart: nothing in memory) resumes at m3, skipping m0..m2.
        handler.fail_on = None
        fresh = KfPump(client, handler, store=store)
        assert await fresh.pump(kfid, token=fake.kf.issue_token()) == 2
        assert handler.seen == ["m0", "m1", "m2", "m3", "m4"]
        fake.kf.customer_says(who, "m5")
        assert await fresh.pump(kfid, token=fake.kf.issue_token()) == 1
        assert handler.seen[-1] == "m5"
        done = await store.load(f"{client.corp_id}:{kfid}")
        assert done.cursor and not done.handled


async def test_a_burst_of_events_runs_one_at_a_time_and_coalesces(fake: FakeWeCom) -> None:
    who = fake.kf.new_customer()
    kfid = fake.kf.open_kfid
    handler = Recorder()
    async with fake.client() as client:
        pump = KfPump(client, handler)
        calls = []
        for n in range(30):
            fake.kf.customer_says(who, f"m{n}")
            calls.append(asyncio.create_task(pump.pump(kfid, token=fake.kf.issue_token())))
        counts = await asyncio.gather(*calls)
    assert handler.seen == [f"m{n}" for n in range(30)]
    assert handler.most_in_flight == 1 and sum(counts) >= 30
    assert pump.runs <= 3 and fake.kf.sync_calls == pump.runs


async def test_two_pumps_sharing_redis_never_run_together(
    fake: FakeWeCom,
    redis_prefix: str,  # noqa: F811
) -> None:
    who = fake.kf.new_customer()
    kfid = fake.kf.open_kfid
    for n in range(20):
        fake.kf.customer_says(who, f"m{n}")
    handler = Recorder()  # shared, so its in-flight count spans both pumps
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        async with fake.client() as one, fake.client() as two:
            pumps = [
                KfPump(
                    c,
                    handler,
                    store=RedisCursorStore(r, prefix=redis_prefix),
                    lock=RedisPumpLock(r, prefix=redis_prefix, timeout=5),
                )
                for c in (one, two)
            ]
            token = fake.kf.issue_token()
            await asyncio.gather(*(p.pump(kfid, token=token) for p in pumps for _ in range(3)))
    finally:
        await r.aclose()
    assert handler.seen == [f"m{n}" for n in range(20)]
    assert handler.most_in_flight == 1


async def test_an_expired_token_falls_back_to_a_call_without_one(fake: FakeWeCom) -> None:
    who = fake.kf.new_customer()
    fake.kf.customer_says(who, "late")
    token = fake.kf.issue_token()
    fake.kf.expire_tokens()
    handler = Recorder()
    async with fake.client() as client:
        assert await KfPump(client, handler).pump(fake.kf.open_kfid, token=token) == 1
    assert handler.seen == ["late"] and fake.kf.tokenless_calls == 1


async def test_max_age_skips_history_but_moves_past_it(fake: FakeWeCom) -> None:
    who = fake.kf.new_customer()
    now = int(fake.kf.clock())
    fake.kf.customer_sends(who, "text", {"content": "old"}, send_time=now - 7200, push=False)
    fake.kf.customer_says(who, "new")
    handler = Recorder()
    async with fake.client() as client:
        pump = KfPump(client, handler, max_age=3600)
        assert await pump.pump(fake.kf.open_kfid, token=fake.kf.issue_token()) == 1
    assert handler.seen == ["new"]


async def test_an_unreadable_checkpoint_is_a_store_error(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path)
    store.path("ww:wk").write_text("{not json")
    with pytest.raises(WeComStoreError, match="not readable"):
        await store.load("ww:wk")
    await store.save("ww:wk", Checkpoint("C", frozenset({"a"})))
    assert json.loads(store.path("ww:wk").read_text()) == {"cursor": "C", "handled": ["a"]}
    assert [p.name for p in tmp_path.iterdir()] == [store.path("ww:wk").name]  # no temp left


def test_reply_msgid_is_stable_and_what_wecom_accepts() -> None:
    message = KfMessage(msgid="abc")
    first = reply_msgid(message)
    assert first == reply_msgid(KfMessage(msgid="abc")) != reply_msgid(message, "2")
    assert len(first) == 32 and first.isalnum()
