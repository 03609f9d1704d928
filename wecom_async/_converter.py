"""The cattrs converters that turn WeCom's JSON into the attrs models.

Production decoding is lenient, because WeCom adds and drops fields over time and
its samples disagree with its own answers:

- unknown keys are ignored, absent keys take the model's default;
- ``null`` counts as absent (community reports show ``"position": null``);
- an int field accepts a decimal string (``"gender": "1"``);
- a str field accepts a number (the school sample's ``remark_mobiles`` are numbers);
- a sequence field accepts only a JSON array, so a stray string never becomes a
  tuple of characters.

Everything else that does not fit raises :class:`~wecom_async.errors.WeComDecodeError`
from :func:`decode`. The strict converter (unknown keys forbidden) exists for tests,
so that a model that drifts from its fixtures is caught.
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from .errors import WeComDecodeError

if sys.version_info < (3, 11):  # cattrs depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

T = TypeVar("T")

__all__ = ["LENIENT", "STRICT", "decode"]


def _structure_int(value: object, _: type) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit() and text.isascii():
            return int(text)
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {_describe(value)}")


def _structure_bool(value: object, _: type) -> bool:
    # Without its own hook a bool field would take the int hook, which refuses
    # JSON's true/false (kf/account/list answers manage_privilege as a bool).
    if type(value) is bool:
        return value
    if value in (0, 1) and type(value) is int:
        return bool(value)
    raise ValueError(f"expected a boolean, got {_describe(value)}")


def _structure_str(value: object, _: type) -> str:
    if type(value) is str:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # The school sample sends remark_mobiles as JSON numbers.
        return str(value)
    raise ValueError(f"expected a string, got {_describe(value)}")


def _describe(value: object) -> str:
    """A misfit value, worded so that it cannot show a secret.

    A server may echo the request (its access token, a corp secret) into any
    field, so text and containers are described by their size only; numbers,
    booleans and null, which cannot hold one, are shown as they are.
    """
    if value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
        return f"{type(value).__name__} {text[:37] + '...' if len(text) > 40 else text}"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, (list, dict)):
        return f"{type(value).__name__} of {len(value)} items"
    return type(value).__name__


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _optional_inner(tp: Any) -> Any:
    """``X`` for ``X | None`` (one type besides None), else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 2:
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:
            return others[0]
    return None


def _structure_int_enum(value: object, tp: type[enum.IntEnum]) -> int:
    # A value WeCom added after this release stays a plain int rather than
    # failing the whole answer (models/enums.py).
    number = _structure_int(value, int)
    member: int = tp._value2member_map_.get(number, number)  # type: ignore[assignment]
    return member


def _make_converter(*, forbid_extra_keys: bool, detailed: bool) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=forbid_extra_keys, detailed_validation=detailed)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(enum.IntEnum, _structure_int_enum)  # ahead of int's and Enum's
    # An unknown value is a plain int in a field annotated with the enum: write
    # the number, whichever it is (cattrs' own enum hook would ask for .value).
    conv.register_unstructure_hook(enum.IntEnum, int)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(bool, _structure_bool)

    def tuple_hook_factory(tp: Any) -> Callable[[object, type], tuple[Any, ...]]:
        item_type = typing.get_args(tp)[0]
        item_hook = conv.get_structure_hook(item_type)

        def structure_tuple(value: object, _: type) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise ValueError(f"expected an array, got {_describe(value)}")
            return tuple([item_hook(item, item_type) for item in value])

        return structure_tuple

    conv.register_structure_hook_factory(_is_homogeneous_tuple, tuple_hook_factory)

    def optional_hook_factory(tp: Any) -> Callable[[object, type], Any]:
        # cattrs' own Optional hook dispatches on every call; resolve the inner
        # hook once instead (decoding is on the hot path of every request).
        inner = _optional_inner(tp)
        inner_hook = conv.get_structure_hook(inner)

        def structure_optional(value: object, _: type) -> Any:
            return None if value is None else inner_hook(value, inner)

        return structure_optional

    conv.register_structure_hook_factory(
        lambda tp: _optional_inner(tp) is not None, optional_hook_factory
    )

    def attrs_hook_factory(cls: type[T]) -> Callable[[object, type], T]:
        generated = make_dict_structure_fn(cls, conv)

        def structure_model(value: object, tp: type) -> T:
            # type() first: the ABC check behind isinstance(Mapping) is slow, and
            # json.loads only ever makes dicts.
            if type(value) is not dict and not isinstance(value, Mapping):
                raise ValueError(f"expected an object for {cls.__name__}, got {_describe(value)}")
            if None in value.values():
                value = {k: v for k, v in value.items() if v is not None}
            return generated(value, tp)

        return structure_model

    conv.register_structure_hook_factory(attrs.has, attrs_hook_factory)
    return conv


LENIENT = _make_converter(forbid_extra_keys=False, detailed=True)
"""Production converter: unknown keys ignored; errors say where they are."""

_FAST = _make_converter(forbid_extra_keys=False, detailed=False)
"""LENIENT without the bookkeeping for error paths: tried first, since most answers fit."""

STRICT = _make_converter(forbid_extra_keys=True, detailed=True)
"""Test converter: an unknown key is an error, so fixture drift is caught."""


def decode(
    data: object, cls: type[T], *, path: str = "", converter: cattrs.Converter = LENIENT
) -> T:
    """Structure decoded JSON into ``cls``; any misfit raises WeComDecodeError."""
    if converter is LENIENT:
        try:
            return _FAST.structure(data, cls)
        except Exception:  # decoded again below, to say where it failed
            pass
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # the decoding boundary: every misfit becomes one error type
        where = f" from {path}" if path else ""
        raise WeComDecodeError(
            f"cannot decode {cls.__name__}{where}: {_summarise(exc)}", path=path
        ) from exc


def _summarise(exc: BaseException) -> str:
    """One line: where in the document the first misfit is, and what it is.

    cattrs nests exception groups one level per class or array, and notes each
    leaf with the attribute name or array index it belongs to.
    """
    where = ""
    while True:
        for note in getattr(exc, "__notes__", ()):
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            if name is not None:
                where += f".{name}"
            elif index is not None:
                where += f"[{index}]"
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        else:
            break
    text = str(exc) or type(exc).__name__
    return f"at {where.lstrip('.')}: {text}" if where else text
