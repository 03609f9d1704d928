"""Other encodings, DOCTYPEs and entities, in the envelope and in the plaintext, over
a real socket through aiohttp and uvicorn: each refused with a 4xx naming the fault
(never a 500, never a 200), and nothing reaches the handler.

Each hostile envelope is signed over its ``Encrypt`` text, and each hostile plaintext
encrypted and signed as WeCom would: the signature passes, so it is the shape of
the body (or of the plaintext) that must be refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from tests.callback.conftest import make_crypto
from tests.callback.forge import encrypt, encrypt_bytes, envelope, sign, wrong_signature
from tests.callback.raw_http import RawAnswer, exchange, request_head, target
from tests.callback.test_receiver import Recorder, change
from wecom_async.callback import CallbackReceiver

Serve = Callable[[CallbackReceiver], contextlib.AbstractAsyncContextManager[str]]

GBK = '<?xml version="1.0" encoding="GBK"?>'
LAUGHS = (
    '<!DOCTYPE xml [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";" if i > 1 else "&lol;") * 10}">'
        for i in range(1, 10)
    )
    + "]>"
)
EXTERNAL = '<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
PARAMETER = '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'


async def _post(url: str, query: str, body: bytes) -> RawAnswer:
    to = target(url, query)
    head = request_head(
        "POST", to, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))]
    )
    return await exchange(to, [head + body], timeout=5.0)


# -- the envelope: what WeCom POSTs around the encrypted text --


# What a refusal must say: it starts with the first, and holds one of the others.
Says = tuple[str, ...]


def _names_the_fault(text: str, says: Says) -> bool:
    prefix, *any_of = says
    return text.startswith(prefix) and any(word in text for word in any_of)


def _envelopes() -> dict[str, tuple[Callable[[str], bytes], Says]]:
    """Name: (the body around an Encrypt text, what the refusal must say)."""
    encoding = ("not an envelope: ", "encoding other than UTF-8")
    doctype = ("not an envelope: ", "DOCTYPE")
    not_xml = ("not an envelope: ", "not XML", "UTF-16")
    return {
        "gbk-declaration": (lambda e: envelope(e, prolog=GBK), encoding),
        "gbk-declaration-single-quotes": (
            lambda e: envelope(e, prolog="<?xml version='1.0' encoding='gbk' ?>\n"),
            encoding,
        ),
        # A second pseudo-attribute whose name ends in "encoding" must not hide the
        # real one (a prolog check that searches for 'encoding=' finds "utf-8").
        "gbk-behind-xencoding": (
            lambda e: envelope(e, prolog='<?xml version="1.0" xencoding="utf-8" encoding="GBK"?>'),
            (*encoding, "declaration"),
        ),
        "utf16-bom": (lambda e: envelope(e).decode().encode("utf-16"), not_xml),
        "utf16le-no-bom": (lambda e: envelope(e).decode().encode("utf-16-le"), not_xml),
        "utf16be-no-bom": (lambda e: envelope(e).decode().encode("utf-16-be"), not_xml),
        "utf16-declared": (
            lambda e: (
                envelope(e, prolog='<?xml version="1.0" encoding="UTF-16"?>')
                .decode()
                .encode("utf-16")
            ),
            not_xml,
        ),
        "utf32": (lambda e: envelope(e).decode().encode("utf-32"), not_xml),
        "doctype-entity": (
            lambda e: envelope(e, prolog='<!DOCTYPE xml [<!ENTITY e "x">]>'),
            doctype,
        ),
        "doctype-after-declaration": (
            lambda e: envelope(e, prolog='<?xml version="1.0"?>\n' + LAUGHS),
            doctype,
        ),
        "doctype-external": (lambda e: envelope(e, prolog=EXTERNAL), doctype),
        "comment-first": (lambda e: envelope(e, prolog="<!-- hi -->"), doctype),
    }


ENVELOPES = _envelopes()


@pytest.mark.parametrize("name", sorted(ENVELOPES))
async def test_a_hostile_envelope_is_refused(serve: Serve, name: str) -> None:
    build, says = ENVELOPES[name]
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    encrypted = encrypt(change(1))  # a genuine plaintext, in a hostile envelope
    async with serve(receiver) as url:
        answer = await _post(url, sign(encrypted), build(encrypted))
        assert answer.status == 400, answer
        assert _names_the_fault(answer.text, says), answer.text
    assert handler.events == []
    assert (receiver.stats.received, receiver.stats.rejected) == (0, 1)


# -- the plaintext: what the Encrypt text decrypts to --


def _plaintexts() -> dict[str, tuple[Callable[[], str], Says]]:
    """Name: (an Encrypt text, made fresh, what the refusal must say)."""
    good = change(1)
    encoding = ("bad plaintext: ", "encoding other than UTF-8")
    doctype = ("bad plaintext: ", "DOCTYPE")
    not_xml = ("bad plaintext: ", "not XML", "UTF-16")
    not_utf8 = ("does not decrypt: ", "not UTF-8")
    gbk_text = good.replace("zhangsan", "张三")
    return {
        "gbk-declaration": (lambda: encrypt(GBK + good), encoding),
        "gbk-declaration-and-bytes": (
            lambda: encrypt_bytes((GBK + gbk_text).encode("gbk")),
            not_utf8,
        ),
        # The declaration says GBK: a prolog check must read the real pseudo-
        # attribute, not one whose name merely ends in "encoding", nor miss it
        # when it is in capitals (which no XML parser takes for "encoding").
        "gbk-behind-xencoding": (
            lambda: encrypt('<?xml version="1.0" xencoding="utf-8" encoding="GBK"?>' + good),
            (*encoding, "declaration"),
        ),
        "gbk-in-capitals": (
            lambda: encrypt('<?xml version="1.0" ENCODING="GBK"?>' + good),
            (*encoding, "declaration"),
        ),
        # UTF-16 without a BOM is valid UTF-8 (NULs between ASCII): it decrypts.
        "utf16le-no-bom": (lambda: encrypt(good.encode("utf-16-le").decode()), not_xml),
        "utf16be-no-bom": (lambda: encrypt(good.encode("utf-16-be").decode()), not_xml),
        "utf16-bom": (lambda: encrypt_bytes(good.encode("utf-16")), not_utf8),
        "utf16-declared": (
            lambda: encrypt_bytes(
                ('<?xml version="1.0" encoding="UTF-16"?>' + good).encode("utf-16")
            ),
            not_utf8,
        ),
        "billion-laughs": (
            lambda: encrypt(LAUGHS + good.replace("zhangsan", "&lol9;")),
            doctype,
        ),
        "billion-laughs-after-declaration": (
            lambda: encrypt(
                '<?xml version="1.0" encoding="utf-8"?>\n'
                + LAUGHS
                + good.replace("zhangsan", "&lol9;")
            ),
            doctype,
        ),
        "external-entity": (
            lambda: encrypt(EXTERNAL + good.replace("zhangsan", "&xxe;")),
            doctype,
        ),
        "parameter-entity": (lambda: encrypt(PARAMETER + good), doctype),
        # WeCom's own start, "<xml>", is let through unchecked: a DOCTYPE after it
        # is still refused (by expat: no DOCTYPE inside an element).
        "doctype-inside-root": (
            lambda: encrypt(
                good.replace("<xml>", "<xml>" + LAUGHS, 1).replace("zhangsan", "&lol9;")
            ),
            (*doctype, "malformed XML"),
        ),
        # No DOCTYPE, so no entity is declared: a reference to one is an error.
        "undeclared-entity": (
            lambda: encrypt(good.replace("<![CDATA[zhangsan]]>", "&xxe;")),
            ("bad plaintext: ", "undefined entity"),
        ),
    }


PLAINTEXTS = _plaintexts()


@pytest.mark.parametrize("name", sorted(PLAINTEXTS))
async def test_a_hostile_plaintext_is_refused(serve: Serve, name: str) -> None:
    make, says = PLAINTEXTS[name]
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    encrypted = make()
    async with serve(receiver) as url:
        answer = await _post(url, sign(encrypted), envelope(encrypted))
        assert answer.status == 400, answer
        assert _names_the_fault(answer.text, says), answer.text
    assert handler.events == []
    assert (receiver.stats.received, receiver.stats.rejected) == (0, 1)


# -- the signature --


async def test_no_signature_and_a_wrong_one_get_403(serve: Serve) -> None:
    handler = Recorder()
    receiver = CallbackReceiver(make_crypto(), handler)
    encrypted = encrypt(change(1))
    body = envelope(encrypted)
    signed = sign(encrypted)
    unsigned = signed.partition("&")[2]  # timestamp and nonce, no msg_signature
    async with serve(receiver) as url:
        answers = [
            await _post(url, "", body),
            await _post(url, unsigned, body),
            await _post(url, "msg_signature=&" + unsigned, body),
            # Unsigned, whatever the body: hostile bodies are not even looked at.
            await _post(url, unsigned, envelope(encrypted, prolog=LAUGHS)),
            await _post(url, unsigned, b"\xff\xfe<\x00x\x00"),
            await _post(url, wrong_signature(), body),
            # A signature over another text, or with another nonce: bad, too.
            await _post(url, sign(encrypt(change(2))), body),
            await _post(url, signed.replace("nonce=", "nonce=1"), body),
        ]
        assert [(a.status, a.text) for a in answers] == [(403, "no signature")] * 5 + [
            (403, "bad signature")
        ] * 3
        # The genuine request still goes through.
        assert (await _post(url, signed, body)).status == 200
        await handler.wait_for(1)
    assert len(handler.events) == 1
    assert (receiver.stats.received, receiver.stats.rejected) == (1, 8)
