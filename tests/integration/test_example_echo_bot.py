"""End to end: examples/echo_bot.py over real sockets against FakeWeCom. A customer's
message → an encrypted kf_msg_or_event callback → the pump → kf/sync_msg →
kf/customer/batchget → kf/send_msg, checked on the fake's record."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tests.servers import load_example
from wecom_async.callback import CallbackCrypto
from wecom_async.cursors import FileCursorStore
from wecom_async.testing import FakeCallbacks, FakeWeCom

TOKEN = "echo-token"
KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"


async def test_the_echo_bot_answers_each_customer_by_nickname(tmp_path: Path) -> None:
    example = load_example("echo_bot.py")
    async with FakeWeCom(customers=10, members=2) as fake, fake.client() as client:
        crypto = CallbackCrypto(TOKEN, KEY, fake.corp_id)
        app, pump, receiver = example.build_app(client, crypto, store=FileCursorStore(tmp_path))
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/wecom/callback"
            fake.callbacks = FakeCallbacks(url=url, token=TOKEN, aes_key=KEY)

            async def settled() -> None:
                await fake.callbacks_idle()
                await receiver.queue.join()

            alice, bob = fake.kf.new_customer("Alice"), fake.kf.new_customer("小明")
            fake.kf.customer_says(alice, "hello")
            fake.kf.customer_says(bob, "你好")
            await settled()
            assert [(s.touser, s.content["content"]) for s in fake.kf.sent] == [
                (alice, "Alice, you said: hello"),
                (bob, "小明, you said: 你好"),
            ]
            # An event and a picture are not echoed; the bot's own answers
            # (origin 5, served back by sync_msg) are not either.
            fake.kf.customer_enters(alice)
            fake.kf.customer_sends(alice, "image", {"media_id": "M"})
            fake.kf.customer_says(alice, "again")
            await settled()
            assert [s.content["content"] for s in fake.kf.sent_to(alice)] == [
                "Alice, you said: hello",
                "Alice, you said: again",
            ]
        finally:
            await runner.cleanup()
    assert fake.pusher is not None
    assert all(a.status == 200 for a in fake.pusher.attempts)
    assert receiver.stats.failed == 0 and pump.handled >= 7  # + its own answers, if synced
    # One batchget per customer (the bot remembers nicknames), every call with a token.
    assert len(fake.calls_to("kf/customer/batchget")) == 2
    assert fake.kf.tokenless_calls == 0
