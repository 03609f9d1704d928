"""The callback token, the EncodingAESKey, the corp secret and access tokens never reach
logs, exception text or reprs, on any path of a callback's travel."""

from __future__ import annotations

import logging
import traceback

import pytest

from tests.callback.conftest import AES_KEY, TOKEN, make_crypto, pusher_to, serve_aiohttp
from tests.callback.test_receiver import Recorder, change
from wecom_async import WeComError
from wecom_async.callback import CallbackCrypto, CallbackReceiver, MemoryQueue
from wecom_async.testing import FakeCallbacks, FakeWeCom


def secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


async def test_no_secret_in_logs_errors_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    texts: list[str] = []
    handler = Recorder(fail=lambda e: e.create_time % 2 == 1)
    receiver = CallbackReceiver(make_crypto(), handler, queue=MemoryQueue(maxsize=50))
    with caplog.at_level(logging.DEBUG, logger="wecom_async"):
        async with serve_aiohttp(receiver) as url, pusher_to(url) as pusher:
            for n in range(4):
                await pusher.push(change(n))
            await pusher.post_once(change(9), msg_signature="f" * 40)  # forged
            await pusher.post_once(change(9), timestamp="0")
            await handler.wait_for(4)
            texts += [repr(receiver), repr(receiver.crypto), repr(pusher.config), str(pusher)]
            texts += [repr(e) for e in handler.events]
        # Every error the crypto raises, with its traceback.
        crypto = make_crypto(max_age=1)
        wrong_key = CallbackCrypto(TOKEN, AES_KEY[::-1], "ww-callback-test")
        params, body = pusher.body(change(1))
        attempts = [
            lambda: crypto.decrypt(params["msg_signature"], params["timestamp"], "x", body),
            lambda: crypto.decrypt("0", "1", "2", b"<xml><Encrypt>!!</Encrypt></xml>"),
            lambda: wrong_key.decrypt(
                params["msg_signature"], params["timestamp"], params["nonce"], body
            ),
            lambda: crypto.verify_url("0", "1", "2", "abc"),
            lambda: CallbackCrypto(TOKEN, AES_KEY[:40], "ww"),
            lambda: CallbackCrypto(TOKEN, AES_KEY + "=", "ww"),
        ]
        for attempt in attempts:
            with pytest.raises(WeComError) as info:
                attempt()
            texts.append("".join(traceback.format_exception(info.value)) + repr(info.value))

        # The fake's side too: its callbacks config, and a corp secret and access token.
        config = FakeCallbacks(url=url, token=TOKEN, aes_key=AES_KEY)
        async with FakeWeCom(customers=5, callbacks=config) as fake, fake.client() as client:
            await client.external_contact.get(fake.corp.customer_id(1))
            fake.add_customer()
            await fake.callbacks_idle()  # to a URL that has gone: every try fails, logged
            texts += [repr(fake), repr(client), repr(fake.callbacks), repr(fake.pusher)]
            corp_secret, tokens = fake.corp_secret, sorted(fake.issued_tokens)
    texts += [r.getMessage() for r in caplog.records]
    texts += [
        "".join(traceback.format_exception(*r.exc_info)) for r in caplog.records if r.exc_info
    ]
    secrets = [TOKEN, AES_KEY, corp_secret, *tokens]
    assert any("handler failed" in t for t in texts)  # the failure paths were taken
    assert any("bad signature" in t for t in texts)
    assert any("failed 3 tries" in t for t in texts)
    leaks = {s: [t for t in texts if s in t][:1] for s in secrets_in("\n".join(texts), secrets)}
    assert leaks == {}
