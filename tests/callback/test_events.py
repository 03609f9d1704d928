"""parse_event: typed models, whitespace around CDATA, unknown events kept, safe XML."""

from __future__ import annotations

import time

import pytest

from wecom_async import WeComCallbackError
from wecom_async.callback import (
    ExternalChatEvent,
    ExternalContactEvent,
    ExternalTagEvent,
    KfMsgOrEvent,
    UnknownEvent,
    parse_event,
)
from wecom_async.testing._callbacks import event_xml


def contact(change_type: str, **extra: str | int) -> str:
    fields: dict[str, str | int] = {
        "FromUserName": "sys",
        "CreateTime": 1403610513,
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": change_type,
        "UserID": "zhangsan",
        "ExternalUserID": "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA",
        **extra,
    }
    return event_xml("ww-corp", fields)


@pytest.mark.parametrize(
    ("change_type", "extra", "expect"),
    [
        ("add_external_contact", {"State": "qr1", "WelcomeCode": "WC"}, {"state": "qr1"}),
        ("edit_external_contact", {}, {"state": None}),
        ("add_half_external_contact", {"WelcomeCode": "WC"}, {"welcome_code": "WC"}),
        (
            "del_external_contact",
            {"Source": "DELETE_BY_TRANSFER"},
            {"source": "DELETE_BY_TRANSFER"},
        ),
        ("del_follow_user", {}, {"source": None}),
        ("transfer_fail", {"FailReason": "customer_refused"}, {"fail_reason": "customer_refused"}),
    ],
)
def test_change_external_contact(
    change_type: str, extra: dict[str, str], expect: dict[str, object]
) -> None:
    event = parse_event(contact(change_type, **extra))
    assert isinstance(event, ExternalContactEvent)
    assert event.to_user_name == "ww-corp" and event.from_user_name == "sys"
    assert event.create_time == 1403610513 and event.msg_type == "event"
    assert event.event == "change_external_contact" and event.change_type == change_type
    assert event.user_id == "zhangsan"
    assert event.external_user_id == "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"
    for name, value in expect.items():
        assert getattr(event, name) == value
    assert event.fields["UserID"] == "zhangsan"


def test_whitespace_around_cdata_and_numbers() -> None:
    xml = (
        "<xml>\n  <ToUserName>\n    <![CDATA[ww-corp]]>\n  </ToUserName>\n"
        "  <FromUserName> <![CDATA[sys]]> </FromUserName>\n"
        "  <CreateTime> 1403610513 </CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n"
        "  <Event>\n<![CDATA[change_external_contact]]>\n</Event>\n"
        "  <ChangeType><![CDATA[edit_external_contact]]>  </ChangeType>\n"
        "  <UserID>\t<![CDATA[zhangsan]]></UserID>\n"
        "  <ExternalUserID><![CDATA[wmX]]>\n</ExternalUserID>\n</xml>\n"
    )
    event = parse_event(xml)
    assert isinstance(event, ExternalContactEvent)
    assert (event.to_user_name, event.user_id, event.external_user_id) == (
        "ww-corp",
        "zhangsan",
        "wmX",
    )
    assert event.create_time == 1403610513 and event.change_type == "edit_external_contact"


def test_change_external_chat() -> None:
    xml = (
        "<xml><ToUserName><![CDATA[ww]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA]]></ChatId>"
        "<ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail>"
        "<JoinScene>1</JoinScene><QuitScene>0</QuitScene><MemChangeCnt>2</MemChangeCnt>"
        "<MemChangeList><Item>Jack</Item><Item>Rose</Item></MemChangeList>"
        "<LastMemVer>9c3f</LastMemVer><CurMemVer>71217</CurMemVer></xml>"
    )
    event = parse_event(xml)
    assert isinstance(event, ExternalChatEvent)
    assert event.chat_id == "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"
    assert (event.change_type, event.update_detail) == ("update", "add_member")
    assert (event.join_scene, event.quit_scene, event.mem_change_cnt) == (1, 0, 2)
    assert event.mem_change_list == ("Jack", "Rose")
    assert (event.last_mem_ver, event.cur_mem_ver) == ("9c3f", "71217")


