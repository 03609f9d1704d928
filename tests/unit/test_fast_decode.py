"""The fast decode path against the old one, over generated answers with WeCom's quirks.

The promise: whatever the answer, the fast path (msgspec straight into the models,
falling back to json + cattrs on any misfit) gives the model the old path gives,
or raises the error it raises, word for word. The old path is spelled out here as
it was before the fast path existed: ``decode_answer`` then ``decode``.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load
from wecom_async._converter import decode
from wecom_async._fast_decode import FastDecoder, FastPage, MergedPages, array_of, decode_page
from wecom_async._paging import array_field
from wecom_async.api.external_contact import _CustomerIds, _FollowUserIds
from wecom_async.api.kf import _AccountPage, _sync_page
from wecom_async.client import _Answer, decode_answer
from wecom_async.models import (
    ExternalContactDetail,
    KfAccount,
    KfCustomerBatch,
    KfServiceState,
    KfSyncPage,
    SchoolExternalContactDetail,
)

MODELS = [
    ExternalContactDetail,
    KfCustomerBatch,
    SchoolExternalContactDetail,
    KfSyncPage,
    KfServiceState,
]
PATH = "externalcontact/get"


def _nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A def, not a lambda: hypothesis reads the extend function's source to check
    # that it recurses, and cannot always find a lambda's.
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_value = st.recursive(scalars, _nest, max_leaves=8)

# What WeCom has been seen to send where the docs promise another type.
int_quirk = st.one_of(
    st.sampled_from(["1", "0", " 2 ", "-3", "07", "x", "", "1.5", "١"]),
    st.sampled_from([1.0, 2.5, -0.0]),
    st.booleans(),
    st.none(),
    st.integers(min_value=2**64, max_value=2**80),
)
str_quirk = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
    st.just("\ud800"),  # a lone surrogate, as json.loads makes of "\ud800"
)
container_quirk = st.one_of(st.none(), st.text(max_size=3), st.integers(), st.just({}))


def _optional_inner(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        others = [a for a in args if a is not type(None)]
        return others[0] if len(others) == 1 else None
    return None


def value_for(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """A JSON value for a field of type ``tp``: mostly fitting, sometimes a quirk."""
    inner = _optional_inner(tp)
    if inner is not None:
        return st.one_of(st.none(), value_for(inner, depth))
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        fits = st.lists(value_for(item, depth + 1), max_size=3 if depth < 2 else 1)
        return st.one_of(fits, fits, container_quirk)
    if origin in (Mapping, dict) or tp is Mapping:
        return st.one_of(st.dictionaries(st.text(max_size=5), json_value, max_size=3), json_value)
    if attrs.has(tp):
        return st.one_of(document(tp, depth + 1), document(tp, depth + 1), container_quirk)
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        # Known values, unknown ones (kept as plain ints by the lenient converter).
        known = st.sampled_from([member.value for member in tp])
        return st.one_of(known, known, st.integers(min_value=-5, max_value=99), int_quirk)
    if tp is bool:
        return st.one_of(st.booleans(), st.booleans(), st.sampled_from([0, 1, 2, "true"]))
    if tp is int:
        fits = st.integers(min_value=-(2**63), max_value=2**63)
        return st.one_of(fits, fits, fits, int_quirk)
    if tp is float:
        fits = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers())
        return st.one_of(fits, fits, st.sampled_from(["1.5", True, None]))
    if tp is str:
        return st.one_of(st.text(max_size=12), st.text(max_size=12), st.text(), str_quirk)
    raise AssertionError(f"no strategy for {tp!r}")


def document(cls: type, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object for ``cls``: each field present or not, fitting or quirky, plus strangers."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: value_for(hints[f.name], depth) for f in attrs.fields(cls)}
    known = st.fixed_dictionaries({}, optional=fields)
    unknown = st.dictionaries(st.sampled_from(["zz", "extra_field", "Name", ""]), json_value)
    return st.builds(lambda k, u: {**u, **k}, known, unknown)


errcode = st.one_of(st.just(0), st.just(0), st.sampled_from([45009, -1, 40014, "0", None, 0.0]))


@st.composite
def answer(draw: st.DrawFn, cls: type) -> bytes:
    """An answer's bytes: the model's fields, errcode or none, a cursor or not."""
    doc = draw(document(cls))
    if draw(st.booleans()):
        doc["errcode"] = draw(errcode)
        doc["errmsg"] = draw(st.sampled_from(["ok", "busy", 3]))
    if draw(st.booleans()):
        doc["next_cursor"] = draw(st.one_of(st.text(max_size=4), st.none(), st.integers()))
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def outcome(fn: Callable[[], Any]) -> tuple[str, str]:
    """What a decoding did: the model's full repr (raw and classes included), or the error."""
    try:
        return ("model", repr(fn()))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def old_path(body: bytes) -> dict[str, Any]:
    return decode_answer(_Answer(200, body, None), PATH, lambda text: text)


