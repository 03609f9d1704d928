"""A small, safe XML reader for WeCom's callback bodies.

WeCom's callback XML is flat (``<xml><Name>value</Name>...</xml>``, a few lists one
level down), UTF-8, and never has a DOCTYPE. So :func:`check_prolog` lets through
only whitespace and an XML declaration that names UTF-8 (or none) before the root
element; everything else is refused before any parser runs. A DOCTYPE is only legal
in the prolog, so with it refused there can be no entity declarations, hence no
entity expansion ("billion laughs") and no external entities; expat also refuses
one after the root has started, and the fallback parser refuses one on its own.

Most documents are read by one regular expression (:func:`_flat`), element by
element, with no Python call per parse event; anything it does not take whole (a
nested list, an entity reference, a comment, an attribute, mixed content) goes to
expat, which builds the same fields. ``tests/callback/test_xml_agreement.py`` holds
the two to the same answer.
"""

from __future__ import annotations

import re
from typing import NoReturn
from xml.parsers import expat

import attrs

from ..errors import WeComCallbackError

__all__ = ["Element", "check_prolog", "parse_fields", "parse_xml"]

#: Fields: the text of each top-level element, by tag (the first one of a tag wins).
Fields = dict[str, str]
#: Lists: for a top-level element with child elements, its children's texts.
Lists = dict[str, tuple[str, ...]]

_WS = b" \t\r\n"
# The XML declaration as XML 1.0 allows it (2.8): version, then optionally
# encoding and standalone, in that order, lower case; anything else is refused.
_DECL = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"1\.[0-9]+\"|'1\.[0-9]+')"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:\"([A-Za-z][\w.-]*)\"|'([A-Za-z][\w.-]*)'))?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:\"(?:yes|no)\"|'(?:yes|no)'))?[ \t\r\n]*\?>"
)


def check_prolog(data: bytes, what: str) -> None:
    """Refuse anything but whitespace and a UTF-8 XML declaration before the root.

    Costs a few byte comparisons whatever ``data`` holds: it looks only at the start.

    Raises:
        WeComCallbackError: ``data`` starts with a byte-order mark (UTF-16 or
            UTF-32), a DOCTYPE, a comment, a processing instruction, or declares an
            encoding other than UTF-8; or does not start with an element at all.
    """
    if data.startswith(b"<xml>"):  # how WeCom starts a document: nothing to look at
        return
    start = 0
    if data.startswith(b"<?xml"):  # only at the very start (XML 1.0, 2.8)
        decl = _DECL.match(data)
        if decl is None:
            raise WeComCallbackError(f"{what}: a malformed XML declaration")
        encoding = decl.group(1) or decl.group(2)
        if encoding is not None and encoding.lower() not in (b"utf-8", b"utf8"):
            raise WeComCallbackError(f"{what}: the XML declares an encoding other than UTF-8")
        start = decl.end()
    start += len(data) - start - len(data[start:].lstrip(_WS))
    if data.startswith(b"<!", start):
        raise WeComCallbackError(f"{what}: refused a DOCTYPE or comment before the root")
    if not (data.startswith(b"<", start) and data[start + 1 : start + 2].isalpha()):
        raise WeComCallbackError(f"{what}: not XML (no root element)")


# -- the fast path --

# Characters XML 1.0 does not allow in a document; expat refuses them, and so must
# the fast path, so that both agree on what is malformed.
_BAD = "\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"
# One top-level element: <Tag>text</Tag>, or <Tag>ws<![CDATA[...]]>ws</Tag>. Text
# without '<' or '&' is exactly its XML value (no entity to expand), but for line
# ends, which XML normalises to "\n" (done below, only when there is a "\r").
_S = "[ \t\r\n]*"
_NAME = r"[A-Za-z_][\w.-]*"
# CDATA's content up to its first "]]>", as greedy runs (a lazy ".*?" steps the
# regex engine once per character).
_CDATA = rf"<!\[CDATA\[[^\]{_BAD}]*(?:\](?!\]>)[^\]{_BAD}]*)*\]\]>"
# A leaf: an element with text or CDATA and no child; the items of a list.
_LEAF = rf"{_S}<(?P<leaf>{_NAME})>(?:{_S}{_CDATA}{_S}|[^<&{_BAD}]*)</(?P=leaf)>"
# Each top-level element whole (group 1), so that the lengths of what was found,
# added up, tell whether anything between the elements was skipped: one call into
# the regex engine for the whole document, not a Python step per element. Its value
# is CDATA (group 3), text (group 4), or a list of leaves (group 5).
_ELEMENTS = re.compile(
    rf"({_S}<({_NAME})>(?:{_S}({_CDATA}){_S}|([^<&{_BAD}]*)|((?:{_LEAF})+){_S})</\2>)",
    re.ASCII,
)
_ROOT = re.compile(rf"{_S}<({_NAME})>", re.ASCII)
_XML_SPACE = " \t\r\n"


def _text(cdata: str, plain: str) -> str | None:
    """An element's value as expat gives it; None for text XML does not allow."""
    if cdata:
        value = cdata[9:-3]
    elif "]]>" in plain:
        return None  # not allowed in XML text: expat words the error
    else:
        value = plain.strip()
    return value if "\r" not in value else _newlines(value)


