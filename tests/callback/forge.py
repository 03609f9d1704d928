"""Callback requests built by hand: signed or not, with any envelope or plaintext.

``make_crypto()`` has the token and key of ``pusher_to``'s pusher, so what is built
here is exactly what WeCom would send, or exactly what it never would.
"""

from __future__ import annotations

import base64
import os
import secrets
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.callback.conftest import AES_KEY, CORP_ID, make_crypto

_SIGNER = make_crypto(max_age=None)


def sign(encrypted: str, *, timestamp: int | str | None = None, nonce: str | None = None) -> str:
    """The raw query of a POST carrying ``encrypted``, signed with the test token."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce if nonce is not None else str(secrets.randbelow(10**10))
    signature = _SIGNER.signature(stamp, nonce, encrypted)
    return f"msg_signature={signature}&timestamp={stamp}&nonce={nonce}"


def wrong_signature(*, timestamp: int | str | None = None) -> str:
    """A query that looks like WeCom's, but whose signature signs nothing."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return f"msg_signature={'0f' * 20}&timestamp={stamp}&nonce={secrets.randbelow(10**10)}"


def encrypt(plaintext: str) -> str:
    """``plaintext`` encrypted for the test app, as WeCom does."""
    return _SIGNER.encrypt_text(plaintext)


def encrypt_bytes(message: bytes, receive_id: str = CORP_ID) -> str:
    """Raw bytes encrypted in WeCom's layout (which ``encrypt_text`` only makes
    from a str, so always UTF-8): for plaintexts that are not UTF-8."""
    key = base64.b64decode(AES_KEY + "=")
    data = os.urandom(16) + len(message).to_bytes(4, "big") + message + receive_id.encode()
    pad = 32 - len(data) % 32
    data += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()


def envelope(encrypted: str, *, prolog: str = "", agent_id: int | None = 1000002) -> bytes:
    """The POST body WeCom sends around ``encrypted``."""
    agent = "" if agent_id is None else f"<AgentID><![CDATA[{agent_id}]]></AgentID>"
    return (
        f"{prolog}<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>{agent}</xml>"
    ).encode()


def signed_callback(
    plaintext: str, *, timestamp: int | str | None = None, nonce: str | None = None
) -> tuple[str, bytes]:
    """A genuine callback: ``(query, body)``."""
    encrypted = encrypt(plaintext)
    return sign(encrypted, timestamp=timestamp, nonce=nonce), envelope(encrypted)
