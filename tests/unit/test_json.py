"""The orjson path must give exactly what the stdlib gives: values, errors and bytes.

The reference is the sync's path before orjson (json.loads in the call path, then
json.dumps of each pair with lone surrogates escaped), written out here. Each
property runs with orjson and with it switched off (the stdlib fallback).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wecom_async import _json
from wecom_async.sync import _rows
from wecom_async.testing import FakeCorp

_SURROGATE = re.compile("[\ud800-\udfff]")


def reference_dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def reference_rows(body: bytes, userids: list[str]) -> list[tuple[str, str, str, str]]:
    rows = []
    for item in json.loads(body)["external_contact_list"]:
        contact, info = item["external_contact"], item["follow_info"]
        esc = _SURROGATE.sub
        rows.append(
            (
                esc(lambda m: f"\\u{ord(m.group()):04x}", contact["external_userid"]),
                reference_dumps(contact),
                esc(lambda m: f"\\u{ord(m.group()):04x}", info["userid"]),
                reference_dumps(info),
            )
        )
    return rows


@contextmanager
def json_path(fast: bool) -> Iterator[None]:
    with mock.patch.object(_json, "orjson", orjson if fast else None):
        yield


# WeCom's quirks: half an emoji, control characters, line separators, emoji,
# non-ASCII, characters JSON must escape.
QUIRKS = [
    "Tom\ud83d",
    "\udc00",
    "a\ud83d\ude00b",
    "\x00\x01\x08\t\n\x0c\r\x1f\x7f",
    "\u2028\u2029",
    "😀",
    "张三",
    '"\\/',
    "\ufeff",
    "v1.5, null",
    "1234567890123456789012",
]
texts = st.one_of(
    st.text(),
    st.sampled_from(QUIRKS),
    st.lists(st.one_of(st.text(max_size=3), st.sampled_from(QUIRKS)), max_size=4).map("".join),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.floats(),  # NaN and ±Infinity too: json.loads takes them
    st.sampled_from([1e-7, 1e16, 1e22, 5e-324, -0.0, 1e15, 0.1]),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
fields = st.dictionaries(texts, values, max_size=5)


@st.composite
def pages(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    userids = draw(st.lists(texts.filter(bool), min_size=1, max_size=3, unique=True))
    items = []
    for _ in range(draw(st.integers(0, 4))):
        contact = {**draw(fields), "external_userid": draw(texts.filter(bool))}
        info = {**draw(fields), "userid": draw(st.sampled_from(userids))}
        items.append({"external_contact": contact, "follow_info": info})
    page = {"errcode": 0, "errmsg": "ok", "external_contact_list": items, "next_cursor": ""}
    text = json.dumps(
        page, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
    )
    # Text with lone surrogates as raw (invalid) UTF-8: json.loads takes it too.
    return text.encode("utf-8", "surrogatepass"), userids


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])
@settings(max_examples=300, deadline=None)
@given(page=pages())
def test_a_page_gives_byte_identical_rows(fast: bool, page: tuple[bytes, list[str]]) -> None:
    body, userids = page
    with json_path(fast):
        rows, skipped = _rows(_json.loads(body), userids)
    assert skipped == 0
    assert rows == reference_rows(body, userids)
    for row in rows:
        for text in row:
            text.encode("utf-8")  # no lone surrogate left: always valid UTF-8


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])
@settings(max_examples=300, deadline=None)
@given(value=values, cut=st.integers(0, 200), ascii_only=st.booleans())
def test_loads_gives_json_loads_value_or_error(
    fast: bool, value: Any, cut: int, ascii_only: bool
) -> None:
    whole = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    for body in (whole, whole[:cut], b"\xef\xbb\xbf" + whole, whole.replace(b'"', b"'")):
        try:
            expected: Any = repr(json.loads(body))  # repr: tells 1 from 1.0, and NaN == NaN
        except (ValueError, RecursionError) as exc:
            expected = type(exc)
        with json_path(fast):
            try:
                got: Any = repr(_json.loads(body))
            except (ValueError, RecursionError) as exc:
                got = type(exc)
        assert got == expected, body


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])
@settings(max_examples=300, deadline=None)
@given(value=values)
def test_dumps_gives_the_stdlib_bytes(fast: bool, value: Any) -> None:
    with json_path(fast):
        assert _json.dumps(value) == reference_dumps(value)


def test_the_fake_corps_pairs_take_the_fast_path() -> None:
    """Else orjson would cost its checks and save nothing."""
    corp = FakeCorp(customers=300, seed=3)
    pairs = [
        (corp.contact(i), corp.follow_info(i, m)) for m in range(5) for i in corp.customers_of(m)
    ]
    with mock.patch.object(_json, "_stdlib_dumps", side_effect=AssertionError("slow path")):
        for contact, info in pairs:
            assert _json.dumps(contact) == reference_dumps(contact)
            assert _json.dumps(info) == reference_dumps(info)