def fast_path(cls: type, body: bytes) -> dict[str, Any]:
    return FastDecoder(cls).answer(200, body, lambda: old_path(body))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_answer_decodes_alike_on_both_paths(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(MODELS))
    body = data.draw(answer(cls))
    old = outcome(lambda: decode(old_path(body), cls, path=PATH))
    new = outcome(lambda: decode_page(fast_path(cls, body), cls, path=PATH))
    assert new == old


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(answer(KfSyncPage), min_size=1, max_size=1))
def test_sync_pages_keep_the_same_raw_messages(bodies: list[bytes]) -> None:
    """kf/sync_msg keeps an unmodelled msgtype's JSON in raw; the fast path must too."""
    body = bodies[0]
    old = outcome(lambda: _sync_page(old_path(body), "kf/sync_msg"))
    new = outcome(lambda: _sync_page(fast_path(KfSyncPage, body), "kf/sync_msg"))
    assert new == old


def old_get(bodies: list[bytes]) -> ExternalContactDetail:
    """``external_contact.get``'s merge as it was: arrays joined as JSON, then decoded."""
    first: dict[str, Any] | None = None
    follow_user: list[Any] = []
    for body in bodies:
        page = old_path(body)
        if first is None:
            first = page
        follow_user.extend(array_field(page, "follow_user", PATH))
    assert first is not None
    return decode({**first, "follow_user": follow_user}, ExternalContactDetail, path=PATH)


def new_get(bodies: list[bytes]) -> ExternalContactDetail:
    merged = MergedPages(ExternalContactDetail, ("follow_user",), path=PATH)
    for body in bodies:
        merged.add(fast_path(ExternalContactDetail, body))
    return merged.result()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(answer(ExternalContactDetail), min_size=1, max_size=3))
def test_cursor_pages_merge_alike_on_both_paths(bodies: list[bytes]) -> None:
    """A misfit on any page: the merged answer is decoded, and reported, as before."""
    assert outcome(lambda: new_get(bodies)) == outcome(lambda: old_get(bodies))


def old_batch(bodies: list[bytes]) -> KfCustomerBatch:
    """``kf.batchget_customers``'s merge as it was: every chunk answered first (gather_all)."""
    pages = [old_path(body) for body in bodies]
    merged: dict[str, list[Any]] = {"customer_list": [], "invalid_external_userid": []}
    for page in pages:
        for key, items in merged.items():
            items.extend(array_field(page, key, PATH))
    return decode(merged, KfCustomerBatch, path=PATH)


def new_batch(bodies: list[bytes]) -> KfCustomerBatch:
    pages = [fast_path(KfCustomerBatch, body) for body in bodies]
    merged = MergedPages(KfCustomerBatch, ("customer_list", "invalid_external_userid"), path=PATH)
    for page in pages:
        merged.add(page)
    return merged.result()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(answer(KfCustomerBatch), min_size=1, max_size=3))
def test_kf_chunks_merge_alike_on_both_paths(bodies: list[bytes]) -> None:
    assert outcome(lambda: new_batch(bodies)) == outcome(lambda: old_batch(bodies))


