"""Pools, sessions and closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import BASE, CORP_ID, SECRET, MockWeCom
from wecom_async import SessionPool, WeComClient, WeComClosedError, WeComInputError

OK: dict[str, Any] = {"errcode": 0, "external_userid": []}


async def test_a_client_closes_the_pool_it_made(wecom: MockWeCom) -> None:
    wecom.on("GET", "externalcontact/list", lambda call: OK)
    async with WeComClient(CORP_ID, SECRET, base_url=BASE) as client:
        await client.external_contact.list("u")
        pool = client._pool
        session = pool.session()
    assert pool.closed and session.closed and client.closed


async def test_clients_share_a_given_pool_and_never_close_it(wecom: MockWeCom) -> None:
    wecom.on("GET", "externalcontact/list", lambda call: OK)
    async with SessionPool() as pool:
        a = WeComClient(CORP_ID, SECRET, base_url=BASE, pool=pool)
        b = WeComClient("ww-other", SECRET, base_url=BASE, pool=pool)
        await a.external_contact.list("u")
        await b.external_contact.list("u")
        assert a._pool.session() is b._pool.session()
        await a.aclose()
        await b.aclose()
        assert not pool.closed
        assert not pool.session().closed
    assert pool.closed


async def test_using_a_closed_client_raises_a_clear_error(wecom: MockWeCom) -> None:
    client = WeComClient(CORP_ID, SECRET, base_url=BASE)
    await client.aclose()
    await client.aclose()  # twice is fine
    with pytest.raises(WeComClosedError, match="closed"):
        await client.external_contact.list("u")
    assert wecom.calls == []


async def test_a_closed_pool_refuses_sessions() -> None:
    pool = SessionPool()
    await pool.aclose()
    with pytest.raises(WeComClosedError):
        pool.session()


def test_a_client_can_be_built_outside_a_running_loop(mock: Any) -> None:
    wecom = MockWeCom(mock)
    wecom.on("GET", "externalcontact/list", lambda call: {"errcode": 0, "external_userid": ["x"]})
    client = WeComClient(CORP_ID, SECRET, base_url=BASE)

    async def use() -> list[str]:
        async with client:
            return await client.external_contact.list("u")

    assert asyncio.run(use()) == ["x"]


async def test_the_pool_is_closed_when_the_body_of_async_with_raises(wecom: MockWeCom) -> None:
    wecom.on("GET", "externalcontact/list", lambda call: OK)
    with pytest.raises(RuntimeError, match="boom"):
        async with WeComClient(CORP_ID, SECRET, base_url=BASE) as client:
            await client.external_contact.list("u")
            raise RuntimeError("boom")
    assert client._pool.closed


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "qyapi.weixin.qq.com/cgi-bin/"}, "absolute http"),
        ({"base_url": "ftp://x/cgi-bin/"}, "absolute http"),
        ({"base_url": "https://x/cgi-bin/?debug=1"}, "query"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(WeComInputError, match=match):
        WeComClient(CORP_ID, SECRET, **kwargs)


@pytest.mark.parametrize(("corp_id", "secret"), [("", SECRET), (CORP_ID, ""), (None, SECRET)])
def test_empty_credentials_are_refused(corp_id: Any, secret: Any) -> None:
    with pytest.raises(WeComInputError):
        WeComClient(corp_id, secret)


def test_base_url_gets_its_trailing_slash() -> None:
    assert WeComClient(CORP_ID, SECRET, base_url="https://x.test/cgi-bin").base_url == (
        "https://x.test/cgi-bin/"
    )


class _FreeSlot:
    def release(self) -> None:
        pass


class StalledLimiter:
    """A shared limiter whose store stopped answering: its flush never returns."""

    async def acquire(self, corp_id: str, path: str, limits: Any) -> _FreeSlot:
        return _FreeSlot()

    async def flush(self) -> None:
        await asyncio.sleep(3600)


async def test_a_stalled_limiter_flush_cannot_keep_the_session_open(
    wecom: MockWeCom, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wecom_async.client as client_module

    monkeypatch.setattr(client_module, "_FLUSH_TIMEOUT", 0.05)
    wecom.on("GET", "externalcontact/list", lambda call: OK)
    client = WeComClient(CORP_ID, SECRET, base_url=BASE, rate_limiter=StalledLimiter())
    await client.external_contact.list("u")
    await client.aclose()
    assert client._pool.closed


async def test_a_cancelled_aclose_still_closes_the_session(wecom: MockWeCom) -> None:
    wecom.on("GET", "externalcontact/list", lambda call: OK)
    client = WeComClient(CORP_ID, SECRET, base_url=BASE, rate_limiter=StalledLimiter())
    await client.external_contact.list("u")
    closing = asyncio.ensure_future(client.aclose())
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert client._pool.closed
