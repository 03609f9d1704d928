"""``CallbackReceiver.respond`` never raises: whatever the method, query and body,
the answer is a status WeCom understands (200, a 4xx, 503), never a 500, and never
holds the token, the key or the plaintext."""

from __future__ import annotations

import asyncio
import base64
import string
import time
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.callback.conftest import AES_KEY, TOKEN, make_crypto
from tests.callback.forge import encrypt, encrypt_bytes, envelope
from tests.callback.test_receiver import Recorder, change
from wecom_async.callback import CallbackReceiver
from wecom_async.testing._callbacks import event_xml

ALLOWED = {200, 400, 403, 405, 408, 413, 415, 503}
#: In every generated plaintext: an answer must never repeat it.
MARK = "PLAINTEXT-MARK-c0ffee"

_SIGNER = make_crypto(max_age=None)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies --

_XML_BITS = [
    "<xml>",
    "</xml>",
    "<ToUserName>",
    "</ToUserName>",
    "<Encrypt>",
    "</Encrypt>",
    "<MsgType>",
    "</MsgType>",
    "event",
    "<Event>",
    "</Event>",
    "change_external_contact",
    "<CreateTime>",
    "</CreateTime>",
    "1700000000",
    "<MemChangeList>",
    "</MemChangeList>",
    "<Item>",
    "</Item>",
    "<![CDATA[",
    "]]>",
    "&amp;",
    "&lt;",
    "&#60;",
    "&#0;",
    "&lol;",
    "<!DOCTYPE xml [<!ENTITY lol 'x'>]>",
    "<?xml version='1.0'?>",
    '<?xml version="1.0" encoding="GBK"?>',
    "<!-- c -->",
    "<a b='c'>",
    "</a>",
    "<a/>",
    " ",
    "\t",
    "\r\n",
    "\r",
    "\x00",
    "\x0b",
    "\ufeff",
    "\ufffe",
    "张三",
    MARK,
]

xmlish = st.lists(st.one_of(st.sampled_from(_XML_BITS), st.text(max_size=6)), max_size=40).map(
    "".join
)

b64ish = st.one_of(
    st.binary(max_size=120).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet=string.ascii_letters + string.digits + "+/= ", max_size=80),
    st.text(max_size=40),
)

timestamps = st.one_of(
    st.just("now"),
    st.just("now"),
    st.integers().map(str),
    st.integers(-(10**400), 10**400).map(str),  # any integer a string can spell
    st.from_regex(r"\A-?[0-9]{1,400}\Z"),
    st.text(max_size=12),
)
field_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,12}\Z")
field_values = st.one_of(st.text(max_size=20), st.integers().map(str), st.sampled_from(_XML_BITS))
#: Plaintexts shaped like WeCom's, a field or two of which may be anything.
wecom_plaintexts = st.builds(
    lambda fields, tail: event_xml(MARK, fields)[:-6] + tail + "</xml>",
    st.dictionaries(field_names, field_values, max_size=6),
    st.one_of(st.just(""), xmlish),
)
plaintexts = st.one_of(
    wecom_plaintexts,
    wecom_plaintexts,
    xmlish.map(lambda text: MARK + text),
    xmlish.map(lambda text: f"<xml><A>{MARK}</A>{text}</xml>"),
)
nonces = st.one_of(st.from_regex(r"\A[0-9]{1,12}\Z"), st.text(max_size=12))


def _stamp(drawn: str) -> str:
    return str(int(time.time())) if drawn == "now" else drawn


def _query(signature: str, timestamp: str, nonce: str, **more: str) -> str:
    params = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce, **more}
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(method, raw query, body)."""
    kind = draw(
        st.sampled_from(
            [
                "random",
                "unsigned-xmlish",
                "truncated",
                "signed-random-encrypt",
                "signed-random-plaintext",
                "signed-random-plaintext",
                "signed-random-plaintext",
                "signed-random-bytes",
                "get",
            ]
        )
    )
    # Mostly now, so that more than the timestamp check is reached.
    stamp = _stamp(draw(timestamps) if draw(st.integers(0, 3)) == 0 else "now")
    nonce = draw(nonces)
    if kind == "random":
        method = draw(st.sampled_from(["POST", "GET", "PUT", "HEAD", "OPTIONS"]) | st.text())
        return method, draw(st.text(max_size=200)), draw(st.binary(max_size=500))
    if kind == "unsigned-xmlish":
        signature = draw(st.sampled_from(["", "0" * 40]) | st.text(max_size=50))
        return "POST", _query(signature, stamp, nonce), draw(xmlish).encode("utf-8", "replace")
    if kind == "truncated":
        encrypted = encrypt(change(draw(st.integers(0, 10**6))))
        body = envelope(encrypted)
        body = body[: draw(st.integers(0, len(body)))]
        return "POST", _query(_SIGNER.signature(stamp, nonce, encrypted), stamp, nonce), body
    if kind == "get":
        echostr = draw(b64ish | st.builds(lambda text: encrypt(MARK + text), st.text(max_size=30)))
        signature = _SIGNER.signature(stamp, nonce, echostr.replace(" ", "+"))
        return "GET", _query(signature, stamp, nonce, echostr=echostr), b""
    if kind == "signed-random-encrypt":
        encrypted = draw(b64ish)
    elif kind == "signed-random-plaintext":
        encrypted = encrypt(draw(plaintexts))
    else:  # signed-random-bytes: a plaintext that need not be UTF-8
        encrypted = encrypt_bytes(MARK.encode() + draw(st.binary(max_size=200)))
    prolog = draw(st.sampled_from(["", "", "", "\n", '<?xml version="1.0"?>', "<!DOCTYPE x>"]))
    body = envelope(encrypted.strip(), prolog=prolog)
    signature = _SIGNER.signature(stamp, nonce, encrypted.strip())
    return "POST", _query(signature, stamp, nonce), body


# -- the property --


@FUZZ
@given(request=requests())
def test_respond_always_answers_with_a_status_wecom_understands(
    request: tuple[str, str, bytes],
) -> None:
    asyncio.run(_check(*request))


async def _check(method: str, query: str, body: bytes) -> None:
    handler = Recorder()
    async with CallbackReceiver(make_crypto(), handler, concurrency=1) as receiver:
        before = receiver.stats.received + receiver.stats.duplicates
        rejected = receiver.stats.rejected
        status, text = await receiver.respond(method, query, body)
        assert status in ALLOWED, (status, text)
        assert isinstance(text, str)
        assert TOKEN not in text and AES_KEY not in text
        if method != "GET":  # a URL check's answer is its echostr, by design
            assert MARK not in text, text
        if method == "POST":
            queued = receiver.stats.received + receiver.stats.duplicates - before
            assert queued == (1 if status == 200 else 0), (status, text)
        if 400 <= status < 500:
            assert receiver.stats.rejected == rejected + 1
