"""JSON in and out of the hot paths, through orjson when installed, the stdlib otherwise.

With the ``fast`` extra (orjson) an answer is parsed and a sync's pairs are written
in C, but every result is exactly what the stdlib gives: where orjson would differ,
the stdlib does the work. orjson differs on

- integers beyond 64 bits: parsed as floats (silently), refused when written;
- lone UTF-16 surrogates (``"Tom\\ud83d"``, an emoji WeCom cut in half), a UTF-8
  BOM, ``NaN``/``Infinity``, numbers too big for a double: refused when parsed;
- floats written in other notations (``1e-7`` for the stdlib's ``1e-07``,
  ``0.000015…`` for ``1.5…e-05``), and NaN/Infinity written as ``null``.

Bodies with a run of 19 digits are parsed by the stdlib (the only way a number can
leave 64 bits); anything orjson refuses falls back; a written value that may hold
a float (a digit followed by ``.``, ``e`` or ``E``) or a ``null`` is written again
by the stdlib. The checks may send a harmless value (a string ``"v1.5"``) down
the slower path; never the other way.
"""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the stdlib path is tested by switching it off
    orjson = None  # type: ignore[assignment]

__all__ = ["dumps", "escape_surrogates", "loads"]

#: Every digit as "0": a long number is then a fixed byte string, which ``in`` finds
#: at memchr speed (a regex over a page took longer than parsing it).
_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19
#: Also ".", "e" and "E" as ".": a float is then "0." after a run of "0"s that starts
#: the text or follows ":", ",", "[" or "-".
_FLOAT_MARKS = bytes.maketrans(b"123456789eE", b"000000000..")
_BEFORE_NUMBER = b":,[-"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(body: bytes | str) -> Any:
    """``json.loads(body)``: the same value, or the same error.

    One difference: nesting deeper than Python's recursion limit but within
    orjson's 1024 levels is parsed instead of raising RecursionError.
    """
    if orjson is not None:
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        if _LONG_DIGITS not in raw.translate(_AS_ZEROS):
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass  # the stdlib decides: it may accept it, or raises its own error
    return json.loads(body)


def _float_or_null(raw: bytes) -> bool:
    """Whether orjson's compact output may hold a float or a null.

    Ids such as ``wm5eX`` put a digit before an "e" in most values, so each such
    place is looked at: a float's digits start the text or follow ":", ",", "[" or
    "-". A string such as ``"a,1.5"`` matches too, which only costs the stdlib's time.
    """
    if b"null" in raw:
        return True
    marks = raw.translate(_FLOAT_MARKS)
    i = marks.find(b"0.")
    while i != -1:
        while i and marks[i - 1] == 0x30:  # back to the first digit of the run
            i -= 1
        if not i or marks[i - 1] in _BEFORE_NUMBER:
            return True
        i = marks.find(b"0.", marks.index(b".", i) + 1)
    return False


def escape_surrogates(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate as its ``\\uXXXX`` escape (valid UTF-8)."""
    if text.isascii() or not _LONE_SURROGATE.search(text):
        return text
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _stdlib_dumps(value: Any) -> str:
    # json.loads turns "\ud83d" into a lone surrogate, which no UTF-8 encoder (nor
    # SQLite) takes; put the escape back, which reads back to the same string.
    return escape_surrogates(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII text as is and lone surrogates escaped.

    Byte for byte ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``
    with each lone surrogate written as its ``\\uXXXX`` escape.
    """
    if orjson is not None:
        try:
            raw = orjson.dumps(value)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate or an integer beyond 64 bits
        else:
            if not _float_or_null(raw):
                return raw.decode("utf-8")
    return _stdlib_dumps(value)
