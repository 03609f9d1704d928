"""The endpoint namespaces: paging, chunking, fan-out and the raw escape hatch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Call, MockWeCom, load
from wecom_async import WeComClient, WeComDecodeError, WeComInputError, WeComPermissionError


def follower(i: int) -> dict[str, Any]:
    return {"userid": f"member{i}", "createtime": 1600000000 + i, "tags": []}


async def test_get_follows_cursor_over_three_pages_and_merges_in_order(
    wecom: MockWeCom, client: WeComClient
) -> None:
    pages = {
        None: (list(range(0, 500)), "CURSOR-2"),
        "CURSOR-2": (list(range(500, 1000)), "CURSOR-3"),
        "CURSOR-3": (list(range(1000, 1123)), ""),
    }

    def handler(call: Call) -> dict[str, Any]:
        assert call.query["external_userid"] == "wmCUSTOMER"
        ids, next_cursor = pages[call.query.get("cursor")]
        return {
            "errcode": 0,
            "errmsg": "ok",
            "external_contact": {"external_userid": "wmCUSTOMER", "name": "客户"},
            "follow_user": [follower(i) for i in ids],
            "next_cursor": next_cursor,
        }

    wecom.on("GET", "externalcontact/get", handler)
    detail = await client.external_contact.get("wmCUSTOMER")

    cursors = [c.query.get("cursor") for c in wecom.calls_to("externalcontact/get")]
    assert cursors == [None, "CURSOR-2", "CURSOR-3"]
    assert [f.userid for f in detail.follow_user] == [f"member{i}" for i in range(1123)]
    assert detail.external_contact.name == "客户"


async def test_get_decodes_the_seed_sample(wecom: MockWeCom, client: WeComClient) -> None:
    sample = load("seed_externalcontact_get.json")

    def handler(call: Call) -> dict[str, Any]:
        if call.query.get("cursor") == "NEXT_CURSOR":
            return {"external_contact": sample["external_contact"], "follow_user": []}
        return sample

    wecom.on("GET", "externalcontact/get", handler)
    detail = await client.external_contact.get("woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA")
    assert [f.userid for f in detail.follow_user] == ["rocky", "tommy"]
    assert len(wecom.calls_to("externalcontact/get")) == 2


async def test_get_refuses_a_cursor_that_repeats(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on(
        "GET",
        "externalcontact/get",
        lambda call: {"external_contact": {}, "follow_user": [], "next_cursor": "SAME"},
    )
    with pytest.raises(WeComDecodeError, match="pager did not end"):
        await client.external_contact.get("wm1")
    assert len(wecom.calls_to("externalcontact/get")) == 2


@pytest.mark.parametrize("bad", ["", "   ", None, 42, ["wm1"]])
async def test_get_refuses_a_bad_id_before_any_request(
    wecom: MockWeCom, client: WeComClient, bad: Any
) -> None:
    with pytest.raises(WeComInputError, match="external_userid"):
        await client.external_contact.get(bad)
    assert wecom.calls == []


async def test_school_variant_decodes_subscriber_info(
    wecom: MockWeCom, client: WeComClient
) -> None:
    wecom.on(
        "GET", "externalcontact/get", lambda call: load("seed_school_externalcontact_get.json")
    )
    detail = await client.school.get_external_contact("woAAAA")
    assert detail.external_contact.is_subscribe == 1
    assert detail.external_contact.subscriber_info is not None
    assert detail.external_contact.subscriber_info.remark == "李小明-爸爸"
    assert detail.follow_user[0].remark_mobiles == ("10000000003", "10000000004")


def kf_answer(ids: list[str]) -> dict[str, Any]:
    return {
        "errcode": 0,
        "errmsg": "ok",
        "customer_list": [
            {"external_userid": i, "nickname": f"nick-{i}"} for i in ids if "bad" not in i
        ],
        "invalid_external_userid": [i for i in ids if "bad" in i],
    }


async def test_kf_250_ids_become_3_concurrent_calls_merged_in_request_order(
    wecom: MockWeCom, client: WeComClient
) -> None:
    all_in_flight = asyncio.Event()
    in_flight = 0

    async def handler(call: Call) -> dict[str, Any]:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 3:
            all_in_flight.set()
        # Only reachable when the three chunks are in flight together: sequential
        # chunks would time out here and fail the test.
        await asyncio.wait_for(all_in_flight.wait(), timeout=2)
        ids = call.body["external_userid_list"]
        # Finish the first chunk last, so that arrival order is not request order.
        await asyncio.sleep(0.05 if ids[0] == "wm000" else 0)
        return kf_answer(ids)

    wecom.on("POST", "kf/customer/batchget", handler)
    ids = [f"wm{i:03d}" if i % 50 else f"bad{i:03d}" for i in range(250)]
    batch = await client.kf.batchget_customers(ids + ids[:30])  # duplicates dropped

    sent = [c.body["external_userid_list"] for c in wecom.calls_to("kf/customer/batchget")]
    assert sorted(len(chunk) for chunk in sent) == [50, 100, 100]
    assert sorted(i for chunk in sent for i in chunk) == sorted(ids)
    assert [c.external_userid for c in batch.customer_list] == [i for i in ids if "bad" not in i]
    assert batch.invalid_external_userid == tuple(i for i in ids if "bad" in i)
    assert all(
        c.body["need_enter_session_context"] == 0 for c in wecom.calls_to("kf/customer/batchget")
    )


async def test_kf_sends_the_session_context_flag(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on("POST", "kf/customer/batchget", lambda call: load("seed_kf_customer_batchget.json"))
    batch = await client.kf.batchget_customers(
        ["wmxxxxxxxxxxxxxxxxxxxxxx"], need_enter_session_context=True
    )
    (call,) = wecom.calls_to("kf/customer/batchget")
    assert call.body == {
        "external_userid_list": ["wmxxxxxxxxxxxxxxxxxxxxxx"],
        "need_enter_session_context": 1,
    }
    ctx = batch.customer_list[0].enter_session_context
    assert ctx is not None and ctx.wechat_channels is not None


@pytest.mark.parametrize(
    ("bad", "match"),
    [([], "at least one"), ("wm1", "list of ids"), (["wm1", ""], "non-empty"), ([1], "non-empty")],
)
async def test_kf_refuses_bad_lists_before_any_request(
    wecom: MockWeCom, client: WeComClient, bad: Any, match: str
) -> None:
    with pytest.raises(WeComInputError, match=match):
        await client.kf.batchget_customers(bad)
    assert wecom.calls == []


async def test_kf_one_failing_chunk_cancels_the_others(
    wecom: MockWeCom, client: WeComClient
) -> None:
    cancelled = []

    async def handler(call: Call) -> dict[str, Any]:
        ids = call.body["external_userid_list"]
        if ids[0] == "wm100":
            return {"errcode": 84061, "errmsg": "no relationship"}
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(ids[0])
            raise
        return kf_answer(ids)

    wecom.on("POST", "kf/customer/batchget", handler)
    with pytest.raises(Exception, match="84061"):
        await client.kf.batchget_customers([f"wm{i:03d}" for i in range(300)])
    assert sorted(cancelled) == ["wm000", "wm200"]


async def test_list_and_follow_user_list(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on("GET", "externalcontact/list", lambda call: load("skit_externalcontact_list.json"))
    wecom.on(
        "GET",
        "externalcontact/get_follow_user_list",
        lambda call: {"errcode": 0, "errmsg": "ok", "follow_user": ["zhangsan", "lisi"]},
    )
    assert await client.external_contact.list("zhangsan") == [
        "woAJ2GCAAAXtWyujaWJHDDGi0mACAAA",
        "wmqfasd1e1927831291723123109rAAA",
    ]
    assert wecom.calls_to("externalcontact/list")[0].query["userid"] == "zhangsan"
    assert await client.external_contact.get_follow_user_list() == ["zhangsan", "lisi"]


async def test_raw_request_gets_token_and_checks_errcode(
    wecom: MockWeCom, client: WeComClient
) -> None:
    wecom.on(
        "POST", "externalcontact/add_contact_way", lambda call: {"errcode": 0, "config_id": "c1"}
    )
    answer = await client.request(
        "post", "/externalcontact/add_contact_way", params={"debug_tag": "x"}, json={"type": 1}
    )
    assert answer["config_id"] == "c1"
    (call,) = wecom.calls_to("externalcontact/add_contact_way")
    assert call.body == {"type": 1}
    assert call.query["debug_tag"] == "x"
    assert call.token == wecom.issued[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "DELETE", "path": "x"}, "GET or POST"),
        ({"method": "GET", "path": "/"}, "path"),
        ({"method": "GET", "path": "x", "params": {"access_token": "t"}}, "access_token"),
        ({"method": "GET", "path": "x", "params": {"debug": 1}}, "debug"),
    ],
)
async def test_raw_request_refuses_bad_arguments(
    wecom: MockWeCom, client: WeComClient, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(WeComInputError, match=match):
        await client.request(**kwargs)
    assert wecom.calls == []


async def test_iter_details_records_per_id_errors_and_stops_on_app_errors(
    wecom: MockWeCom, client: WeComClient
) -> None:
    def handler(call: Call) -> dict[str, Any]:
        uid = call.query["external_userid"]
        if uid == "wmNOREL":
            return {"errcode": 84061, "errmsg": "no relationship"}
        if uid == "wmFORBID":
            return {"errcode": 48002, "errmsg": "api forbidden"}
        return {"external_contact": {"external_userid": uid}, "follow_user": []}

    wecom.on("GET", "externalcontact/get", handler)
    stream = client.external_contact.iter_details(["wm1", "wmNOREL", "wm2"], concurrency=2)
    got = sorted([d.external_contact.external_userid async for d in stream])
    assert got == ["wm1", "wm2"]
    assert list(stream.failures) == ["wmNOREL"]
    assert stream.failures["wmNOREL"].errcode == 84061  # type: ignore[attr-defined]

    # A forbidden API would fail every id alike: the stream ends with the error.
    with pytest.raises(WeComPermissionError):
        async with client.external_contact.iter_details(["wmFORBID", "wm3"], concurrency=1) as s:
            async for _ in s:
                pass


def test_iter_details_refuses_a_bare_string_or_bad_concurrency(client: WeComClient) -> None:
    with pytest.raises(WeComInputError):
        client.external_contact.iter_details("wm1")
    with pytest.raises(WeComInputError):
        client.external_contact.iter_details(["wm1"], concurrency=0)
