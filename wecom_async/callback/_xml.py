"""A small, safe XML reader for WeCom's callback bodies.

WeCom's callback XML is flat (``<xml><Name>value</Name>...</xml>``, a few lists one
level down) and never has a DOCTYPE. So a DOCTYPE is refused outright: with no
document type there can be no entity declarations, hence no entity expansion
("billion laughs") and no external entities. The tree is built from expat's events
directly, because ``xml.etree``'s C parser gives no way to refuse a DOCTYPE.
"""

from __future__ import annotations

from typing import NoReturn
from xml.parsers import expat

import attrs

from ..errors import WeComCallbackError

__all__ = ["Element", "parse_xml"]


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
        WeComCallbackError: the XML is malformed, empty, or declares a document
            type or entities.
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
    if builder.root is None:  # pragma: no cover - expat reports "no element found" first
        raise WeComCallbackError("malformed XML: no element")
    return builder.root
