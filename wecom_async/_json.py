"""JSON in and out of the hot paths, through orjson when installed, the stdlib otherwise.

With the ``fast`` extra (orjson) an answer is parsed and a sync's pairs are written
in C, but every result is exactly what the stdlib gives: where orjson would differ,
the stdlib does the work. orjson differs on

- integers beyond 64 bits: parsed as floats (silently), refused when written;
- lone UTF-16 surrogates (``"Tom\\ud83d"``, an emoji WeCom cut in half), a UTF-8
  BOM, ``NaN``/``Infinity``, numbers too big for a double: refused when parsed;
- floats written with a one-digit exponent (``1e-7`` where the stdlib writes
  ``1e-07``), and NaN/Infinity written as ``null``.

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

#: Every digit as "0": the checks below then look for fixed byte strings, which
#: runs at memchr speed where a regex over a page took longer than parsing it.
_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19
_FLOAT = re.compile(rb"[:,\[]-?[0-9]+[.eE]")
_NUMBER_START = b"-0123456789"
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

    A float is a number with a fraction or an exponent, which starts the text or
    follows ":", "," or "["; a string such as ``"a,1.5"`` matches too, which only
    costs the stdlib's time. Ids like ``wm5eX`` are common, so the regex runs only
    when the quick look finds a digit followed by ".", "e" or "E".
    """
    if b"null" in raw:
        return True
    zeros = raw.translate(_AS_ZEROS)
    if b"0." in zeros or b"0e" in zeros or b"0E" in zeros:
        # (A value that is a number itself starts with one of _NUMBER_START.)
        return _FLOAT.search(raw) is not None or raw[:1] in _NUMBER_START
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
