"""The fast decode path: an answer's bytes straight into the attrs models, with msgspec.

Today's path parses with ``json.loads`` and structures the dicts with cattrs, in
Python; msgspec parses and builds the attrs models in one pass, in C, reading
``errcode`` and ``next_cursor`` on the way. It is strict where cattrs is lenient
(``"1"`` for an int, ``null`` or a number for a string, an unknown IntEnum value):
any answer it does not take as it is goes the old way, ``json.loads`` and
:mod:`wecom_async._converter`, which stays the one place where leniency is
defined. So the models, and the errors, are those of the old path; only the cost
changes for the answers that fit.

An endpoint asks for it with ``CallOptions(fast=FastDecoder(Model))``; the decode
layer then hands back a :class:`FastPage` (the model's fields as models, plus
``errcode`` and ``next_cursor``) or, when the fast path declined, the dict of the
old path. :func:`decode_page` and :class:`MergedPages` turn either into the model.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs
import msgspec

from ._converter import decode
from ._paging import array_field

__all__ = ["FastDecoder", "FastPage", "MergedPages", "array_of", "decode_page"]

T = TypeVar("T")

#: The fields every answer may carry besides the model's own.
_ANSWER_FIELDS: tuple[tuple[str, type, object], ...] = (
    ("errcode", int, 0),
    ("next_cursor", str, ""),
)


class FastPage(dict[str, Any]):
    """An answer the fast path took: the model's fields (as models), ``errcode``, ``next_cursor``.

    A dict, so that the pagers read ``next_cursor`` and the items as from any
    answer; ``body`` keeps the bytes, for an old-path merge with a page that did
    not fit.
    """

    __slots__ = ("body",)

    body: bytes

    def json(self) -> dict[str, Any]:
        """The answer as the old path decodes it (``json.loads`` of the same bytes)."""
        data: dict[str, Any] = json.loads(self.body)
        return data


class FastDecoder(Generic[T]):
    """Decodes answers of one model on the fast path, or declines to the old one."""

    __slots__ = ("_decoder", "model")

    def __init__(self, model: type[T]) -> None:
        self.model = model
        self._decoder: msgspec.json.Decoder[Any] | None = None

    def _answer_type(self) -> Any:
        """A struct of the model's fields and the answer's own, with the model's defaults."""
        hints = typing.get_type_hints(self.model)
        fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
        for field in _attrs_fields(self.model):
            default = field.default
            if default is attrs.NOTHING:
                fields.append((field.name, hints[field.name]))
            elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = msgspec.field(default_factory=default.factory)  # type: ignore[union-attr]
                fields.append((field.name, hints[field.name], default))
            else:
                fields.append((field.name, hints[field.name], default))
        own = {field.name for field in _attrs_fields(self.model)}
        fields += [extra for extra in _ANSWER_FIELDS if extra[0] not in own]
        return msgspec.defstruct(f"{self.model.__name__}Answer", fields, kw_only=True)

    def answer(
        self, status: int, body: bytes, old_path: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The decode layer for this model: a :class:`FastPage`, or ``old_path()``'s answer.

        Only a 2xx answer with errcode 0 that fits the model exactly is taken;
        anything else (an error answer included) goes to ``old_path``, the
        ordinary decode layer, which says what is wrong exactly as it always has.
        """
        if 200 <= status < 300:
            decoder = self._decoder
            if decoder is None:  # built on first use, so that importing stays cheap
                decoder = self._decoder = msgspec.json.Decoder(self._answer_type())
            try:
                decoded = decoder.decode(body)
            except Exception:  # any misfit at all: the old path decides, lenient or not
                decoded = None  # decided below, so that its error has no __context__
            if decoded is not None and decoded.errcode == 0:
                page = FastPage(msgspec.structs.asdict(decoded))
                page.body = body
                return page
        return old_path()


def _attrs_fields(cls: type[Any]) -> tuple[attrs.Attribute[Any], ...]:
    fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(cls)
    return fields


#: Each model's field names: attrs.fields() checks its argument on every call.
_NAMES: dict[type, tuple[str, ...]] = {}


def _fields_of(page: Mapping[str, Any], cls: type[T]) -> dict[str, Any]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(field.name for field in _attrs_fields(cls))
    return {name: page[name] for name in names}


def array_of(page: dict[str, Any], key: str, item: type[T], *, path: str) -> tuple[T, ...]:
    """An answer's array ``key`` of ``item``: as the fast path built it, or decoded the old way.

    For answers whose model is one array (``external_userid``, ``account_list``):
    absent or null is empty, any other type than an array is a decode error.
    """
    if type(page) is FastPage:
        items: tuple[T, ...] = page[key]
        return items
    return decode(array_field(page, key, path), tuple[item, ...], path=path)  # type: ignore[valid-type]


def decode_page(page: dict[str, Any], cls: type[T], *, path: str) -> T:
    """``cls`` from one answer, whichever path decoded it."""
    if type(page) is FastPage:
        return cls(**_fields_of(page, cls))
    return decode(page, cls, path=path)


class MergedPages(Generic[T]):
    """``cls`` from several answers: the first one's fields, with ``arrays`` concatenated.

    Pages are added in order. When every page came by the fast path the models
    are joined as they are; otherwise every page is merged as JSON and decoded
    the old way, so a misfit is reported as it always was. An array field that
    is not an array raises as its page is added, before the next one is fetched,
    as it always has.
    """

    __slots__ = ("_arrays", "_cls", "_pages", "_path")

    def __init__(self, cls: type[T], arrays: tuple[str, ...], *, path: str) -> None:
        self._cls = cls
        self._arrays = arrays
        self._path = path
        self._pages: list[dict[str, Any]] = []

    def add(self, page: dict[str, Any]) -> None:
        """Take the next answer."""
        if type(page) is not FastPage:
            for key in self._arrays:
                array_field(page, key, self._path)
        self._pages.append(page)

    def result(self) -> T:
        """The model of all the pages added."""
        pages, cls = self._pages, self._cls
        if all(type(page) is FastPage for page in pages):
            fields = _fields_of(pages[0], cls)
            if len(pages) > 1:
                for key in self._arrays:
                    fields[key] = tuple(item for page in pages for item in page[key])
            return cls(**fields)
        answers = [page.json() if isinstance(page, FastPage) else page for page in pages]
        merged = dict(answers[0])
        arrays: dict[str, list[Any]] = {key: [] for key in self._arrays}
        for answer in answers:
            for key, items in arrays.items():
                items.extend(array_field(answer, key, self._path))
        merged.update(arrays)
        return decode(merged, cls, path=self._path)