def test_change_external_tag() -> None:
    fields: dict[str, str | int] = {
        "FromUserName": "sys", "CreateTime": 1403610513, "MsgType": "event",
        "Event": "change_external_tag", "Id": "TAG_ID", "TagType": "tag_group",
        "ChangeType": "shuffle",
    }  # fmt: skip
    event = parse_event(event_xml("ww", fields))
    assert isinstance(event, ExternalTagEvent)
    assert (event.id, event.tag_type, event.change_type) == ("TAG_ID", "tag_group", "shuffle")


def test_kf_msg_or_event_hides_its_token_from_repr() -> None:
    fields: dict[str, str | int] = {
        "CreateTime": 1348831860, "MsgType": "event", "Event": "kf_msg_or_event",
        "Token": "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR", "OpenKfId": "wkxxxxxxx",
    }  # fmt: skip
    event = parse_event(event_xml("ww", fields))
    assert isinstance(event, KfMsgOrEvent)
    assert event.token == "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"
    assert event.open_kfid == "wkxxxxxxx"
    assert event.token not in repr(event)


def test_an_unknown_event_keeps_all_its_fields() -> None:
    xml = (
        "<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>brand_new_event</Event>"
        "<Shiny><![CDATA[yes]]></Shiny><Nested><A>1</A></Nested></xml>"
    )
    event = parse_event(xml)
    assert type(event) is UnknownEvent
    assert event.event == "brand_new_event"
    assert event.fields["Shiny"] == "yes" and "Nested" in event.fields
    assert event.xml == xml
    with pytest.raises(TypeError):
        event.fields["Shiny"] = "no"  # type: ignore[index]


def test_a_text_message_is_kept_with_its_msg_id() -> None:
    # The documentation sample's plaintext (path/90968).
    xml = (
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
        "<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n"
        "<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n"
        "<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>"
    )
    event = parse_event(xml)
    assert type(event) is UnknownEvent and event.msg_type == "text"
    assert event.msg_id == "4561255354251345929" and event.agent_id == "218"
    assert event.fields["Content"] == "hello"
    assert event.dedup_key == "msg:4561255354251345929"


def test_dedup_keys() -> None:
    base = contact("edit_external_contact")
    again = parse_event(base)
    assert parse_event(base).dedup_key == again.dedup_key
    # Re-serialised with other whitespace: the same event.
    assert parse_event(base.replace("><", ">\n<")).dedup_key == again.dedup_key
    others = [
        contact("add_external_contact"),
        contact("edit_external_contact", CreateTime=1403610514),
        contact("edit_external_contact", UserID="lisi"),
        contact("edit_external_contact", ExternalUserID="wmOther"),
    ]
    assert len({parse_event(x).dedup_key for x in others} | {again.dedup_key}) == 5


def test_a_billion_laughs_is_refused_quickly() -> None:
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    xml = f'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol0 "lol">{lol}]><xml><A>&lol9;</A></xml>'
    started = time.perf_counter()
    with pytest.raises(WeComCallbackError, match="DOCTYPE"):
        parse_event(xml)
    assert time.perf_counter() - started < 0.5


def test_external_entities_are_refused(tmp_path: object) -> None:
    xml = (
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<xml><ToUserName>&x;</ToUserName></xml>"
    )
    with pytest.raises(WeComCallbackError):
        parse_event(xml)
    # No DOCTYPE: an entity reference is simply undefined.
    with pytest.raises(WeComCallbackError, match="undefined entity"):
        parse_event("<xml><A>&x;</A></xml>")


@pytest.mark.parametrize("xml", ["", "<xml>", "not xml", "<xml></yml>", b"\xff\xfe"])
def test_malformed_xml(xml: str | bytes) -> None:
    with pytest.raises(WeComCallbackError):
        parse_event(xml)


def test_kf_callbacks_in_one_second_are_told_apart_by_their_token() -> None:
    def kf(token: str) -> str:
        return (
            "<xml><ToUserName><![CDATA[ww]]></ToUserName><CreateTime>1700000000</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
            f"<Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[wkA]]></OpenKfId></xml>"
        )

    one, two, retry = parse_event(kf("T-one")), parse_event(kf("T-two")), parse_event(kf("T-one"))
    assert one.dedup_key != two.dedup_key and one.dedup_key == retry.dedup_key
    assert "T-one" not in one.dedup_key
