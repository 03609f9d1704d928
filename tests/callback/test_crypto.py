"""CallbackCrypto against WeCom's published sample (path/90968) and round trips."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import DATA
from wecom_async import WeComCallbackError, WeComError, WeComInputError, WeComSignatureError
from wecom_async.callback import CallbackCrypto
from wecom_async.callback._crypto import parse_query

SAMPLE: dict[str, Any] = json.loads((DATA / "wecom_callback_doc_sample.json").read_text())
GET, POST = SAMPLE["cases"]
KEY = SAMPLE["encoding_aes_key"]
TOKEN = SAMPLE["token"]
RID = SAMPLE["receive_id"]


@pytest.fixture
def crypto() -> CallbackCrypto:
    return CallbackCrypto(TOKEN, KEY, RID, max_age=None)


def test_the_documented_url_check(crypto: CallbackCrypto) -> None:
    echostr = parse_query("echostr=" + GET["echostr_urlencoded"])["echostr"]
    assert echostr == GET["encrypt"]
    plain = crypto.verify_url(GET["msg_signature"], GET["timestamp"], GET["nonce"], echostr)
    assert plain == GET["expected_plaintext"]


def test_the_documented_message(crypto: CallbackCrypto) -> None:
    plain = crypto.decrypt(POST["msg_signature"], POST["timestamp"], POST["nonce"], POST["body"])
    assert plain == POST["expected_plaintext"]
    assert (
        crypto.signature(POST["timestamp"], POST["nonce"], POST["encrypt"])
        == (POST["msg_signature"])
    )


def test_a_plus_stays_a_plus() -> None:
    # Decoded as a form would, "+" becomes " ": both the raw "+" and the space work.
    raw = GET["encrypt"]
    assert "+" in raw
    assert parse_query("echostr=" + raw)["echostr"] == raw
    crypto = CallbackCrypto(TOKEN, KEY, RID, max_age=None)
    sig, ts, nonce = GET["msg_signature"], GET["timestamp"], GET["nonce"]
    assert crypto.verify_url(sig, ts, nonce, raw.replace("+", " ")) == GET["expected_plaintext"]


def test_the_sample_decrypts_to_the_documented_layout() -> None:
    # Independent of CallbackCrypto: AES-256-CBC, IV = key[:16], a 32-byte PKCS#7 pad.
    key = base64.b64decode(KEY + "=")
    data = base64.b64decode(POST["encrypt"])
    plain = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor().update(data)
    pad = plain[-1]
    assert pad == POST["decrypted"]["pkcs7_pad_bytes"]
    assert int.from_bytes(plain[16:20], "big") == POST["decrypted"]["msg_len"]
    assert plain[16 + 4 + 284 : -pad].decode() == RID


@given(text=st.text(max_size=300), prefix=st.binary(min_size=16, max_size=16))
def test_round_trip(text: str, prefix: bytes) -> None:
    crypto = CallbackCrypto(TOKEN, KEY, RID, max_age=None)
    envelope = crypto.encrypt(text, nonce="n1", timestamp=1409659813, random_prefix=prefix)
    from wecom_async.callback._xml import parse_xml

    root = parse_xml(envelope)
    fields = {c.tag: c.text for c in root.children}
    assert set(fields) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert fields["TimeStamp"] == "1409659813" and fields["Nonce"] == "n1"
    body = f"<xml><Encrypt><![CDATA[{fields['Encrypt']}]]></Encrypt></xml>"
    assert crypto.decrypt(fields["MsgSignature"], "1409659813", "n1", body) == text
    # The pad is to 32-byte blocks.
    assert len(base64.b64decode(fields["Encrypt"])) % 32 == 0


def test_the_random_prefix_is_injectable_and_otherwise_random() -> None:
    crypto = CallbackCrypto(TOKEN, KEY, RID, max_age=None)
    fixed = [crypto.encrypt_text("x", random_prefix=b"0" * 16) for _ in range(2)]
    assert fixed[0] == fixed[1]
    assert crypto.encrypt_text("x") != crypto.encrypt_text("x")


def test_a_bad_signature_raises_signature_error(crypto: CallbackCrypto) -> None:
    wrong = "0" * 40
    with pytest.raises(WeComSignatureError):
        crypto.decrypt(wrong, POST["timestamp"], POST["nonce"], POST["body"])
    with pytest.raises(WeComSignatureError):
        crypto.verify_url(wrong, GET["timestamp"], GET["nonce"], GET["encrypt"])
    # Any other part changed breaks it too: the timestamp is signed.
    with pytest.raises(WeComSignatureError):
        crypto.decrypt(POST["msg_signature"], "1409659814", POST["nonce"], POST["body"])


@pytest.mark.parametrize("seed", range(64))
def test_a_wrong_key_raises_callback_error_never_index_error(seed: int) -> None:
    import random

    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    other = "".join(rng.choice(alphabet) for _ in range(43))
    crypto = CallbackCrypto(TOKEN, other, RID, max_age=None)
    with pytest.raises(WeComCallbackError) as info:
        crypto.decrypt(POST["msg_signature"], POST["timestamp"], POST["nonce"], POST["body"])
    assert not isinstance(info.value, WeComSignatureError)


def _forge(crypto_key: str, plain: bytes) -> str:
    key = base64.b64decode(crypto_key + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def _pad(data: bytes) -> bytes:
    n = 32 - len(data) % 32
    return data + bytes([n]) * n


@pytest.mark.parametrize(
    ("plain", "why"),
    [
        (_pad(b"R" * 16 + (1000).to_bytes(4, "big") + b"hi" + RID.encode()), "length overruns"),
        (b"R" * 16 + bytes([0]) * 16, "padding"),  # pad byte 0
        (b"R" * 16 + bytes([33]) * 16, "padding"),  # pad over 32
        (b"R" * 28 + bytes([3]) * 3 + b"\x04", "padding"),  # pad bytes that disagree
        (_pad(b"R" * 10), "too short"),
        (_pad(b"R" * 16 + (2).to_bytes(4, "big") + b"hi" + b"wx-other"), "receive id"),
        (_pad(b"R" * 16 + (2).to_bytes(4, "big") + b"\xff\xfe" + RID.encode()), "UTF-8"),
    ],
)
def test_each_plaintext_check(plain: bytes, why: str) -> None:
    assert len(plain) % 16 == 0
    crypto = CallbackCrypto(TOKEN, KEY, RID, max_age=None)
    encrypted = _forge(KEY, plain)
    with pytest.raises(WeComCallbackError, match=why):
        crypto.decrypt_text(encrypted)


def test_not_base64_and_not_blocks() -> None:
    crypto = CallbackCrypto(TOKEN, KEY, RID, max_age=None)
    for text in ("not base64!", base64.b64encode(b"x" * 15).decode(), ""):
        with pytest.raises(WeComCallbackError):
            crypto.decrypt_text(text)
    with pytest.raises(WeComCallbackError):
        crypto.decrypt("x", "1", "2", "<xml><ToUserName>a</ToUserName></xml>")
    with pytest.raises(WeComCallbackError):
        crypto.decrypt("x", "1", "2", "not xml")


def test_several_receive_ids() -> None:
    crypto = CallbackCrypto(TOKEN, KEY, ["ww-other", RID], max_age=None)
    plain = crypto.decrypt(POST["msg_signature"], POST["timestamp"], POST["nonce"], POST["body"])
    assert plain == POST["expected_plaintext"]
    only_other = CallbackCrypto(TOKEN, KEY, {"ww-other"}, max_age=None)
    with pytest.raises(WeComCallbackError, match="receive id"):
        only_other.decrypt(POST["msg_signature"], POST["timestamp"], POST["nonce"], POST["body"])


def test_replay_window() -> None:
    sent = int(POST["timestamp"])
    args = (POST["msg_signature"], POST["timestamp"], POST["nonce"], POST["body"])
    fresh = CallbackCrypto(TOKEN, KEY, RID, max_age=300, clock=lambda: sent + 299)
    assert fresh.decrypt(*args) == POST["expected_plaintext"]
    stale = CallbackCrypto(TOKEN, KEY, RID, max_age=300, clock=lambda: sent + 301)
    with pytest.raises(WeComSignatureError, match="window"):
        stale.decrypt(*args)
    ahead = CallbackCrypto(TOKEN, KEY, RID, max_age=300, clock=lambda: sent - 301)
    with pytest.raises(WeComSignatureError):
        ahead.decrypt(*args)


@pytest.mark.parametrize(
    "key", [KEY[:42], KEY + "A", KEY[:42] + "!", KEY[:42] + "=", "", 43, None, KEY + "="]
)
def test_a_bad_key_is_refused_at_construction(key: Any) -> None:
    with pytest.raises(WeComInputError) as info:
        CallbackCrypto(TOKEN, key, RID)
    assert isinstance(info.value, WeComError)
    if isinstance(key, str) and len(key) > 10:
        assert key[:10] not in str(info.value)


def test_bad_token_and_ids_are_refused() -> None:
    for token, rid in (("", RID), (TOKEN, ""), (TOKEN, []), (TOKEN, [RID, ""])):
        with pytest.raises(WeComInputError):
            CallbackCrypto(token, KEY, rid)
    with pytest.raises(WeComInputError):
        CallbackCrypto(TOKEN, KEY, RID).encrypt("x", nonce="a]]>b")


def test_repr_hides_token_and_key() -> None:
    text = repr(CallbackCrypto(TOKEN, KEY, RID))
    assert RID in text
    assert TOKEN not in text and KEY not in text and KEY[:20] not in text


def test_importing_without_cryptography_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "import wecom_async, wecom_async.testing\n"
        "try:\n"
        "    import wecom_async.callback\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'wecom-async[callback]'" in out.stdout
