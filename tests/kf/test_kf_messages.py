"""kf/sync_msg, kf/send_msg and friends against FakeWeCom over loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.servers import TinyServer
from wecom_async import (
    RetryPolicy,
    WeComAPIError,
    WeComClient,
    WeComDecodeError,
    WeComInputError,
    WeComRateLimitError,
)
from wecom_async.models.kf import KfEvent, KfLocation, KfMedia, KfMsgMenu, KfText
from wecom_async.testing import FakeWeCom

NO_WAIT = RetryPolicy(max_attempts=1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeCom]:
    async with FakeWeCom(customers=20, members=3) as f:
        yield f


CONTENTS: dict[str, dict[str, Any]] = {
    "text": {"content": "你好", "menu_id": "101"},
    "image": {"media_id": "IMG"},
    "voice": {"media_id": "VOI"},
    "video": {"media_id": "VID"},
    "file": {"media_id": "FIL"},
    "location": {"latitude": 23.1, "longitude": "113.3", "name": "广州塔", "address": "阅江西路"},
    "link": {"title": "t", "desc": "d", "url": "https://example.invalid/", "pic_url": "p"},
    "business_card": {"userid": "zhangsan"},
    "miniprogram": {"title": "m", "appid": "wx1", "pagepath": "p", "thumb_media_id": "T"},
    "msgmenu": {
        "head_content": "请选择",
        "list": [
            {"type": "click", "click": {"id": "1", "content": "满意"}},
            {"type": "view", "view": {"url": "https://example.invalid/", "content": "看看"}},
        ],
        "tail_content": "谢谢",
    },
    "channels": {"sub_type": 1, "nickname": "视频号", "title": "标题"},
    "event": {"event_type": "enter_session", "welcome_code": "W", "scene": "123"},
    "note": {"future": ["field"]},
}


async def test_every_msgtype_is_typed_and_an_unknown_one_kept_whole(fake: FakeWeCom) -> None:
    who = fake.kf.new_customer("小明")
    sent = [fake.kf.customer_sends(who, kind, body) for kind, body in CONTENTS.items()]
    async with fake.client() as client:
        stream = client.kf.sync_msg(token=fake.kf.issue_token())
        got = [m async for m in stream]
    assert [m.msgid for m in got] == sent
    by_type = {m.msgtype: m for m in got}
    assert by_type["text"].content == KfText(content="你好", menu_id="101")
    assert isinstance(by_type["image"].content, KfMedia) and by_type["file"].file is not None
    location = by_type["location"].content
    assert isinstance(location, KfLocation) and location.longitude == pytest.approx(113.3)
    menu = by_type["msgmenu"].content
    assert isinstance(menu, KfMsgMenu) and menu.list[0].click is not None
    assert menu.list[0].click.id == "1" and menu.list[1].view is not None
    event = by_type["event"].content
    assert isinstance(event, KfEvent) and event.event_type == "enter_session"
    assert event.welcome_code == "W"
    for kind, message in by_type.items():
        assert message.external_userid == who and message.open_kfid == fake.kf.open_kfid
        assert message.from_customer and message.send_time > 0
        if kind == "note":
            assert message.content is None
            assert message.raw is not None and message.raw["note"] == {"future": ["field"]}
        else:
            assert message.content is not None and message.raw is None
    # The cursor after the last page: the next run sees only what came after.
    later = fake.kf.customer_says(who, "again")
    async with fake.client() as client:
        again = client.kf.sync_msg(token=fake.kf.issue_token(), cursor=stream.next_cursor)
        assert [m.msgid async for m in again] == [later]
        assert again.next_cursor and again.next_cursor != stream.next_cursor


async def test_empty_pages_with_has_more_do_not_end_the_stream(fake: FakeWeCom) -> None:
    # Eight messages to another account, then one to ours: with limit=2 and a
    # filter on our account, four empty pages with has_more=1 come first. The
    # general pager's "three empty pages" rule would have stopped here.
    other = fake.kf.add_account("售后")
    who = fake.kf.new_customer()
    for n in range(8):
        fake.kf.customer_says(who, f"to other {n}", open_kfid=other)
    mine = fake.kf.customer_says(who, "to us")
    async with fake.client() as client:
        pages = client.kf.sync_msg_pages(
            token=fake.kf.issue_token(), open_kfid=fake.kf.open_kfid, limit=2
        )
        seen = [page async for page in pages]
    assert [len(p.msg_list) for p in seen] == [0, 0, 0, 0, 1]
    assert [p.has_more for p in seen] == [1, 1, 1, 1, 0]
    assert seen[-1].msg_list[0].msgid == mine


async def test_a_pager_that_repeats_its_cursor_is_stopped(server: TinyServer) -> None:
    def route(request: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "next_cursor": "C", "has_more": 1, "msg_list": []})

    server.route = route
    async with WeComClient("ww", "secret-x", base_url=server.base_url, retry=NO_WAIT) as client:
        with pytest.raises(WeComDecodeError, match="did not end"):
            async for _ in client.kf.sync_msg(token="T"):
                pass
    assert server.hits == 2


async def test_45009_with_an_empty_msg_list_is_an_error(server: TinyServer) -> None:
    server.route = lambda request: web.json_response(
        {"errcode": 45009, "errmsg": "api freq out of limit", "msg_list": []}
    )
    async with WeComClient("ww", "secret-x", base_url=server.base_url, retry=NO_WAIT) as client:
        with pytest.raises(WeComRateLimitError):
            async for _ in client.kf.sync_msg(token="T"):
                pass


async def test_without_a_token_at_most_ten_calls_a_minute_leave(fake: FakeWeCom) -> None:
    async with fake.client() as client:

        async def run(token: str | None = None) -> None:
            async for _ in client.kf.sync_msg(token=token):
                pass

        tasks = [asyncio.create_task(run()) for _ in range(11)]
        done: set[asyncio.Task[None]] = set()
        pending = set(tasks)
        while len(done) < 10:
            more, pending = await asyncio.wait(
                pending, timeout=10, return_when=asyncio.FIRST_COMPLETED
            )
            assert more, "the first ten calls did not all complete"
            done |= more
        assert len(done) == 10 and all(t.exception() is None for t in done)
        # The eleventh waits for the budget, not for WeCom's 45009 and block.
        (late,) = pending
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(late), 0.3)
        assert fake.kf.tokenless_calls == 10 and fake.kf.tokenless_violations == 0
        # A call with the callback's token is not held back.
        await asyncio.wait_for(run(fake.kf.issue_token()), 5)
        late.cancel()
        await asyncio.gather(late, return_exceptions=True)
    assert fake.kf.tokenless_violations == 0


async def test_the_fake_blocks_the_eleventh_tokenless_call(fake: FakeWeCom) -> None:
    # What the budget above protects against: the fake (like WeCom) answers 45009.
    async with fake.client(rate_limit=[]) as raw:
        for _ in range(10):
            await raw.request("POST", "kf/sync_msg", json={"limit": 1})
        answer = fake.kf
        with pytest.raises(WeComRateLimitError):
            await raw.with_options(retry=NO_WAIT).request("POST", "kf/sync_msg", json={})
    assert answer.tokenless_violations == 1


async def test_expired_token_and_the_three_day_window(fake: FakeWeCom) -> None:
    who = fake.kf.new_customer()
    now = int(fake.kf.clock())
    fake.kf.customer_sends(who, "text", {"content": "old"}, send_time=now - 4 * 86400)
    fresh = fake.kf.customer_says(who, "new")
    token = fake.kf.issue_token()
    async with fake.client() as client:
        assert [m.msgid async for m in client.kf.sync_msg(token=token)] == [fresh]
        fake.kf.expire_tokens()
        with pytest.raises(WeComAPIError) as info:
            async for _ in client.kf.sync_msg(token=token):
                pass
        assert info.value.errcode == 95007


async def test_send_msg_records_and_a_repeated_msgid_is_one_message(fake: FakeWeCom) -> None:
    who = fake.kf.new_customer("阿花")
    fake.kf.customer_says(who, "hi")
    kfid = fake.kf.open_kfid
    async with fake.client() as client:
        first = await client.kf.send_text(who, kfid, "hello")
        again = await client.kf.send_msg(who, kfid, "text", {"content": "x"}, msgid="reply-1")
        same = await client.kf.send_msg(who, kfid, "text", {"content": "x"}, msgid="reply-1")
        menu = {"head_content": "h", "list": [{"type": "text", "text": {"content": "c"}}]}
        third = await client.kf.send_msg(who, kfid, "msgmenu", menu)
        batch = await client.kf.batchget_customers([who])
    assert again == same == "reply-1" and len({first, again, third}) == 3
    assert [(s.msgtype, s.msgid) for s in fake.kf.sent_to(who)] == [
        ("text", first),
        ("text", "reply-1"),
        ("msgmenu", third),
    ]
    assert fake.kf.sent[0].content == {"content": "hello"}
    assert batch.customer_list[0].nickname == "阿花" and not batch.invalid_external_userid


async def test_a_retried_send_carries_the_same_msgid(server: TinyServer) -> None:
    bodies: list[dict[str, Any]] = []

    async def route(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        if len(bodies) == 1:  # the answer is lost: WeCom may have sent it
            assert request.transport is not None
            request.transport.close()
        return web.json_response({"errcode": 0, "msgid": bodies[-1]["msgid"]})

    server.route = route
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)
    async with WeComClient("ww", "secret-x", base_url=server.base_url, retry=policy) as client:
        msgid = await client.kf.send_text("wmC", "wkK", "hi")
    assert len(bodies) == 2 and bodies[0]["msgid"] == bodies[1]["msgid"] == msgid


async def test_send_msg_on_event_uses_the_welcome_code_once(fake: FakeWeCom) -> None:
    who = fake.kf.new_customer()
    code = fake.kf.customer_enters(who)
    async with fake.client() as client:
        async for message in client.kf.sync_msg(token=fake.kf.issue_token()):
            assert message.event is not None and message.event.welcome_code == code
        await client.kf.send_msg_on_event(code, "text", {"content": "欢迎"})
        with pytest.raises(WeComAPIError):
            await client.kf.send_msg_on_event(code, "text", {"content": "again"})
    assert [s.code for s in fake.kf.sent] == [code]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.kf.sync_msg(limit=0),
        lambda c: c.kf.sync_msg(limit=1001),
        lambda c: c.kf.sync_msg(token=""),
        lambda c: c.kf.sync_msg(voice_format=3),
        lambda c: c.kf.send_msg("wm", "wk", "text", "not a mapping"),
        lambda c: c.kf.send_msg("wm", "wk", "text", {"content": "x"}, msgid="x" * 33),
        lambda c: c.kf.send_msg("wm", "wk", "text", {"content": "x"}, msgid="中文"),
        lambda c: c.kf.send_text("wm", "", "x"),
        lambda c: c.kf.send_text("wm", "wk", ""),
        lambda c: c.kf.trans_service_state("wk", "wm", 3),
        lambda c: c.kf.trans_service_state("wk", "wm", 7),
    ],
)
async def test_bad_input_is_refused_before_sending(server: TinyServer, call: Any) -> None:
    async with WeComClient("ww", "secret-x", base_url=server.base_url) as client:
        with pytest.raises(WeComInputError):
            result = call(client)
            if asyncio.iscoroutine(result):
                await result
    assert server.arrivals == []


async def test_accounts_and_service_state(fake: FakeWeCom) -> None:
    names = [f"客服{n}" for n in range(120)]
    for name in names:
        fake.kf.add_account(name)
    who = fake.kf.new_customer()
    kfid = fake.kf.open_kfid
    servicer = fake.corp.userids[0]
    async with fake.client() as client:
        accounts = await client.kf.list_accounts()
        assert len(accounts) == 121 and [a.name for a in accounts[1:]] == names
        assert (await client.kf.get_service_state(kfid, who)).service_state == 0
        code = await client.kf.trans_service_state(kfid, who, 3, servicer)
        state = await client.kf.get_service_state(kfid, who)
        assert code and state.service_state == 3 and state.servicer_userid == servicer
        await client.kf.send_msg_on_event(code, "text", {"content": "已为您转接人工"})
    assert len(fake.calls_to("kf/account/list")) == 2
