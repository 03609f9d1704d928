"""Fuzzing the decoders: whatever WeCom sends, decoding raises WeComDecodeError or nothing."""

from __future__ import annotations

import contextlib
import copy
import enum
import types
import typing
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load
from wecom_async import WeComDecodeError
from wecom_async._converter import _FAST, LENIENT, decode
from wecom_async.client import _Answer, decode_answer
from wecom_async.errors import WeComAPIError
from wecom_async.models import (
    BatchGetByUserPage,
    ExternalContactDetail,
    KfCustomerBatch,
    SchoolExternalContactDetail,
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

SAMPLES = [
    (load("seed_externalcontact_get.json"), ExternalContactDetail),
    (load("seed_school_externalcontact_get.json"), SchoolExternalContactDetail),
    (load("seed_kf_customer_batchget.json"), KfCustomerBatch),
    (load("skit_externalcontact_batch_get_by_user.json"), BatchGetByUserPage),
]


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Any, type]:
    """A seed answer with fields removed, added, nulled or retyped."""
    sample, model = draw(st.sampled_from(SAMPLES))
    doc = copy.deepcopy(sample)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        candidates = paths(doc)
        where = draw(st.sampled_from(candidates))
        if not where:
            doc = draw(json_value)
            continue
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        key = where[-1]
        action = draw(st.sampled_from(["delete", "null", "retype", "extra"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "null":
            parent[key] = None
        elif action == "retype":
            parent[key] = draw(json_value)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_value)
    return doc, model


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def conforms(value: Any, tp: Any) -> bool:
    """Whether a decoded value has exactly the type its model declares, all the way down."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and all(conforms(v, args[0]) for v in value)
    if attrs.has(tp):
        hints = typing.get_type_hints(tp)
        return type(value) is tp and all(
            conforms(getattr(value, f.name), hints[f.name]) for f in attrs.fields(tp)
        )
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return type(value) is (tp if value in tp._value2member_map_ else int)
    return type(value) is tp  # str and int: never a bool, a float or a list in disguise


def outcome(converter: Any, doc: Any, model: type) -> tuple[str, Any]:
    try:
        return "ok", converter.structure(doc, model)
    except Exception as exc:
        return "error", type(exc).__name__


def check(doc: Any, model: type) -> None:
    """decode() returns a model of exactly the declared types, or raises WeComDecodeError;
    and the fast converter it tries first agrees with the detailed one."""
    try:
        result = decode(doc, model, path="fuzz")
    except WeComDecodeError:
        result = None
    else:
        assert conforms(result, model)
        assert decode(LENIENT.unstructure(result), model) == result  # decoding is stable
    fast, detailed = outcome(_FAST, doc, model), outcome(LENIENT, doc, model)
    assert (fast[0], fast[1] if fast[0] == "ok" else None) == (
        detailed[0],
        detailed[1] if detailed[0] == "ok" else None,
    )


@FUZZ
@given(mutated())
def test_mutated_answers_decode_or_raise_decode_error(case: tuple[Any, type]) -> None:
    check(*case)


@FUZZ
@given(json_value, st.sampled_from([m for _, m in SAMPLES] + [tuple[str, ...]]))
def test_arbitrary_json_decodes_or_raises_decode_error(doc: Any, model: type) -> None:
    check(doc, model)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bodies_parse_or_raise_decode_error(body: bytes) -> None:
    with contextlib.suppress(WeComDecodeError, WeComAPIError):
        decode_answer(_Answer(200, body, None), "fuzz", str)


def test_deeply_nested_json_is_a_decode_error_not_a_crash() -> None:
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    with pytest.raises(WeComDecodeError, match="not JSON"):
        decode_answer(_Answer(200, body, None), "deep", str)