def _flat(text: str, start: int) -> tuple[Fields, Lists] | None:
    """The fields and lists of a document of the shape WeCom sends (flat, and lists
    of leaves one level down), or None when the regex does not take it whole."""
    root = _ROOT.match(text, start)
    if root is None:
        return None
    # The root's end tag, and where the elements end: positions, not copies.
    closing = text.rfind("</")
    if closing < 0 or text[closing:].rstrip(_XML_SPACE) != f"</{root[1]}>":
        return None
    end = closing
    while end > root.end() and text[end - 1] in _XML_SPACE:
        end -= 1
    fields: Fields = {}
    lists: Lists = {}
    covered = root.end()
    for element, tag, cdata, plain, children, _ in _ELEMENTS.findall(text, root.end(), end):
        covered += len(element)
        if children:
            items = []
            for _, _, item_cdata, item_plain, _, _ in _ELEMENTS.findall(children):
                item = _text(item_cdata, item_plain)
                if item is None:
                    return None
                items.append(item)
            if tag not in fields:
                fields[tag] = ""  # the whitespace between the items, stripped
                lists[tag] = tuple(items)
            continue
        if cdata:  # _text, inline: this loop is most of a callback's parse
            value = cdata[9:-3]
        elif "]]>" in plain:
            return None
        else:
            value = plain.strip()
        if tag not in fields:
            fields[tag] = value if "\r" not in value else _newlines(value)
    # The elements found, end to end, must be the whole body: where something
    # between them is not one, the regex skipped it, and expat decides.
    return (fields, lists) if covered == end else None


def _newlines(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n")


def parse_fields(text: str) -> tuple[Fields, Lists]:
    """The top-level fields and the lists of a callback's XML (already UTF-8 text).

    Call :func:`check_prolog` on the bytes first: this skips the XML declaration
    it let through.

    Raises:
        WeComCallbackError: the XML is malformed or declares a document type.
    """
    start = text.find("?>") + 2 if text.startswith("<?xml") else 0
    flat = _flat(text, start)
    if flat is not None:
        return flat
    return expat_fields(text)


def expat_fields(text: str) -> tuple[Fields, Lists]:
    """:func:`parse_fields` by expat alone: the fallback, and the fast path's referee.

    Raises:
        WeComCallbackError: the XML is malformed or declares a document type.
    """
    root = parse_xml(text)
    fields: Fields = {}
    lists: Lists = {}
    for child in root.children:
        if child.tag not in fields:
            fields[child.tag] = child.text
            if child.children:
                lists[child.tag] = tuple(item.text for item in child.children)
    return fields, lists


# -- the fallback: expat, for every document the fast path does not take --


@attrs.define(eq=False)
class Element:
    """One element: its tag, its text and its child elements.

    ``text`` is the element's CDATA when it has any, whitespace outside the CDATA
    ignored, and otherwise its character data with surrounding whitespace stripped.
    """

    tag: str
    text: str = ""
    children: list[Element] = attrs.Factory(list)

    def find(self, tag: str) -> Element | None:
        """The first child named ``tag``, or None."""
        for child in self.children:
            if child.tag == tag:
                return child
        return None


class _Builder:
    def __init__(self) -> None:
        self.stack: list[tuple[Element, list[str], list[str]]] = []
        self.root: Element | None = None
        self.in_cdata = False

    def start(self, tag: str, attributes: object) -> None:
        element = Element(tag)
        if self.stack:
            self.stack[-1][0].children.append(element)
        else:
            self.root = element
        self.stack.append((element, [], []))

    def end(self, tag: str) -> None:
        element, plain, cdata = self.stack.pop()
        # A real event has arrived with whitespace around its CDATA (path/92130).
        element.text = "".join(cdata) if cdata else "".join(plain).strip()

    def data(self, text: str) -> None:
        if self.stack:
            _, plain, cdata = self.stack[-1]
            (cdata if self.in_cdata else plain).append(text)

    def cdata_start(self) -> None:
        self.in_cdata = True

    def cdata_end(self) -> None:
        self.in_cdata = False


def _refuse(*_: object) -> NoReturn:
    raise WeComCallbackError("refused XML with a DOCTYPE or an entity declaration")


def parse_xml(data: str | bytes) -> Element:
    """Parse ``data`` into an :class:`Element` tree; refuse DOCTYPEs and entities.

    Raises:
        WeComCallbackError: the XML is malformed, empty, in an encoding expat
            cannot read, or declares a document type or entities.
    """
    builder = _Builder()
    parser = expat.ParserCreate()
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartCdataSectionHandler = builder.cdata_start
    parser.EndCdataSectionHandler = builder.cdata_end
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise WeComCallbackError(f"malformed XML: {exc}") from None
    except ValueError as exc:  # "multi-byte encodings are not supported" (GBK, ...)
        raise WeComCallbackError(f"unreadable XML: {exc}") from None
    if builder.root is None:  # pragma: no cover - expat reports "no element found" first
        raise WeComCallbackError("malformed XML: no element")
    return builder.root
