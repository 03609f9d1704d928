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
leave 64 bits); anything orjson refuses falls back; a written value with a number
that has a fraction or exponent, or a ``null``, is written again by the stdlib.
The checks may send a harmless value (a string ``"v1.5"`` after a comma) down
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

_LONG_DIGITS = re.compile(rb"\d{19}")
#: In orjson's compact output a number or null starts the text or follows ":", ","
#: or "[". Some string text matches too, which costs only the stdlib's time.
_FLOAT_OR_NULL = re.compile(rb"(?:\A|[:,\[])(?:-?\d+[.eE]|null)")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(body: bytes | str) -> Any:
    """``json.loads(body)``: the same value, or the same error.

    One difference: nesting deeper than Python's recursion limit but within
    orjson's 1024 levels is parsed instead of raising RecursionError.
    """
    if orjson is not None:
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        if not _LONG_DIGITS.search(raw):
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass  # the stdlib decides: it may accept it, or raises its own error
    return json.loads(body)


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
            if not _FLOAT_OR_NULL.search(raw):
                return raw.decode("utf-8")
    return _stdlib_dumps(value)
