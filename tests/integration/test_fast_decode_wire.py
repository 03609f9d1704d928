"""The fast decode path over real sockets: the same models as the old path, and cheaper.

Each test compares with the old path computed from the same JSON (``json.loads``
and the lenient converter), and counts how often cattrs was needed: never for an
answer that fits, once for a call with a quirk in it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer
from wecom_async import RetryPolicy, WeComClient, WeComDecodeError
from wecom_async import _fast_decode as fast_decode
from wecom_async._converter import decode
from wecom_async.models import ExternalContactDetail, KfAccount, KfCustomerBatch
from wecom_async.testing import FakeWeCom


@pytest.fixture
def cattrs_calls(monkeypatch: pytest.MonkeyPatch) -> list[type]:
    """The models the fast path had to hand to cattrs."""
    calls: list[type] = []

    def counting(data: Any, cls: type, **kwargs: Any) -> Any:
        calls.append(cls)
        return decode(data, cls, **kwargs)

    monkeypatch.setattr(fast_decode, "decode", counting)
    return calls


def follower(i: int) -> dict[str, Any]:
    return {
        "userid": f"u{i}",
        "remark": f"r{i}",
        "description": "",
        "createtime": 1_700_000_000 + i,
        "tags": [{"group_name": "g", "tag_name": "t", "type": 1, "tag_id": f"et{i}"}],
        "remark_mobiles": ["13800000000"],
        "add_way": 1,
    }


CONTACT = {"external_userid": "wmA", "name": "A", "type": 1, "gender": 1, "avatar": "http://a"}


def pages_of(followers: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """externalcontact/get's answers, ``size`` followers a page, chained by next_cursor."""
    pages = []
    for n, start in enumerate(range(0, len(followers), size)):
        pages.append(
            {
                "errcode": 0,
                "errmsg": "ok",
                "external_contact": CONTACT,
                "follow_user": followers[start : start + size],
                "next_cursor": f"c{n + 1}" if start + size < len(followers) else "",
            }
        )
    return pages


def serve_pages(server: TinyServer, pages: list[dict[str, Any]]) -> None:
    def route(request: web.Request) -> web.Response:
        cursor = request.query.get("cursor", "c0")
        return web.json_response(pages[int(cursor[1:])])

    server.route = route


def old_model(pages: list[dict[str, Any]]) -> ExternalContactDetail:
    """What the old path made of these pages: JSON merged, then the lenient converter."""
    merged = {**pages[0], "follow_user": [f for p in pages for f in p["follow_user"]]}
    return decode(json.loads(json.dumps(merged)), ExternalContactDetail)


def client_for(server: TinyServer) -> WeComClient:
    policy = RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_max=0.01)
    return WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy)


async def test_clean_cursor_pages_never_reach_cattrs(
    server: TinyServer, cattrs_calls: list[type]
) -> None:
    pages = pages_of([follower(i) for i in range(7)], 3)
    serve_pages(server, pages)
    async with client_for(server) as client:
        detail = await client.external_contact.get("wmA")
    assert server.hits == 3
    assert cattrs_calls == []
    assert repr(detail) == repr(old_model(pages))
    assert [f.userid for f in detail.follow_user] == [f"u{i}" for i in range(7)]


async def test_a_quirky_later_page_decodes_as_the_old_path_did(
    server: TinyServer, cattrs_calls: list[type]
) -> None:
    followers = [follower(i) for i in range(7)]
    quirky = copy.deepcopy(followers)
    quirky[4]["createtime"] = str(quirky[4]["createtime"])  # "1" for an int
    quirky[5]["remark"] = None  # null for a string
    quirky[6]["remark_mobiles"] = [13800000000]  # a number for a string
    quirky[6]["unknown_field"] = {"x": 1}
    pages = pages_of(quirky, 3)
    serve_pages(server, pages)
    async with client_for(server) as client:
        detail = await client.external_contact.get("wmA")
    assert cattrs_calls == [ExternalContactDetail]
    assert repr(detail) == repr(old_model(pages))
    # And the quirks came out as the clean answer's values would have.
    clean = old_model(pages_of(followers, 3))
    assert [f.createtime for f in detail.follow_user] == [f.createtime for f in clean.follow_user]
    assert detail.follow_user[6].remark_mobiles == ("13800000000",)


