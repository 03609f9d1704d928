"""FakeWeCom's access log shows every request line, with its secrets masked.

A test that captures the root logger (pytest's caplog, ``logging.basicConfig``)
sees aiohttp's access lines for the fake: they must never carry the corp secret
or an access token the fake issued.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, quote_plus

import pytest

from wecom_async.testing import FakeWeCom

#: The method and path of an access line's request line.
REQUEST_LINE = re.compile(r'"(GET|POST) ([^? ]+)')


def _forms(secret: str) -> set[str]:
    """The secret as it could appear in text: raw and URL-encoded."""
    return {secret, quote(secret, safe=""), quote_plus(secret)}


async def test_the_fake_access_log_masks_the_corp_secret_and_every_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    async with FakeWeCom(customers=20, seed=3) as fake:
        async with fake.client() as client:
            members = await client.external_contact.get_follow_user_list()
            await client.external_contact.list(members[0])
            await client.external_contact.get(fake.corp.customer_id(0))
            fake.revoke_token()  # the next call meets 40014 and fetches a second token
            await client.external_contact.list(members[1])
            await client.request(
                "POST",
                "externalcontact/batch/get_by_user",
                json={"userid_list": members[:2], "limit": 10},
            )
        issued = fake.issued_tokens
        calls = list(fake.calls)
        secret = fake.corp_secret
    # After the fake closed: every request it handled has had its access line.

    assert len(issued) == 2
    assert [c.path for c in calls].count("gettoken") == 2
    records = caplog.records
    access = [r for r in records if r.name == "aiohttp.access"]
    # The request lines are there (a logger not capturing would pass the rest).
    assert len(access) == len(calls), [r.getMessage() for r in access]
    lines = [r.getMessage() for r in access]
    # One line per request (in any order: a line is written after its answer).
    requested = sorted(" ".join(m.groups()) for m in map(REQUEST_LINE.search, lines) if m)
    assert requested == sorted(f"{c.method} /cgi-bin/{c.path}" for c in calls), lines
    gettoken_lines = [line for line in lines if "/cgi-bin/gettoken" in line]
    assert len(gettoken_lines) == 2
    assert all("corpsecret=***" in line and fake.corp_id in line for line in gettoken_lines)
    data_lines = [line for line in lines if "/cgi-bin/gettoken" not in line]
    assert data_lines and all("access_token=***" in line for line in data_lines)

    secrets = set().union(*map(_forms, (secret, *issued)))
    for r in records:
        text = f"{r.getMessage()} {r.args!r} {vars(r)!r}"
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{r.name}: {r.getMessage()}"


async def test_the_fake_call_log_repr_masks_the_corp_secret() -> None:
    async with FakeWeCom(customers=5, seed=3) as fake:
        async with fake.client() as client:
            await client.external_contact.get_follow_user_list()
        gettoken = fake.calls_to("gettoken")[0]
    # The query is kept as it came, for tests that check it; only its repr is masked.
    assert dict(gettoken.query)["corpsecret"] == fake.corp_secret
    assert fake.corp_secret not in repr(gettoken)
    assert fake.corp_secret not in repr(list(fake.calls))
    assert "('corpsecret', '***')" in repr(gettoken)
    assert fake.corp_id in repr(gettoken)
