"""A WeChat customer-service echo bot: it greets the customer by nickname and repeats
what they said.

The loop a bot runs: WeCom POSTs ``kf_msg_or_event`` to ``/wecom/callback``; the
pump pulls the new messages with ``kf/sync_msg``; the bot looks the customer up
with ``kf/customer/batchget`` and answers with ``kf/send_msg``. The answer's
msgid is derived from the message it answers, so a bot restarted after a crash
re-sends the same answer, which WeCom takes once.

    python examples/echo_bot.py     # a demo against FakeWeCom, on loopback only

Needs ``pip install 'wecom-async[callback]'``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from wecom_async import WeComClient
from wecom_async.callback import CallbackCrypto, CallbackQueue, CallbackReceiver
from wecom_async.cursors import CursorStore
from wecom_async.models.kf import KfMessage
from wecom_async.pump import KfPump, PumpLock, reply_msgid


class EchoBot:
    """Answers every text a customer sends: "<nickname>, you said: <text>"."""

    def __init__(self, client: WeComClient) -> None:
        self.client = client
        self.nicknames: dict[str, str] = {}

    async def handle(self, message: KfMessage) -> None:
        """The pump's handler: one message, answered (or ignored: events, our own answers)."""
        if not message.from_customer or message.text is None:
            return
        nickname = await self.nickname(message.external_userid)
        await self.client.kf.send_text(
            message.external_userid,
            message.open_kfid,
            f"{nickname}, you said: {message.text.content}",
            msgid=reply_msgid(message),
        )

    async def nickname(self, external_userid: str) -> str:
        if external_userid not in self.nicknames:
            batch = await self.client.kf.batchget_customers([external_userid])
            found = {c.external_userid: c.nickname for c in batch.customer_list}
            self.nicknames[external_userid] = found.get(external_userid) or "there"
        return self.nicknames[external_userid]


def build_app(
    client: WeComClient,
    crypto: CallbackCrypto,
    *,
    store: CursorStore | None = None,
    lock: PumpLock | None = None,
    queue: CallbackQueue | None = None,
) -> tuple[web.Application, KfPump, CallbackReceiver]:
    """The app (``/wecom/callback``), its pump and its receiver."""
    bot = EchoBot(client)
    pump = KfPump(client, bot.handle, store=store, lock=lock, max_age=3600)
    receiver = CallbackReceiver(crypto, pump.on_event, queue=queue)
    app = web.Application()
    receiver.attach(app, "/wecom/callback")
    return app, pump, receiver


async def demo() -> None:
    """Two customers write to a FakeWeCom; watch the bot answer them."""
    import tempfile

    from wecom_async.cursors import FileCursorStore
    from wecom_async.testing import FakeCallbacks, FakeWeCom

    token, key = "demo-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    async with FakeWeCom(customers=10, members=2) as fake, fake.client() as client:
        crypto = CallbackCrypto(token, key, fake.corp_id)
        with tempfile.TemporaryDirectory() as tmp:
            app, _, receiver = build_app(client, crypto, store=FileCursorStore(Path(tmp)))
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/wecom/callback"
            fake.callbacks = FakeCallbacks(url=url, token=token, aes_key=key)
            alice, bob = fake.kf.new_customer("Alice"), fake.kf.new_customer("Bob")
            fake.kf.customer_says(alice, "hello")
            fake.kf.customer_says(bob, "你好")
            fake.kf.customer_says(alice, "how are you?")
            await fake.callbacks_idle()
            await receiver.queue.join()
            for sent in fake.kf.sent:
                print(f"to {sent.touser[-6:]}: {sent.content['content']}")
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(demo())