@pytest.mark.parametrize(
    ("sample", "cls"),
    [
        ("seed_externalcontact_get.json", ExternalContactDetail),
        ("skit_externalcontact_get.json", ExternalContactDetail),
        ("seed_kf_customer_batchget.json", KfCustomerBatch),
        ("skit_kf_customer_batchget.json", KfCustomerBatch),
    ],
)
def test_clean_samples_take_the_fast_path(sample: str, cls: type) -> None:
    """The published samples fit the models as they are: no detour through cattrs."""
    body = json.dumps(load(sample)).encode()
    page = FastDecoder(cls).answer(200, body, lambda: pytest.fail("fell back"))
    assert type(page) is FastPage
    assert repr(decode_page(page, cls, path=PATH)) == repr(decode(json.loads(body), cls))


@pytest.mark.parametrize(
    ("sample", "cls"),
    [
        ("seed_school_externalcontact_get.json", SchoolExternalContactDetail),
        ("wechatpy_externalcontact_get.json", ExternalContactDetail),
    ],
)
def test_numeric_mobiles_fall_back_to_the_same_model(sample: str, cls: type) -> None:
    """These samples send remark_mobiles as numbers: msgspec refuses, cattrs converts."""
    body = json.dumps(load(sample)).encode()
    fell_back: list[bool] = []

    def old() -> dict[str, Any]:
        fell_back.append(True)
        return old_path(body)

    page = FastDecoder(cls).answer(200, body, old)
    detail = decode_page(page, cls, path=PATH)
    assert fell_back == [True]
    mobiles = [m for f in detail.follow_user for m in f.remark_mobiles]
    assert mobiles and all(type(m) is str for m in mobiles)
    assert repr(detail) == repr(decode(json.loads(body), cls))


@pytest.mark.parametrize(
    "body",
    [
        b'{"errcode": 0, "errcode": 45009, "errmsg": "busy"}',  # the last key wins
        b'{"errcode": 45009, "errmsg": "api freq out of limit"}',
        b'\xef\xbb\xbf{"errcode": 0, "service_state": 1}',  # a BOM: json.loads takes it
        b'{"service_state": 1, "zz": ' + b"[" * 3000 + b"]" * 3000 + b"}",  # too deep for json
        b'{"service_state": NaN}',
        b"[]",
        b"",
    ],
)
def test_odd_bodies_decode_alike(body: bytes) -> None:
    old = outcome(lambda: decode(old_path(body), KfServiceState, path=PATH))
    new = outcome(lambda: decode_page(fast_path(KfServiceState, body), KfServiceState, path=PATH))
    assert new == old


# The answers that are one array: the old path read the array with array_field and
# decoded it as a tuple; array_of must give the same ids or accounts, or error.
ARRAY_ANSWERS = [
    (_CustomerIds, "external_userid", str),
    (_FollowUserIds, "follow_user", str),
    (_AccountPage, "account_list", KfAccount),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_array_answers_decode_alike_on_both_paths(data: st.DataObject) -> None:
    cls, key, item = data.draw(st.sampled_from(ARRAY_ANSWERS))
    body = data.draw(answer(cls))

    def old() -> tuple[Any, ...]:
        page = old_path(body)
        return decode(array_field(page, key, PATH), tuple[item, ...], path=PATH)  # type: ignore[valid-type]

    assert outcome(lambda: array_of(fast_path(cls, body), key, item, path=PATH)) == outcome(old)


@pytest.mark.parametrize(("cls", "key", "item"), ARRAY_ANSWERS)
def test_clean_array_answers_take_the_fast_path(cls: type, key: str, item: type) -> None:
    values: list[Any] = ["wmA", "wmB"] if item is str else [{"open_kfid": "wk1", "name": "A"}]
    body = json.dumps({"errcode": 0, "errmsg": "ok", key: values}).encode()
    page = fast_path(cls, body)
    assert type(page) is FastPage
    assert array_of(page, key, item, path=PATH) == decode(values, tuple[item, ...], path=PATH)  # type: ignore[valid-type]
