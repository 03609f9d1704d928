"""Decoding: every fixture, the tolerant types, and the strict drift check."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load
from wecom_async import WeComDecodeError
from wecom_async._converter import STRICT, decode
from wecom_async.models import (
    BatchGetByUserPage,
    ExternalContactDetail,
    KfCustomerBatch,
    SchoolExternalContactDetail,
)

ENVELOPE = ("errcode", "errmsg", "next_cursor")


def without_envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ENVELOPE}


# -- the seed pages' samples, decoded strictly: every field they show has a home --


def test_seed_customer_detail_keeps_every_field() -> None:
    detail = decode(
        without_envelope(load("seed_externalcontact_get.json")),
        ExternalContactDetail,
        converter=STRICT,
    )
    contact = detail.external_contact
    assert contact.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"
    assert contact.name == "李四"
    assert contact.unionid == "ozynqsulJFCZ2z1aYeS8h-nuasdAAA"
    assert contact.type == 2 and contact.gender == 1
    assert contact.corp_full_name == "腾讯科技有限公司"
    attrs_ = contact.external_profile.external_attr  # type: ignore[union-attr]
    assert [a.type for a in attrs_] == [0, 1, 2]
    assert attrs_[0].text.value == "文本"  # type: ignore[union-attr]
    assert attrs_[1].web.url == "https://www.test.com"  # type: ignore[union-attr]
    assert attrs_[2].miniprogram.appid == "wx8bd80126147df384"  # type: ignore[union-attr]

    rocky, tommy = detail.follow_user
    assert [t.tag_id for t in rocky.tags] == [
        "etAJ2GCAAAXtWyujaWJHDDGi0mACHAAA",
        None,  # type 2 (a member's own tag) carries no tag_id
        "stAJ2GCAAAXtWyujaWJHDDGi0mACHAAA",
    ]
    assert rocky.tags[0].tag_name == "标签名称"
    assert [t.type for t in rocky.tags] == [1, 2, 3]
    assert rocky.remark_mobiles == ("13800000001", "13000000002")
    assert rocky.remark_corp_name == "腾讯科技"
    assert rocky.add_way == 10 and rocky.oper_userid == "rocky"
    assert rocky.wechat_channels is not None
    assert (rocky.wechat_channels.nickname, rocky.wechat_channels.source) == ("视频号名称", 1)
    assert tommy.state == "外联二维码1" and tommy.add_way == 3
    assert tommy.oper_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"
    assert tommy.tags == () and tommy.wechat_channels is None


def test_seed_school_detail_keeps_every_field() -> None:
    detail = decode(
        without_envelope(load("seed_school_externalcontact_get.json")),
        SchoolExternalContactDetail,
        converter=STRICT,
    )
    contact = detail.external_contact
    assert contact.is_subscribe == 1
    assert contact.subscriber_info is not None
    assert contact.subscriber_info.tag_id == ("TAG_ID1", "TAG_ID2")
    assert contact.subscriber_info.remark_mobiles == ("10000000000", "10000000001")
    assert contact.subscriber_info.remark == "李小明-爸爸"
    # The school sample sends these as JSON numbers; they come out as strings.
    assert detail.follow_user[0].remark_mobiles == ("10000000003", "10000000004")
    assert detail.follow_user[0].tags[0].tag_id is None


def test_seed_kf_batch_keeps_every_field() -> None:
    batch = decode(
        without_envelope(load("seed_kf_customer_batchget.json")), KfCustomerBatch, converter=STRICT
    )
    (customer,) = batch.customer_list
    assert customer.nickname == "张三" and customer.gender == 1
    assert customer.unionid == "oxasdaosaosdasdasdasd"
    ctx = customer.enter_session_context
    assert ctx is not None and ctx.scene == "123" and ctx.scene_param == "abc"
    assert ctx.wechat_channels is not None
    assert ctx.wechat_channels.nickname == "进入会话的视频号名称"
    assert ctx.wechat_channels.scene == 1
    assert batch.invalid_external_userid == ("zhangsan",)


# -- the peer SDKs' fixtures, decoded as production does --


def test_peer_skit_customer_detail() -> None:
    detail = decode(load("skit_externalcontact_get.json"), ExternalContactDetail)
    assert detail.external_contact.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"
    assert detail.follow_user[0].tags[0].tag_id == "etAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"
    # wechat_channels without "source": the default fills in.
    assert detail.follow_user[0].wechat_channels is not None
    assert detail.follow_user[0].wechat_channels.source == 0
    assert [f.userid for f in detail.follow_user] == ["rocky", "tommy"]


def test_peer_skit_school_detail() -> None:
    detail = decode(load("skit_externalcontact_get.json"), SchoolExternalContactDetail)
    assert detail.external_contact.subscriber_info is not None
    assert detail.external_contact.subscriber_info.tag_id == ("TAG_ID1", "TAG_ID2")


def test_peer_wechatpy_customer_detail() -> None:
    detail = decode(load("wechatpy_externalcontact_get.json"), ExternalContactDetail)
    rocky = detail.follow_user[0]
    assert rocky.remark_mobiles == ("138000001", "130000002")  # numbers on the wire
    assert rocky.remark_corp_name is None  # it used the old "remark_company" key
    assert detail.external_contact.position == "Mangaer"


def test_peer_skit_batch_get_by_user() -> None:
    page = decode(load("skit_externalcontact_batch_get_by_user.json"), BatchGetByUserPage)
    assert len(page.external_contact_list) == 2
    first, second = page.external_contact_list
    assert first.follow_info.userid == "rocky"
    assert first.follow_info.tag_id == ("etAJ2GCAAAXtWyujaWJHDDGi0mACHAAA",)
    assert second.external_contact.name == "王五"
    assert second.follow_info.state == "外联二维码1"
    assert page.next_cursor == "r9FqSqsI8fgNbHLHE5QoCP50UIg2cFQbfma3l2QsmwI"
    assert page.fail_info is None


def test_peer_skit_list() -> None:
    data = load("skit_externalcontact_list.json")
    ids = decode(data["external_userid"], tuple[str, ...])
    assert ids == ("woAJ2GCAAAXtWyujaWJHDDGi0mACAAA", "wmqfasd1e1927831291723123109rAAA")


def test_peer_skit_kf_batch() -> None:
    batch = decode(load("skit_kf_customer_batchget.json"), KfCustomerBatch)
    assert batch.customer_list[0].enter_session_context is None
    assert batch.invalid_external_userid == ("zhangsan",)


# -- tolerance --


def detail_with(contact: dict[str, Any] | None = None, **follow: Any) -> dict[str, Any]:
    return {
        "external_contact": {"external_userid": "wm1", **(contact or {})},
        "follow_user": [{"userid": "u1", **follow}],
    }


def test_gender_as_string_becomes_int() -> None:
    assert decode(detail_with({"gender": "1"}), ExternalContactDetail).external_contact.gender == 1


def test_null_counts_as_absent() -> None:
    detail = decode(
        detail_with({"position": None, "name": None}, tags=None, remark=None),
        ExternalContactDetail,
    )
    assert detail.external_contact.position is None
    assert detail.external_contact.name == ""
    assert detail.follow_user[0].tags == ()
    assert detail.follow_user[0].remark == ""


def test_unknown_fields_ignored_absent_fields_defaulted() -> None:
    detail = decode(
        {"external_contact": {"external_userid": "wm1", "brand_new": {"x": 1}}, "extra": 1},
        ExternalContactDetail,
    )
    assert detail.follow_user == ()
    assert detail.external_contact.avatar is None


def test_strict_converter_catches_drift() -> None:
    with pytest.raises(WeComDecodeError, match="brand_new"):
        decode(
            {"external_contact": {"external_userid": "wm1", "brand_new": 1}},
            ExternalContactDetail,
            converter=STRICT,
        )


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (detail_with({"gender": "male"}), "external_contact.gender"),
        (detail_with(remark_mobiles="13800000000"), "remark_mobiles"),  # not an array
        (detail_with(createtime=True), "createtime"),
        (detail_with(tags=[{"type": [1]}]), "type"),
        (detail_with(remark={"a": 1}), "remark"),
        ({"follow_user": []}, "external_contact"),
        ({"external_contact": "wm1"}, "external_contact"),
        ([1, 2], "expected an object"),
    ],
)
def test_misfits_raise_decode_error_naming_the_place(data: Any, where: str) -> None:
    with pytest.raises(WeComDecodeError, match=where) as info:
        decode(data, ExternalContactDetail, path="externalcontact/get")
    assert info.value.path == "externalcontact/get"
    assert info.value.retryable is False


def test_models_are_frozen() -> None:
    detail = decode(load("wechatpy_externalcontact_get.json"), ExternalContactDetail)
    with pytest.raises(AttributeError):
        detail.external_contact.name = "x"  # type: ignore[misc]
