"""to_dict / from_dict: WeCom's JSON out, the same model back, for every model."""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load
from wecom_async import WeComDecodeError, WeComInputError, from_dict, to_dict
from wecom_async.models import (
    AddWay,
    ContactType,
    ExternalContact,
    ExternalContactDetail,
    FollowUser,
    Gender,
    KfMessage,
    KfOrigin,
    KfSyncPage,
    external_contact,
    kf,
    school,
)
from wecom_async.models import enums as enums_module

MODELS = sorted(
    {
        obj
        for module in (external_contact, kf, school)
        for obj in vars(module).values()
        if inspect.isclass(obj) and attrs.has(obj) and obj.__module__ == module.__name__
    },
    key=lambda cls: cls.__qualname__,
)


def strategy(tp: Any) -> st.SearchStrategy[Any]:
    """Values of the declared type, enums including values no release knows."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([strategy(a) for a in args])
    if tp is type(None):
        return st.none()
    if origin is tuple:
        return st.lists(strategy(args[0]), max_size=3).map(tuple)
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return st.one_of(st.sampled_from(tp), st.integers(-(2**40), 2**40))
    if attrs.has(tp):
        hints = typing.get_type_hints(tp)
        fields = {
            f.name: strategy(hints[f.name])
            for f in attrs.fields(tp)
            if hints[f.name] != Mapping[str, Any] | None  # KfMessage.raw: not a wire field
        }
        return st.builds(tp, **fields)
    return {
        str: st.text(max_size=8),
        int: st.integers(-(2**63), 2**63),
        bool: st.booleans(),
        float: st.floats(allow_nan=False, allow_infinity=False),
    }[tp]


def only_json(data: Any) -> None:
    """Plain JSON data: no None, no enum member, no tuple."""
    assert data is not None
    if isinstance(data, dict):
        for key, value in data.items():
            assert type(key) is str
            only_json(value)
    elif isinstance(data, list):
        for value in data:
            only_json(value)
    else:
        assert type(data) in (str, int, float, bool), type(data)


def test_every_model_module_is_covered() -> None:
    assert len(MODELS) >= 40
    assert {ExternalContactDetail, KfMessage, school.SchoolExternalContactDetail} <= set(MODELS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("cls", MODELS, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_from_dict_of_to_dict_is_the_model(cls: type, data: st.DataObject) -> None:
    model = data.draw(strategy(cls))
    out = to_dict(model)
    only_json(out)
    back = from_dict(cls, json.loads(json.dumps(out)))
    assert back == model
    assert to_dict(back) == out


def test_wire_names_absent_fields_left_out_and_enums_as_ints() -> None:
    contact = ExternalContact(
        external_userid="wm1", name="Ann", type=ContactType.WECHAT, gender=Gender.FEMALE
    )
    detail = ExternalContactDetail(
        external_contact=contact, follow_user=(FollowUser(userid="u1", add_way=AddWay.CHANNELS),)
    )
    out = to_dict(detail)
    assert out["external_contact"] == {
        "external_userid": "wm1",
        "name": "Ann",
        "type": 1,
        "gender": 2,
    }
    assert type(out["external_contact"]["gender"]) is int
    assert "unionid" not in out["external_contact"]  # absent (None): left out, not null
    assert out["follow_user"][0]["add_way"] == 10 and "state" not in out["follow_user"][0]
    assert type(out["follow_user"][0]["add_way"]) is int


def test_an_answer_reads_back_as_itself() -> None:
    sample = load("seed_externalcontact_get.json")
    detail = from_dict(ExternalContactDetail, sample)
    assert detail.external_contact.type is ContactType.WECOM
    assert isinstance(detail.follow_user[0].add_way, AddWay)
    assert from_dict(ExternalContactDetail, to_dict(detail)) == detail


def test_unknown_enum_values_stay_plain_ints_and_round_trip() -> None:
    detail = from_dict(
        ExternalContactDetail,
        {"external_contact": {"type": 9, "gender": "1"}, "follow_user": [{"add_way": 777}]},
    )
    assert type(detail.external_contact.type) is int and detail.external_contact.type == 9
    assert detail.external_contact.gender is Gender.MALE  # known: the member, even from "1"
    assert type(detail.follow_user[0].add_way) is int and detail.follow_user[0].add_way == 777
    out = to_dict(detail)
    assert out["external_contact"]["type"] == 9 and out["follow_user"][0]["add_way"] == 777
    assert from_dict(ExternalContactDetail, out) == detail


def test_every_enum_member_is_an_int_of_its_wire_value() -> None:
    for name in enums_module.__all__:
        cls = getattr(enums_module, name)
        assert issubclass(cls, enum.IntEnum) and cls.__doc__
        for member in cls:
            assert from_dict(KfMessage, {"origin": int(member)}).origin == int(member)
    assert kf.ORIGIN_CUSTOMER is KfOrigin.CUSTOMER


def test_a_message_without_a_model_is_written_as_wecom_sent_it() -> None:
    wire = {
        "msgid": "m1",
        "msgtype": "note",
        "origin": 3,
        "note": {"anything": [1, None, {"x": "y"}]},
    }
    page = from_dict(KfSyncPage, {"msg_list": [wire, {"msgid": "m2", "msgtype": "text"}]})
    message = page.msg_list[0]
    assert message.raw == wire and message.content is None
    out = to_dict(message)
    assert out.items() >= wire.items()  # the null inside raw kept: it is WeCom's
    assert set(out) - set(wire) <= {"open_kfid", "external_userid", "send_time", "servicer_userid"}
    assert to_dict(page)["msg_list"][0] == out
    assert from_dict(KfMessage, out).raw == out and from_dict(KfMessage, out) == message


def test_bad_input_is_typed() -> None:
    with pytest.raises(WeComInputError):
        to_dict({"a": 1})
    with pytest.raises(WeComInputError):
        from_dict(dict, {})  # type: ignore[type-var]
    with pytest.raises(WeComInputError):
        from_dict(ExternalContact, ["x"])  # type: ignore[arg-type]
    with pytest.raises(WeComDecodeError, match="gender"):
        from_dict(ExternalContact, {"gender": "male"})
