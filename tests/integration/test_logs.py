"""Log lines an operator of many corps can use: errcodes, corp ids, paths, and
structured ``extra=`` fields on every record; never a secret."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer
from wecom_async import RetryPolicy, WeComClient

OK = {"errcode": 0, "external_userid": ["wm1"]}
PATH = "externalcontact/list"


async def test_lines_name_the_corp_path_and_errcode(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [
        {"errcode": 45009, "errmsg": "api freq out of limit"},
        {"errcode": -1, "errmsg": f"busy {SECRET}"},
        {"errcode": 40014, "errmsg": "invalid access_token"},
    ]

    def route(request: web.Request) -> web.Response:
        return web.json_response(answers.pop(0) if answers else OK)

    server.route = route
    policy = RetryPolicy(max_attempts=5, backoff_base=0.001, backoff_max=0.05)
    with caplog.at_level(logging.DEBUG, logger="wecom_async"):
        async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy) as c:
            await c.external_contact.list("u")
        logging.getLogger("wecom_async").warning("a line that knows no corp")

    records = caplog.records
    # Every record carries the structured fields, None where the line has none.
    for r in records:
        assert {"corp_id", "path", "errcode"} <= set(vars(r)), r.getMessage()
    assert (records[-1].corp_id, records[-1].path, records[-1].errcode) == (None, None, None)  # type: ignore[attr-defined]

    debug = [r for r in records if r.levelno == logging.DEBUG]
    data_debug = [r for r in debug if r.path == PATH]  # type: ignore[attr-defined]
    assert [r.errcode for r in data_debug] == [45009, -1, 40014, 0]  # type: ignore[attr-defined]
    assert [f"errcode {r.errcode}" in r.getMessage() for r in data_debug] == [True] * 4  # type: ignore[attr-defined]
    assert all(r.corp_id == CORP_ID for r in debug)  # type: ignore[attr-defined]

    def lines(text: str) -> list[logging.LogRecord]:
        return [r for r in records if text in r.getMessage()]

    retries = lines("retrying")
    assert [r.errcode for r in retries] == [45009, -1]  # type: ignore[attr-defined]
    pauses = lines("pausing it") + lines("answers again")
    refreshes = lines("access token for corp")
    assert len(pauses) == 2 and len(refreshes) == 2  # the first token, then the revoked one
    for r in retries + pauses + refreshes:
        message = r.getMessage()
        assert CORP_ID in message and r.corp_id == CORP_ID  # type: ignore[attr-defined]
        assert r.path in message and r.path in (PATH, "gettoken")  # type: ignore[attr-defined]
    assert all(r.path == "gettoken" for r in refreshes)  # type: ignore[attr-defined]

    tokens = [f"TOKEN-{i}-0123456789abcdef" for i in range(1, server.tokens_issued + 1)]
    everything = "\n".join(f"{r.getMessage()} {vars(r)}" for r in records)
    assert SECRET not in everything and not any(t in everything for t in tokens)