async def test_a_misfit_on_a_later_page_is_reported_as_the_old_path_did(
    server: TinyServer,
) -> None:
    followers = [follower(i) for i in range(7)]
    followers[5]["createtime"] = "yesterday"
    pages = pages_of(followers, 3)
    serve_pages(server, pages)
    with pytest.raises(WeComDecodeError) as old:
        old_model(pages)
    async with client_for(server) as client:
        with pytest.raises(WeComDecodeError) as new:
            await client.external_contact.get("wmA")
    assert "follow_user.createtime" in str(new.value)
    assert str(new.value).replace(" from externalcontact/get", "") == str(old.value)


async def test_a_45009_on_the_fast_path_is_still_an_error_and_retried(server: TinyServer) -> None:
    answers = [{"errcode": 45009, "errmsg": "api freq out of limit"}, *pages_of([follower(0)], 3)]

    def route(request: web.Request) -> web.Response:
        return web.json_response(answers.pop(0))

    server.route = route
    async with client_for(server) as client:
        detail = await client.external_contact.get("wmA")
        assert client.stats.rate_limited == 1
        assert client.stats.retries == 1
    assert detail.follow_user[0].userid == "u0"


async def test_the_fakes_answers_decode_alike_on_both_paths(cattrs_calls: list[type]) -> None:
    """Every customer of a generated corp, popular ones (paged) included, and kf batches."""
    async with FakeWeCom(customers=600, members=40, popular=3, page_size=25, seed=5) as fake:
        async with fake.client(rate_limit=[]) as client:
            ids = [fake.corp.customer_id(i) for i in range(600)]
            paged = 0
            for external_userid in ids:
                detail = await client.external_contact.get(external_userid)
                pages = await old_pages(client, external_userid)
                paged += len(pages) > 1
                assert repr(detail) == repr(old_model(pages))
            batch = await client.kf.batchget_customers(ids, need_enter_session_context=True)
            chunks = []
            for start in range(0, len(ids), 100):
                body = {
                    "external_userid_list": ids[start : start + 100],
                    "need_enter_session_context": 1,
                }
                chunks.append(await client.request("POST", "kf/customer/batchget", json=body))
    merged = {key: [c for p in chunks for c in p[key]] for key in KF_ARRAYS}
    assert repr(batch) == repr(decode(merged, KfCustomerBatch))
    assert batch.customer_list and batch.invalid_external_userid
    assert paged == 3  # the popular customers, followed by every member
    assert cattrs_calls == []  # the fake's answers all fit the models


KF_ARRAYS = ("customer_list", "invalid_external_userid")


async def old_pages(client: WeComClient, external_userid: str) -> list[dict[str, Any]]:
    """Every page of a customer's detail as JSON, through the escape hatch (the old path)."""
    params = {"external_userid": external_userid}
    pages = [await client.request("GET", "externalcontact/get", params=params)]
    while pages[-1].get("next_cursor"):
        cursor = {**params, "cursor": pages[-1]["next_cursor"]}
        pages.append(await client.request("GET", "externalcontact/get", params=cursor))
    return pages


async def test_the_fakes_id_lists_and_accounts_never_reach_cattrs(cattrs_calls: list[type]) -> None:
    async with FakeWeCom(customers=300, members=12, seed=7) as fake:
        async with fake.client(rate_limit=[]) as client:
            members = await client.external_contact.get_follow_user_list()
            old = await client.request("GET", "externalcontact/get_follow_user_list")
            assert members == old["follow_user"] and len(members) == 12
            for userid in members:
                ids = await client.external_contact.list(userid)
                old = await client.request("GET", "externalcontact/list", params={"userid": userid})
                assert ids == old.get("external_userid", [])
            accounts = await client.kf.list_accounts()
            old = await client.request("POST", "kf/account/list", json={"offset": 0, "limit": 100})
            assert accounts == decode(old["account_list"], tuple[KfAccount, ...])
    assert cattrs_calls == []
