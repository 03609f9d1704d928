"""Secrets (the corp secret, the access token) never reach logs, errors or reprs."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest

from tests.conftest import CORP_ID, SECRET, Call, MockWeCom, Reply
from wecom_async import RetryPolicy, SessionPool, WeComClient, WeComError


def all_text_of(exc: BaseException) -> str:
    """The message, repr and full printed traceback, causes included."""
    return "".join(traceback.format_exception(exc)) + repr(exc)


async def test_debug_logs_show_redacted_urls_only(
    wecom: MockWeCom, client: WeComClient, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([Reply(502, "<html>bad</html>"), {"errcode": 0, "external_userid": []}])

    def handler(call: Call) -> Any:
        return next(answers)

    wecom.on("GET", "externalcontact/list", handler)
    with caplog.at_level(logging.DEBUG, logger="wecom_async"):
        await client.external_contact.list("zhangsan")
    text = "\n".join(r.getMessage() for r in caplog.records)
    token = wecom.issued[0]
    assert token not in text and SECRET not in text
    assert "gettoken?corpid=ww-test-corp&corpsecret=***" in text
    assert "externalcontact/list?userid=zhangsan&access_token=***" in text
    assert "retrying externalcontact/list" in text  # the retry was logged, still redacted
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 3


async def test_errors_carry_no_secret(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on("GET", "externalcontact/list", lambda call: {"errcode": 60020, "errmsg": "ip"})
    with pytest.raises(WeComError) as info:
        await client.external_contact.list("u")
    text = all_text_of(info.value)
    assert wecom.issued[0] not in text and SECRET not in text


async def test_connection_errors_carry_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    # Port 9 on loopback: nothing listens there, so the connection is refused.
    policy = RetryPolicy(max_attempts=2, backoff_base=0.0)
    with caplog.at_level(logging.DEBUG, logger="wecom_async"):
        async with WeComClient(
            CORP_ID, SECRET, base_url="http://127.0.0.1:9/cgi-bin/", retry=policy
        ) as client:
            with pytest.raises(WeComError) as info:
                await client.external_contact.list("u")
    assert "ClientConnectorError" in str(info.value) or "Connect" in str(info.value)
    assert SECRET not in all_text_of(info.value)
    assert SECRET not in "\n".join(r.getMessage() for r in caplog.records)


async def test_reprs_hide_the_secret_and_token(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on("GET", "externalcontact/list", lambda call: {"errcode": 0, "external_userid": []})
    await client.external_contact.list("u")
    reprs = " ".join(
        repr(x)
        for x in (
            client,
            client._tokens,
            client._tokens._store,
            client._tokens._local,
            client._pool,
        )
    )
    assert CORP_ID in repr(client)
    assert SECRET not in reprs and wecom.issued[0] not in reprs
    assert "SessionPool" in repr(SessionPool())
