"""FakeWeCom's WeChat customer service: accounts, customers who write, and media.

A test makes a customer say something (:meth:`FakeKf.customer_says`); the fake
stores the message and pushes a ``kf_msg_or_event`` callback carrying a fresh
sync token, as WeCom does. ``kf/sync_msg`` serves the stored messages with
WeCom's 3-day window, ``has_more`` and cursors; ``kf/send_msg`` records what the
bot sent (:attr:`FakeKf.sent`). ``media/upload`` and ``media/get`` keep files
for 3 days.

Where WeCom's documentation names no errcode, the fake's choice is noted:
95000 for an unknown ``open_kfid`` and 95007 for a bad sync token (both as
WeCom's errcode list gives them), 40007 for an unknown ``media_id``, and 40058
for any other bad parameter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._callbacks import event_xml
from ._window import SlidingWindow

if TYPE_CHECKING:
    from ._server import FakeWeCom

__all__ = ["FakeKf", "SentKfMessage"]

Answer = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[Answer | web.StreamResponse]]

#: sync_msg serves the past 3 days (path/94670); temporary media live 3 days too.
WINDOW = 3 * 24 * 3600.0
#: A callback's sync token is valid for 10 minutes.
TOKEN_TTL = 600.0
#: Without a token: 10 calls a minute, then 45009 and a minute's block.
TOKENLESS_CALLS, TOKENLESS_PERIOD = 10, 60.0
#: A welcome code is usable once, within 20 seconds (path/95122).
CODE_TTL = 20.0
MEDIA_LIMITS = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "file": 20 << 20}


@attrs.frozen
class SentKfMessage:
    """One message the app sent through ``kf/send_msg`` or ``kf/send_msg_on_event``."""

    msgid: str
    touser: str
    open_kfid: str
    msgtype: str
    content: Mapping[str, Any]
    code: str | None = None
    """The event code, for ``send_msg_on_event``."""


def _bad(errcode: int, errmsg: str) -> Answer:
    return {"errcode": errcode, "errmsg": errmsg}


def _cursor(pos: int) -> str:
    return base64.urlsafe_b64encode(f"kf:{pos}".encode()).decode().rstrip("=")


def _position(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    kind, _, pos = text.partition(":")
    return int(pos) if kind == "kf" and pos.isdigit() else None


class FakeKf:
    """The customer-service side of one :class:`FakeWeCom` (``fake.kf``).

    ``clock`` gives WeCom's wall-clock seconds (``send_time``, windows, token
    lives); replace it to move time. One account exists from the start
    (:attr:`open_kfid`).
    """

    def __init__(self, fake: FakeWeCom) -> None:
        self._fake = fake
        self.clock: Callable[[], float] = time.time
        self.accounts: dict[str, Answer] = {}
        self.messages: list[Answer] = []
        """Every message and event, in the order sync_msg serves them."""
        self.sent: list[SentKfMessage] = []
        """What the app sent, once per msgid."""
        self.sync_calls = 0
        self.tokenless_calls = 0
        self.tokenless_violations = 0
        self._customers: dict[str, Answer] = {}
        self._tokens: dict[str, float] = {}
        self._tokenless = SlidingWindow(TOKENLESS_PERIOD)
        self._blocked_until = 0.0
        self._sent_ids: dict[str, SentKfMessage] = {}
        self._codes: dict[str, tuple[str, str, float]] = {}
        self._media: dict[str, tuple[str, str, bytes, str, float]] = {}
        self._states: dict[tuple[str, str], tuple[int, str]] = {}
        self._count = 0
        self.open_kfid = self.add_account("客服小助手")

    def _id(self, prefix: str) -> str:
        self._count += 1
        digest = hashlib.sha1(f"{self._fake.seed}:{prefix}:{self._count}".encode()).hexdigest()
        return f"{prefix}{digest[:24]}{self._count:06d}"

    # -- controls for tests --

    def add_account(self, name: str) -> str:
        """A new customer-service account; returns its ``open_kfid``."""
        open_kfid = self._id("wk")
        self.accounts[open_kfid] = {
            "open_kfid": open_kfid,
            "name": name,
            "avatar": f"https://wework.qpic.cn/fake/{open_kfid[-8:]}/0",
            "manage_privilege": False,
        }
        return open_kfid

    def new_customer(self, nickname: str = "") -> str:
        """A WeChat user who will write; ``kf/customer/batchget`` knows them."""
        external_userid = self._id("wmkf")
        self._customers[external_userid] = {
            "external_userid": external_userid,
            "nickname": nickname or f"微信用户{self._count}",
            "avatar": f"https://wx.qlogo.cn/fake/{external_userid[-8:]}/0",
            "gender": 0,
            "unionid": "o" + hashlib.sha1(external_userid.encode()).hexdigest()[:27],
        }
        return external_userid

    def customer(self, external_userid: str, with_context: bool) -> Answer | None:
        """A writing customer's batchget record, or None for anyone else."""
        record = self._customers.get(external_userid)
        if record is None:
            return None
        out = dict(record)
        if with_context:
            out["enter_session_context"] = {"scene": "", "scene_param": ""}
        return out

    def customer_says(
        self, external_userid: str, text: str, *, open_kfid: str | None = None
    ) -> str:
        """The customer sends ``text``: stored, and a callback pushed. Returns the msgid."""
        return self.customer_sends(external_userid, "text", {"content": text}, open_kfid=open_kfid)

    def customer_sends(
        self,
        external_userid: str,
        msgtype: str,
        content: Mapping[str, Any],
        *,
        open_kfid: str | None = None,
        send_time: int | None = None,
        push: bool = True,
    ) -> str:
        """The customer sends any message (``push=False``: no callback). Returns the msgid."""
        if external_userid not in self._customers:
            raise KeyError(f"no kf customer {external_userid!r}: use new_customer()")
        kfid = self._account(open_kfid)
        msgid = self._store(kfid, external_userid, 3, msgtype, content, send_time)
        if push:
            self.push_event(kfid)
        return msgid

    def customer_enters(
        self, external_userid: str, *, open_kfid: str | None = None, scene: str = ""
    ) -> str:
        """The customer opens the session: an ``enter_session`` event with a welcome code."""
        kfid = self._account(open_kfid)
        code = secrets.token_urlsafe(16)
        self._codes[code] = (kfid, external_userid, self.clock() + CODE_TTL)
        event = {
            "event_type": "enter_session",
            "open_kfid": kfid,
            "external_userid": external_userid,
            "scene": scene,
            "welcome_code": code,
        }
        self._store(kfid, external_userid, 4, "event", event, None)
        self.push_event(kfid)
        return code

    def push_event(self, open_kfid: str) -> str | None:
        """Push ``kf_msg_or_event`` with a fresh 10-minute sync token; returns the token."""
        pusher = self._fake.pusher
        if pusher is None:
            return None
        token = self.issue_token()
        fields: dict[str, str | int] = {
            "FromUserName": "sys",
            "CreateTime": int(self.clock()),
            "MsgType": "event",
            "Event": "kf_msg_or_event",
            "Token": token,
            "OpenKfId": open_kfid,
        }
        pusher.send(event_xml(self._fake.corp_id, fields))
        return token

    def issue_token(self) -> str:
        """A sync token as a callback would carry, valid 10 minutes (for tests without one)."""
        token = secrets.token_urlsafe(24)
        self._tokens[token] = self.clock() + TOKEN_TTL
        return token

    def expire_tokens(self) -> None:
        """Every sync token handed out so far stops working (95007)."""
        self._tokens.clear()

    def put_media(self, kind: str, filename: str, data: bytes) -> str:
        """Store a file as if uploaded (a customer's image, say); returns its media_id."""
        media_id = self._id("3" + kind[:1])
        content_type = {"image": "image/jpeg", "voice": "audio/amr", "video": "video/mp4"}
        self._media[media_id] = (
            kind,
            filename,
            data,
            content_type.get(kind, "application/octet-stream"),
            self.clock(),
        )
        return media_id

    def sent_to(self, external_userid: str) -> list[SentKfMessage]:
        return [s for s in self.sent if s.touser == external_userid]

    def _account(self, open_kfid: str | None) -> str:
        kfid = self.open_kfid if open_kfid is None else open_kfid
        if kfid not in self.accounts:
            raise KeyError(f"no kf account {kfid!r}")
        return kfid

    def _store(
        self,
        open_kfid: str,
        external_userid: str,
        origin: int,
        msgtype: str,
        content: Mapping[str, Any],
        send_time: int | None,
        servicer_userid: str = "",
    ) -> str:
        msgid = self._id("msg")
        message: Answer = {
            "msgid": msgid,
            "open_kfid": open_kfid,
            "external_userid": external_userid,
            "send_time": int(self.clock()) if send_time is None else send_time,
            "origin": origin,
            "msgtype": msgtype,
            msgtype: dict(content),
        }
        if servicer_userid:
            message["servicer_userid"] = servicer_userid
        self.messages.append(message)
        return msgid

    # -- endpoints --

    def routes(self) -> dict[str, tuple[str, Handler]]:
        return {
            "kf/sync_msg": ("POST", self._sync_msg),
            "kf/send_msg": ("POST", self._send_msg),
            "kf/send_msg_on_event": ("POST", self._send_msg_on_event),
            "kf/account/list": ("POST", self._account_list),
            "kf/service_state/get": ("POST", self._state_get),
            "kf/service_state/trans": ("POST", self._state_trans),
            "media/upload": ("POST", self._media_upload),
            "media/get": ("GET", self._media_get),
        }

    @staticmethod
    async def _body(request: web.Request) -> Answer | None:
        try:
            data = json.loads(await request.read())
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _tokenless_allowed(self, now: float) -> bool:
        """WeCom staff: past 10 token-less calls a minute, 45009 and a minute's block."""
        self.tokenless_calls += 1
        if now < self._blocked_until:
            return False
        if self._tokenless.count(now) >= TOKENLESS_CALLS:
            self._blocked_until = now + TOKENLESS_PERIOD
            return False
        self._tokenless.add(now)
        return True

    async def _sync_msg(self, request: web.Request) -> Answer:
        self.sync_calls += 1
        data = await self._body(request)
        if data is None:
            return _bad(47001, "data format error")
        now = self.clock()
        token = data.get("token")
        if token:
            if not isinstance(token, str) or self._tokens.get(token, 0.0) <= now:
                return _bad(95007, "invalid msg token")
        elif not self._tokenless_allowed(time.monotonic()):
            self.tokenless_violations += 1
            # A real 45009 answer still carried an empty msg_list.
            return {**_bad(45009, "api freq out of limit"), "msg_list": []}
        limit = data.get("limit", 1000)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            return _bad(40058, "limit must be 1 to 1000")
        open_kfid = data.get("open_kfid")
        if open_kfid is not None and open_kfid not in self.accounts:
            return _bad(95000, "invalid open_kfid")
        cursor = data.get("cursor") or ""
        pos = 0
        if cursor:
            found = _position(cursor) if isinstance(cursor, str) else None
            if found is None or found > len(self.messages):
                return _bad(40058, "invalid cursor")
            pos = found
        # A page scans `limit` stored messages; those of other accounts or older
        # than the window are left out, so a page may be empty with has_more=1.
        scanned = self.messages[pos : pos + limit]
        oldest = now - WINDOW
        page = [
            m
            for m in scanned
            if (open_kfid is None or m["open_kfid"] == open_kfid) and m["send_time"] >= oldest
        ]
        end = pos + len(scanned)
        return {
            "next_cursor": _cursor(end),
            "has_more": 1 if end < len(self.messages) else 0,
            "msg_list": page,
        }

    def _check_message(self, data: Answer) -> tuple[str, Answer, str] | Answer:
        """The msgtype, content and msgid of a message to send, or an error answer."""
        msgtype = data.get("msgtype")
        content = data.get(msgtype) if isinstance(msgtype, str) else None
        if not isinstance(msgtype, str) or not isinstance(content, dict):
            return _bad(40058, "msgtype and its content are required")
        if msgtype == "text" and not content.get("content"):
            return _bad(40058, "text content is empty")
        msgid = data.get("msgid")
        if msgid is None:
            msgid = self._id("srv")
        elif not isinstance(msgid, str) or not 1 <= len(msgid) <= 32:
            return _bad(40058, "invalid msgid")
        return msgtype, content, msgid

    def _record(self, sent: SentKfMessage) -> Answer:
        # A msgid sent again is the same message: answered, not sent twice.
        # (How WeCom answers a repeated msgid is not documented; the fake is idempotent.)
        if sent.msgid not in self._sent_ids:
            self._sent_ids[sent.msgid] = sent
            self.sent.append(sent)
            self._store(sent.open_kfid, sent.touser, 5, sent.msgtype, sent.content, None, "bot")
        return {"msgid": sent.msgid}

    async def _send_msg(self, request: web.Request) -> Answer:
        data = await self._body(request)
        if data is None:
            return _bad(47001, "data format error")
        touser, open_kfid = data.get("touser"), data.get("open_kfid")
        if not isinstance(touser, str) or not touser:
            return _bad(40058, "touser is required")
        if open_kfid not in self.accounts:
            return _bad(95000, "invalid open_kfid")
        checked = self._check_message(data)
        if isinstance(checked, dict):
            return checked
        msgtype, content, msgid = checked
        return self._record(SentKfMessage(msgid, touser, str(open_kfid), msgtype, content))

    async def _send_msg_on_event(self, request: web.Request) -> Answer:
        data = await self._body(request)
        if data is None:
            return _bad(47001, "data format error")
        code = data.get("code")
        entry = self._codes.get(code) if isinstance(code, str) else None
        if entry is None or entry[2] <= self.clock():
            return _bad(40058, "invalid code")
        checked = self._check_message(data)
        if isinstance(checked, dict):
            return checked
        msgtype, content, msgid = checked
        if msgid not in self._sent_ids:
            del self._codes[str(code)]  # usable once
        open_kfid, touser, _ = entry
        return self._record(SentKfMessage(msgid, touser, open_kfid, msgtype, content, code))

    async def _account_list(self, request: web.Request) -> Answer:
        data = await self._body(request) or {}
        offset, limit = data.get("offset", 0), data.get("limit", 100)
        if not isinstance(offset, int) or not isinstance(limit, int) or not 1 <= limit <= 100:
            return _bad(40058, "limit must be 1 to 100")
        accounts = list(self.accounts.values())[offset : offset + limit]
        return {"account_list": accounts}

    def _session(self, data: Answer) -> tuple[str, str] | Answer:
        open_kfid, external_userid = data.get("open_kfid"), data.get("external_userid")
        if open_kfid not in self.accounts:
            return _bad(95000, "invalid open_kfid")
        if not isinstance(external_userid, str) or not external_userid:
            return _bad(40058, "external_userid is required")
        return str(open_kfid), external_userid

    async def _state_get(self, request: web.Request) -> Answer:
        session = self._session(await self._body(request) or {})
        if isinstance(session, dict):
            return session
        state, servicer = self._states.get(session, (0, ""))
        answer: Answer = {"service_state": state}
        if servicer:
            answer["servicer_userid"] = servicer
        return answer

    async def _state_trans(self, request: web.Request) -> Answer:
        data = await self._body(request) or {}
        session = self._session(data)
        if isinstance(session, dict):
            return session
        state, servicer = data.get("service_state"), data.get("servicer_userid") or ""
        if state not in (1, 2, 3, 4) or isinstance(state, bool):
            return _bad(40058, "invalid service_state")
        if state == 3 and self._fake.corp.member_index(servicer) is None:
            return _bad(40003, "invalid servicer_userid")
        self._states[session] = (int(state), servicer if state == 3 else "")
        code = secrets.token_urlsafe(16)
        self._codes[code] = (session[0], session[1], self.clock() + CODE_TTL)
        return {"msg_code": code}

    async def _media_upload(self, request: web.Request) -> Answer:
        kind = request.query.get("type", "")
        if kind not in MEDIA_LIMITS:
            return _bad(40004, "invalid media type")
        part = _form_file(request.headers.get("Content-Type", ""), await request.read(), "media")
        if part is None:
            return _bad(41005, "media data missing")
        filename, data = part
        if not 5 < len(data) <= MEDIA_LIMITS[kind]:
            return _bad(40009 if kind == "image" else 40058, "invalid media size")
        media_id = self.put_media(kind, filename, data)
        # WeCom answers created_at as a string.
        return {"type": kind, "media_id": media_id, "created_at": str(int(self.clock()))}

    async def _media_get(self, request: web.Request) -> Answer | web.StreamResponse:
        media = self._media.get(request.query.get("media_id", ""))
        if media is None or media[4] <= self.clock() - WINDOW:
            return _bad(40007, "invalid media_id")
        _, filename, data, content_type, _ = media
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )


def _form_file(content_type: str, body: bytes, field: str) -> tuple[str, bytes] | None:
    """The filename and bytes of one multipart/form-data field, or None."""
    if not content_type.startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    for part in message.iter_parts() if isinstance(message, Message) else ():
        params = dict(part.get_params(header="content-disposition") or [])
        if params.get("name") == field:
            payload = part.get_payload(decode=True)
            filename = part.get_filename() or ""
            return (filename, payload) if isinstance(payload, bytes) else None
    return None
