"""README: Receiving callbacks, and a customer-service bot."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from wecom_async import WeComClient


def aiohttp_app(client: WeComClient, token: str, encoding_aes_key: str, corp_id: str) -> None:
    # README {
    from aiohttp import web
    from wecom_async.callback import (
        CallbackCrypto, CallbackEvent, CallbackReceiver, ExternalContactEvent,
    )

    crypto = CallbackCrypto(token, encoding_aes_key, corp_id)   # the values set with the URL

    async def handle(event: CallbackEvent) -> None:   # in the background, once per callback
        if isinstance(event, ExternalContactEvent) and event.change_type == "add_external_contact":
            detail = await client.external_contact.get(event.external_user_id)
            ...

    receiver = CallbackReceiver(crypto, handle, concurrency=8)
    app = web.Application()
    receiver.attach(app, "/wecom/callback")   # GET (URL check) and POST; starts and stops with app
    # README }

    # README {
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with receiver:                  # starts the workers; drains them on shutdown
            yield

    api = FastAPI(lifespan=lifespan)
    api.mount("/wecom/callback", receiver.asgi)
    # README }

    url = "redis://127.0.0.1:6379/0"
    # README {
    import redis.asyncio as redis
    from wecom_async.callback import RedisStreamQueue

    queue = RedisStreamQueue(redis.Redis.from_url(url), claim_idle=60)
    receiver = CallbackReceiver(crypto, handle, queue=queue)
    # README }


def bot(client: WeComClient, crypto: object) -> None:
    from wecom_async.callback import CallbackCrypto, CallbackReceiver

    assert isinstance(crypto, CallbackCrypto)
    # README {
    from wecom_async.cursors import FileCursorStore
    from wecom_async.models import KfMessage
    from wecom_async.pump import KfPump, reply_msgid

    async def handle(message: KfMessage) -> None:    # every new message, once
        if message.from_customer and message.text:   # origin 3; events and your own answers skipped
            batch = await client.kf.batchget_customers([message.external_userid])
            name = batch.customer_list[0].nickname if batch.customer_list else "there"
            await client.kf.send_text(message.external_userid, message.open_kfid,
                                      f"{name}, you said: {message.text.content}",
                                      msgid=reply_msgid(message))   # sent once, even after a crash

    pump = KfPump(client, handle, store=FileCursorStore("state/kf"), max_age=3600)
    receiver = CallbackReceiver(crypto, pump.on_event)   # kf_msg_or_event -> kf/sync_msg -> handle
    # README }


async def media(client: WeComClient, data: bytes) -> None:
    # README {
    media_id = await client.media.upload("image", "photo.jpg", data)   # image, voice, video, file
    data = await client.media.get(media_id)                            # bytes
    # README }
