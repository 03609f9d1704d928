"""Models to and from WeCom's JSON: :func:`to_dict` and :func:`from_dict`.

One shape wherever a model becomes JSON (the CLI prints it, a web service returns
it, a script stores it): WeCom's own wire names, absent fields left out, enums as
plain numbers. Reading it back goes through the same lenient decoding as an answer.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs

from ._converter import decode
from .errors import WeComInputError
from .models.kf import KF_TYPED_MSGTYPES, KfMessage, KfSyncPage

__all__ = ["from_dict", "to_dict"]

T = TypeVar("T")


def to_dict(model: object) -> dict[str, Any]:
    """A model as WeCom's JSON: wire names, ``None`` fields left out, enums as ints.

    The result holds only dicts, lists, strings, numbers and booleans, ready for
    ``json.dumps`` or a web framework's JSON response, and
    ``from_dict(type(model), to_dict(model)) == model``. A
    :class:`~wecom_async.models.KfMessage` of a msgtype without a model is written
    as WeCom sent it (its ``raw``).
    """
    if not attrs.has(type(model)):
        raise WeComInputError(f"to_dict takes a wecom_async model, got {type(model).__name__}")
    data: dict[str, Any] = _plain(model)
    return data


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """The model ``cls`` from WeCom's JSON (or :func:`to_dict`'s output).

    Decoding is as lenient as for an answer: unknown keys ignored, absent or
    ``null`` fields take their defaults, ``"1"`` read as 1. A value that cannot
    fit raises :class:`~wecom_async.WeComDecodeError`.
    """
    if not (isinstance(cls, type) and attrs.has(cast(type, cls))):  # cast: keep cls a type[T]
        raise WeComInputError(f"from_dict takes a wecom_async model class, got {cls!r}"[:120])
    if not isinstance(data, Mapping):
        raise WeComInputError(f"from_dict takes a mapping, got {type(data).__name__}")
    model: T = decode(dict(data), cls, path=cls.__name__)
    return keep_raw(model, data)


def keep_raw(value: T, data: Mapping[str, Any]) -> T:
    """``value`` with each message of a msgtype without a model keeping its JSON."""
    if isinstance(value, KfMessage):
        if value.msgtype in KF_TYPED_MSGTYPES:
            return value
        return cast(T, attrs.evolve(value, raw=data))
    if isinstance(value, KfSyncPage) and any(
        m.msgtype not in KF_TYPED_MSGTYPES for m in value.msg_list
    ):
        raw = data["msg_list"]  # decoded already, so an array of objects
        messages = tuple(keep_raw(m, raw[i]) for i, m in enumerate(value.msg_list))
        return cast(T, attrs.evolve(value, msg_list=messages))
    return value


def _plain(value: object) -> Any:
    """JSON-ready data for a model, a tuple or a leaf; ``None`` fields dropped."""
    cls = type(value)
    if attrs.has(cls):
        is_message = isinstance(value, KfMessage)
        raw = value.raw if isinstance(value, KfMessage) else None
        # A message kept whole: as WeCom sent it, with the typed fields (which a
        # caller may have evolved) on top.
        out: dict[str, Any] = copy.deepcopy(dict(raw)) if raw is not None else {}
        for field in attrs.fields(cls):
            item = getattr(value, field.name)
            if item is not None and not (is_message and field.name == "raw"):
                out[field.name] = _plain(item)
        return out
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, enum.IntEnum):
        return int(value)
    return value
