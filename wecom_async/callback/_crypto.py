"""WeCom's callback encryption: signature, AES-256-CBC, and the plaintext layout.

The scheme is WeCom's 加解密方案说明 (https://developer.work.weixin.qq.com/document/path/90968).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Collection
from urllib.parse import unquote

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import WeComCallbackError, WeComInputError, WeComSignatureError
from ._xml import check_prolog

__all__ = ["DEFAULT_MAX_AGE", "CallbackCrypto", "envelope_text", "parse_query"]

#: WeCom pads to 32-byte blocks (not AES's 16), so a pad is 1 to 32 bytes.
_BLOCK = 32
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{43}")
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The signed text of an envelope, taken out without parsing it: an unsigned sender
# must not get to spend a parser's time. The search starts with a literal, so its
# cost is linear in the body, which the receiver caps.
# The bytes base64 is written in: what ``bytes.translate`` deletes to check a text.
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_SPACE = b" \t\r\n"

#: Seconds a callback's timestamp may be from now before it is refused as a replay.
DEFAULT_MAX_AGE = 300.0


def envelope_text(body: bytes) -> bytes:
    """The ``Encrypt`` text of a callback envelope, found without an XML parser.

    Two searches for a literal and one pass of ``bytes.translate`` over at most
    the body: an unsigned sender gets no parser's time.

    Raises:
        WeComCallbackError: ``body`` is not such an envelope (not XML, UTF-16, a
            DOCTYPE, another encoding, or no ``<Encrypt>`` of base64 text).
    """
    check_prolog(body, "not an envelope")
    start = body.find(b"<Encrypt>")
    end = body.find(b"</Encrypt>", start)
    if start < 0 or end < 0:
        raise WeComCallbackError("not an envelope: no <Encrypt> element")
    text = body[start + 9 : end].strip(_SPACE)
    if text.startswith(b"<![CDATA[") and text.endswith(b"]]>"):
        text = text[9:-3]
    if not text or text.translate(None, _BASE64) or b"=" in text.rstrip(b"="):
        # Padding only at the end, as decrypt_text's strict decoding requires too.
        raise WeComCallbackError("not an envelope: the <Encrypt> text is not base64")
    return text


def parse_query(raw: str) -> dict[str, str]:
    """Decode a raw query string, keeping ``+`` as ``+``.

    WeCom URL-encodes its parameters, but a ``+`` left raw in ``echostr`` must stay a
    ``+`` (base64), not become a space as form decoding would make it.
    """
    out: dict[str, str] = {}
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        if name:
            out.setdefault(unquote(name), unquote(value))
    return out


class CallbackCrypto:
    """Verify, decrypt and encrypt WeCom callbacks for one app.

    Args:
        token: the callback Token configured with the URL in WeCom's console.
        encoding_aes_key: the 43-character EncodingAESKey.
        receive_id: the id the plaintext must end with: the corp id for a
            self-built app, the suite id for a provider's command callbacks, the
            authorizing corp's id (encrypted per provider) for its data callbacks.
            A collection accepts any of its ids; the first is used to encrypt.
        max_age: refuse a timestamp more than this many seconds away from now, in
            either direction (a replay window), with
            :class:`~wecom_async.WeComSignatureError`; 300 s by default, None for
            no window. A receiver's dedup remembers a callback at least twice as
            long, so a replay inside the window is a duplicate and one after it
            is refused.
        clock: seconds since the epoch, for ``max_age`` and ``encrypt``.

    Raises:
        WeComInputError: the key is not 43 base64 characters, or the token or
            receive id is empty.
    """

    __slots__ = (
        "_aes_key",
        "_cipher",
        "_clock",
        "_receive_id_bytes",
        "_receive_ids",
        "_token",
        "max_age",
    )

    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        receive_id: str | Collection[str],
        *,
        max_age: float | None = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise WeComInputError("the callback token must be a non-empty string")
        if not isinstance(encoding_aes_key, str) or not _KEY_RE.fullmatch(encoding_aes_key):
            # Never echo the key: say what is wrong with it, not what it is.
            length = len(encoding_aes_key) if isinstance(encoding_aes_key, str) else None
            raise WeComInputError(
                f"the EncodingAESKey must be 43 base64 characters (got {length} characters)"
            )
        ids = (receive_id,) if isinstance(receive_id, str) else tuple(receive_id)
        if not ids or not all(isinstance(i, str) and i for i in ids):
            raise WeComInputError("receive_id must be a non-empty string or strings")
        if max_age is not None and max_age <= 0:
            raise WeComInputError("max_age must be positive")
        self._token = token
        self._aes_key = base64.b64decode(encoding_aes_key + "=")
        # Made once: each message takes a fresh decryptor or encryptor from it.
        self._cipher = Cipher(algorithms.AES(self._aes_key), modes.CBC(self._aes_key[:16]))
        self._receive_ids = ids
        self._receive_id_bytes = tuple(i.encode() for i in ids)
        self.max_age = max_age
        self._clock = clock

    def __repr__(self) -> str:
        return f"<CallbackCrypto receive_id={list(self._receive_ids)!r} token=*** key=***>"

    @property
    def receive_ids(self) -> tuple[str, ...]:
        """The ids a plaintext may end with."""
        return self._receive_ids

    # -- signature --

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """WeCom's ``msg_signature``: SHA-1 over the sorted token, timestamp, nonce, text."""
        parts = sorted((self._token, timestamp, nonce, encrypted))
        return hashlib.sha1("".join(parts).encode()).hexdigest()

    def _check(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        if not msg_signature:
            raise WeComSignatureError("no signature")
        expected = self.signature(timestamp, nonce, encrypted).encode()
        given = msg_signature.strip().lower().encode("ascii", "replace")
        if not hmac.compare_digest(expected, given):
            raise WeComSignatureError("bad signature")
        if self.max_age is not None:
            try:
                sent = int(timestamp)
            except ValueError:
                raise WeComSignatureError("bad timestamp: not an integer") from None
            now = self._clock()
            # Compared, not subtracted: an integer too large for a float is just late.
            if not now - self.max_age <= sent <= now + self.max_age:
                raise WeComSignatureError(
                    f"stale timestamp: outside the {self.max_age:g} s replay window"
                )

    # -- AES --

    def decrypt_text(self, encrypted: str) -> str:
        """Decrypt an ``Encrypt`` text (no signature check) and check its receive id."""
        try:
            data = base64.b64decode(encrypted.replace(" ", "+"), validate=True)
        except (binascii.Error, ValueError):
            raise WeComCallbackError("does not decrypt: the encrypted text is not base64") from None
        return self._open(data)

    def _open(self, data: bytes) -> str:
        """Decrypt the ciphertext ``data`` and check its pad, length and receive id."""
        if not data or len(data) % 16:
            raise WeComCallbackError("does not decrypt: the encrypted text is not whole AES blocks")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        # A wrong key gives garbage: every check below fails cleanly instead of
        # indexing past the end (WxJava's check raised IndexError here until 2025).
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
            raise WeComCallbackError("does not decrypt: bad padding (a wrong EncodingAESKey?)")
        content = plain[:-pad]
        if len(content) < 20:
            raise WeComCallbackError(
                "does not decrypt: the plaintext is too short (a wrong EncodingAESKey?)"
            )
        length = int.from_bytes(content[16:20], "big")
        if 20 + length > len(content):
            raise WeComCallbackError("does not decrypt: the message length overruns the plaintext")
        receive_id = content[20 + length :]
        for expected in self._receive_id_bytes:
            if hmac.compare_digest(receive_id, expected):
                break
        else:
            raise WeComCallbackError("does not decrypt: the receive id does not match this app")
        try:
            return content[20 : 20 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise WeComCallbackError("does not decrypt: the message is not UTF-8") from None

    def encrypt_text(self, plaintext: str, *, random_prefix: bytes | None = None) -> str:
        """Encrypt ``plaintext`` into an ``Encrypt`` text, for the first receive id.

        ``random_prefix`` (16 bytes) replaces the random bytes, for tests.
        """
        prefix = os.urandom(16) if random_prefix is None else random_prefix
        if len(prefix) != 16:
            raise WeComInputError("random_prefix must be 16 bytes")
        message = plaintext.encode("utf-8")
        data = prefix + len(message).to_bytes(4, "big") + message + self._receive_ids[0].encode()
        pad = _BLOCK - len(data) % _BLOCK
        data += bytes([pad]) * pad
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()

    # -- the three operations of the issue --

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Check the URL verification (GET) and return the decrypted ``echostr``.

        ``echostr`` is taken URL-decoded; a space (a ``+`` decoded as a form
        would) is read back as ``+``, which base64 needs.

        Raises:
            WeComSignatureError: the signature does not match or is outside ``max_age``.
            WeComCallbackError: ``echostr`` does not decrypt for this app.
        """
        echostr = echostr.replace(" ", "+")
        self._check(msg_signature, timestamp, nonce, echostr)
        return self.decrypt_text(echostr)

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, body: str | bytes) -> str:
        """Check and decrypt a callback POST; return the plaintext XML.

        ``body`` is the POST body: ``<xml><ToUserName/><Encrypt/><AgentID/></xml>``;
        the signature covers the ``Encrypt`` text. Nothing is parsed, and nothing
        decrypted, before the signature checks out: the text is taken out of the
        envelope by :func:`envelope_text`, and the plaintext is left to
        :func:`~wecom_async.callback.parse_event`.

        Raises:
            WeComSignatureError: no signature, a wrong one, or a timestamp outside
                ``max_age``.
            WeComCallbackError: the body is not such an envelope, or does not decrypt.
        """
        if not msg_signature:  # said first: an unsigned POST is unsigned, whatever it holds
            raise WeComSignatureError("no signature")
        encrypted = envelope_text(body.encode() if isinstance(body, str) else body)
        self._check(msg_signature, timestamp, nonce, encrypted.decode("ascii"))
        try:  # the characters are base64's (envelope_text): only the padding can be off
            data = binascii.a2b_base64(encrypted)
        except binascii.Error:
            raise WeComCallbackError("does not decrypt: the encrypted text is not base64") from None
        return self._open(data)

    def encrypt(
        self,
        plaintext: str,
        *,
        nonce: str,
        timestamp: int | str | None = None,
        random_prefix: bytes | None = None,
    ) -> str:
        """The XML reply envelope: ``Encrypt``, ``MsgSignature``, ``TimeStamp``, ``Nonce``.

        ``timestamp`` defaults to now; ``random_prefix`` (16 bytes) replaces the
        random bytes, for tests.
        """
        if not _NONCE_RE.fullmatch(nonce):
            raise WeComInputError("nonce must be 1 to 64 letters, digits, '-' or '_'")
        stamp = str(int(self._clock()) if timestamp is None else timestamp)
        if not stamp.isdigit():
            raise WeComInputError("timestamp must be a non-negative integer")
        encrypted = self.encrypt_text(plaintext, random_prefix=random_prefix)
        signature = self.signature(stamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{stamp}</TimeStamp>"
            f"<Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )
