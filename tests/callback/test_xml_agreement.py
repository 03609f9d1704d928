"""The XML fast path agrees with expat: for any text that passes ``check_prolog``,
``parse_fields`` gives what expat gives (the first element of each tag's text, and
the lists), or raises where expat refuses; and ``_flat``, when it takes a document
at all, takes it exactly as expat would."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wecom_async.callback._xml import (
    Fields,
    Lists,
    _flat,
    check_prolog,
    expat_fields,
    parse_fields,
)
from wecom_async.errors import WeComCallbackError

AGREE = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def expat(text: str) -> tuple[Fields, Lists] | WeComCallbackError:
    """What expat makes of ``text``: fields and lists, or its refusal."""
    try:
        return expat_fields(text)
    except WeComCallbackError as exc:
        return exc


def fast_start(text: str) -> int:
    """Where the fast path starts: after the XML declaration, which XML allows only
    at the very start of a document. (Where parse_fields itself starts is its own
    business: test_parse_fields_agrees_with_expat holds it to expat's answer.)"""
    return text.find("?>") + 2 if text.startswith("<?xml") else 0


# -- WeCom-like documents, and the ways they go wrong --

TAGS = [
    "ToUserName",
    "FromUserName",
    "CreateTime",
    "MsgType",
    "Event",
    "ChangeType",
    "UserID",
    "ExternalUserID",
    "Content",
    "MsgId",
    "AgentID",
    "Token",
    "x",
    "_a.b-c1",
]
WHITESPACE = st.text(alphabet=" \t\r\n", max_size=3)
TEXT_BITS = [
    "a",
    "张三",
    " ",
    "\t",
    "\r\n",
    "\r",
    "\n",
    "&amp;",
    "&lt;",
    "&gt;",
    "&quot;",
    "&#65;",
    "&#x4e2d;",
    "&#0;",
    "&nope;",
    "&",
    ">",
    "]",
    "]]>",
    "]]",
    "\x00",
    "\x01",
    "\x0b",
    "\x1f",
    "\x7f",
    "\x85",
    "\xa0",
    "\u2028",
    "\ufeff",
    "\ufffe",
    "\U0001f600",
]
# Text as WeCom writes it (no markup, no control characters), and text that is not.
clean_texts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<&")
    | st.sampled_from(" \t\r\n"),
    max_size=12,
)
noisy_texts = st.lists(st.one_of(st.sampled_from(TEXT_BITS), st.text(max_size=4)), max_size=8).map(
    "".join
)
texts = st.one_of(clean_texts, clean_texts, noisy_texts)
# CDATA content: anything, "]]>" included (it ends the section early).
cdata_texts = st.one_of(
    clean_texts,
    st.lists(
        st.one_of(st.sampled_from(["]]>", "]", "]]", "<", "&amp;", "\r\n", "\r"]), texts),
        max_size=4,
    ).map("".join),
)


@st.composite
def values(draw: st.DrawFn) -> str:
    """What goes between <Tag> and </Tag>."""
    kind = draw(
        st.sampled_from(["cdata"] * 4 + ["text"] * 4 + ["split-cdata", "mixed", "items", "empty"])
    )
    before, after = draw(WHITESPACE), draw(WHITESPACE)
    if kind == "cdata":
        return f"{before}<![CDATA[{draw(cdata_texts)}]]>{after}"
    if kind == "text":
        return draw(texts)
    if kind == "split-cdata":
        # How "]]>" inside a value is written in CDATA: split over two sections.
        left, right = draw(texts), draw(texts)
        gap = draw(st.sampled_from(["", " ", "\n", "x"]))
        return f"{before}<![CDATA[{left}]]]]>{gap}<![CDATA[>{right}]]>{after}"
    if kind == "mixed":
        return f"{draw(texts)}<![CDATA[{draw(cdata_texts)}]]>{draw(texts)}"
    if kind == "items":
        if draw(st.booleans()):  # WeCom's: leaves, whitespace between them
            leaves = draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(["Item", "Item", "UserId", "x"]),
                        st.one_of(
                            clean_texts,
                            st.builds(
                                "{}<![CDATA[{}]]>{}".format, WHITESPACE, cdata_texts, WHITESPACE
                            ),
                        ),
                        WHITESPACE,
                    ),
                    max_size=4,
                )
            )
            inner = "".join(f"{space}<{name}>{value}</{name}>" for name, value, space in leaves)
            return before + inner + after
        items = draw(
            st.lists(st.one_of(texts, cdata_texts.map("<![CDATA[{}]]>".format)), max_size=3)
        )
        return before + "".join(f"<Item>{item}</Item>" for item in items) + after
    return draw(st.sampled_from(["", " ", "<Empty/>"]))


DECLARATIONS = [
    "",
    "",
    "",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="UTF-8"?>',
    "<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n",
    '<?xml version="1.0" standalone="maybe"?>',
    '<?xml encoding="utf-8"?>',
    '<?xml version="1.0" foo="bar"?>',
    '<?xml version="1.0" ENCODING="utf-8"?>',
    '<?xml version="1.0" encoding="utf-8" version="1.0"?>',
    ' <?xml version="1.0"?>',
    '\n<?xml version="1.0"?>\n',
]


@st.composite
def documents(draw: st.DrawFn) -> str:
    declaration = draw(st.sampled_from(DECLARATIONS))
    root = draw(st.sampled_from(["xml", "xml", "root", "a1"]))
    elements = draw(st.lists(st.tuples(st.sampled_from(TAGS), values(), WHITESPACE), max_size=6))
    closing = root if draw(st.integers(0, 9)) else draw(st.sampled_from(TAGS))
    inner = "".join(f"{space}<{tag}>{value}</{tag}>" for tag, value, space in elements)
    return (
        f"{declaration}{draw(WHITESPACE)}<{root}>{inner}{draw(WHITESPACE)}</{closing}>"
        f"{draw(st.sampled_from([''] * 4 + [chr(10), ' ', '<!-- end -->', 'x']))}"
    )


#: A list of leaves, as in MemChangeList: <Item>s, text or CDATA, whitespace between.
leaf_lists = st.lists(
    st.builds(
        "{0}<Item>{1}</Item>".format,
        WHITESPACE,
        st.one_of(
            clean_texts,
            st.builds("{}<![CDATA[{}]]>{}".format, WHITESPACE, clean_texts, WHITESPACE),
        ),
    ),
    min_size=1,
    max_size=4,
).map(lambda items: "".join(items) + "\n")


@st.composite
def flat_documents(draw: st.DrawFn) -> str:
    """WeCom's everyday shape: flat, CDATA or plain text, whitespace between."""
    elements = draw(
        st.lists(
            st.tuples(
                st.sampled_from(TAGS),
                st.one_of(
                    clean_texts,
                    st.builds("{}<![CDATA[{}]]>{}".format, WHITESPACE, clean_texts, WHITESPACE),
                    leaf_lists,
                ),
                WHITESPACE,
            ),
            max_size=8,
        )
    )
    inner = "".join(f"{space}<{tag}>{value}</{tag}>" for tag, value, space in elements)
    return f"{draw(WHITESPACE)}<xml>{inner}{draw(WHITESPACE)}</xml>{draw(WHITESPACE)}"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A document with a slice cut out, or something pasted in."""
    text = draw(documents() | flat_documents())
    at = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        return text[:at] + text[at + draw(st.integers(1, 8)) :]
    return text[:at] + draw(st.sampled_from([*TEXT_BITS, "<", "</", "<A>", "</A>"])) + text[at:]


any_document = st.one_of(
    flat_documents(), documents(), documents(), mutated(), st.text(max_size=60)
)


# -- the properties --


@AGREE
@given(text=any_document)
@example(text="<xml><Content><![CDATA[a]]]]><![CDATA[>b]]></Content></xml>")
@example(text="<xml><Content><![CDATA[a]]> <![CDATA[b]]></Content></xml>")
@example(text="<xml><A><![CDATA[x]]>junk</A><B><![CDATA[y]]></A></xml>")
@example(text='<?xml version="1.0" standalone="maybe"?><xml><A>1</A></xml>')
@example(text=' <?xml version="1.0"?><xml><A>1</A></xml>')
def test_parse_fields_agrees_with_expat(text: str) -> None:
    try:
        check_prolog(text.encode("utf-8", "surrogatepass"), "test")
    except WeComCallbackError:
        return  # never parsed: parse_fields requires check_prolog first
    expected = expat(text)
    try:
        got: tuple[Fields, Lists] | WeComCallbackError = parse_fields(text)
    except WeComCallbackError as exc:
        got = exc
    if isinstance(expected, WeComCallbackError):
        assert isinstance(got, WeComCallbackError), (
            f"expat refuses {text!r} ({expected}), the fast path reads {got!r}"
        )
    else:
        assert got == expected, text


@AGREE
@given(text=any_document)
def test_the_fast_path_takes_only_what_expat_reads_the_same(text: str) -> None:
    try:
        check_prolog(text.encode("utf-8", "surrogatepass"), "test")
    except WeComCallbackError:
        return
    fast = _flat(text, fast_start(text))
    if fast is None:
        return  # expat decides
    expected = expat(text)
    assert not isinstance(expected, WeComCallbackError), (
        f"the fast path reads {text!r} as {fast!r}; expat refuses it: {expected}"
    )
    assert fast == expected, text


def test_the_fast_path_takes_wecoms_everyday_documents() -> None:
    """Not a vacuous agreement: the fast path does take the usual callbacks."""
    cases: list[tuple[str, tuple[Fields, Lists] | None]] = [
        (
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName><CreateTime>1700000000</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType></xml>",
            ({"ToUserName": "ww1", "CreateTime": "1700000000", "MsgType": "event"}, {}),
        ),
        (
            "<xml>\n  <ToUserName>\n    <![CDATA[ww1]]>\n  </ToUserName>\r\n"
            "  <Content><![CDATA[line one\r\nline two]]></Content>\n</xml>\n",
            ({"ToUserName": "ww1", "Content": "line one\nline two"}, {}),
        ),
        (
            "<xml><ChatId><![CDATA[wr1]]></ChatId><MemChangeList>\n"
            "  <Item><![CDATA[wm1]]></Item>\n  <Item>wm2</Item>\n</MemChangeList></xml>",
            ({"ChatId": "wr1", "MemChangeList": ""}, {"MemChangeList": ("wm1", "wm2")}),
        ),
        ('<?xml version="1.0" encoding="UTF-8"?><xml><A>a &gt; b</A></xml>', None),  # expat's
    ]
    for text, taken in cases:
        assert _flat(text, fast_start(text)) == taken, text
        assert parse_fields(text) == expat(text)
