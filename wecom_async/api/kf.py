"""WeChat customer service (微信客服) endpoints (``kf/*``)."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, Final

import attrs

from .._call_options import CallOptions, ExtraBudget
from .._fast_decode import FastDecoder, FastPage, MergedPages, array_of, decode_page
from .._paging import (
    Stream,
    chunked,
    follow_cursor,
    gather_all,
    require_id,
    unique_ids,
)
from .._ratelimit import RateLimit
from .._wire import keep_raw
from ..errors import WeComDecodeError, WeComInputError
from ..models.kf import (
    KF_TYPED_MSGTYPES,
    KfAccount,
    KfCustomerBatch,
    KfMessage,
    KfServiceState,
    KfSyncPage,
)
from ._base import Namespace

__all__ = ["SYNC_WITHOUT_TOKEN_LIMIT", "KfAPI", "KfMessageStream"]

#: kf/customer/batchget takes 1 to 100 ids a call.
BATCHGET_MAX_IDS = 100

#: kf/sync_msg answers at most 1000 messages a call (path/94670).
SYNC_MAX_LIMIT: Final = 1000

#: WeCom staff: without a valid callback token, more than 10 kf/sync_msg calls a
#: minute answer 45009 and block the API for a minute (facts file, path/94670).
SYNC_WITHOUT_TOKEN_LIMIT: Final = RateLimit(10, 60.0)
_WITHOUT_TOKEN = ExtraBudget("kf/sync_msg#without-token", (SYNC_WITHOUT_TOKEN_LIMIT,))

#: Answers decoded straight into their models when they fit.
_BATCHGET = CallOptions(fast=FastDecoder(KfCustomerBatch))
_SERVICE_STATE = CallOptions(fast=FastDecoder(KfServiceState))
_SYNC_PAGE = FastDecoder(KfSyncPage)


@attrs.frozen(kw_only=True)
class _AccountPage:
    """One page of ``kf/account/list``."""

    account_list: tuple[KfAccount, ...] = ()


_ACCOUNTS = CallOptions(fast=FastDecoder(_AccountPage))

#: send_msg's msgid: at most 32 bytes of digits, letters, ``_`` and ``-`` (path/94677).
_MSGID = re.compile(r"[0-9A-Za-z_-]{1,32}")

#: kf/account/list takes 1 to 100 accounts a page (path/94661).
_ACCOUNTS_PAGE: Final = 100


class KfMessageStream(Stream[KfMessage]):
    """The messages of a ``kf/sync_msg`` run, page after page.

    :attr:`next_cursor` is the cursor after the last page whose messages have all
    been taken from the stream; once the stream is exhausted it is the cursor to
    persist and pass next time.
    """

    def __init__(self, pages: AsyncGenerator[KfSyncPage, None], cursor: str) -> None:
        self.next_cursor = cursor
        """Where the next run starts: the cursor after the last page fully read."""
        super().__init__(self._messages(pages))

    async def _messages(
        self, pages: AsyncGenerator[KfSyncPage, None]
    ) -> AsyncGenerator[KfMessage, None]:
        async with contextlib.aclosing(pages):
            async for page in pages:
                for message in page.msg_list:
                    yield message
                self.next_cursor = page.next_cursor


class KfAPI(Namespace):
    """``client.kf``: WeChat customer service."""

    __slots__ = ()

    async def batchget_customers(
        self,
        external_userid_list: Iterable[str],
        *,
        need_enter_session_context: bool = False,
    ) -> KfCustomerBatch:
        """Get customers' basic info, for any number of ids.

        POST /cgi-bin/kf/customer/batchget
        https://developer.work.weixin.qq.com/document/path/95149

        Duplicate ids are dropped; the rest are sent in chunks of 100 concurrently,
        and the answers merged in request order. Ids WeCom will not answer for
        (no session in the past 48 hours) come back in ``invalid_external_userid``.

        Raises:
            WeComInputError: the list is empty, a bare string, or holds a non-id.
        """
        path = "kf/customer/batchget"
        ids = unique_ids(external_userid_list, "external_userid_list")
        flag = 1 if need_enter_session_context else 0

        async def one_chunk(chunk: list[str]) -> dict[str, Any]:
            body = {"external_userid_list": chunk, "need_enter_session_context": flag}
            return await self._client._call("POST", path, None, body, _BATCHGET)

        pages = await gather_all(one_chunk(list(c)) for c in chunked(ids, BATCHGET_MAX_IDS))
        batch = MergedPages(
            KfCustomerBatch, ("customer_list", "invalid_external_userid"), path=path
        )
        for page in pages:
            batch.add(page)
        return batch.result()

    # -- messages (path/94670, path/94677) --

    def sync_msg(
        self,
        *,
        token: str | None = None,
        open_kfid: str | None = None,
        cursor: str | None = None,
        limit: int = SYNC_MAX_LIMIT,
        voice_format: int | None = None,
    ) -> KfMessageStream:
        """Stream the messages after ``cursor``, following ``has_more`` to the end.

        POST /cgi-bin/kf/sync_msg
        https://developer.work.weixin.qq.com/document/path/94670

        Pass the ``token`` of the ``kf_msg_or_event`` callback (valid 10 minutes).
        Without one, WeCom answers 45009 and blocks the API for a minute past 10
        calls a minute, so such calls also hold a slot of a 10-a-minute budget
        (:data:`SYNC_WITHOUT_TOKEN_LIMIT`, shared like the client's own budget).
        No ``cursor`` starts at the earliest message of the past 3 days. Once the
        stream is exhausted, ``stream.next_cursor`` is the cursor to keep.

        ``has_more`` 1 with an empty page is legal, so empty pages do not end the
        stream; one that repeats a cursor or passes ``max_pages`` does
        (:class:`~wecom_async.WeComDecodeError`). The errcode is checked before the
        page: a 45009 arrives with an empty ``msg_list``.

        Raises:
            WeComInputError: an empty token, kf id or cursor, or a limit not in 1..1000.
        """
        pages = self.sync_msg_pages(
            token=token, open_kfid=open_kfid, cursor=cursor, limit=limit, voice_format=voice_format
        )
        return KfMessageStream(pages, cursor or "")

    def sync_msg_pages(
        self,
        *,
        token: str | None = None,
        open_kfid: str | None = None,
        cursor: str | None = None,
        limit: int = SYNC_MAX_LIMIT,
        voice_format: int | None = None,
    ) -> AsyncGenerator[KfSyncPage, None]:
        """The pages of :meth:`sync_msg`, each with its ``next_cursor``.

        For callers that checkpoint per page (the message pump does).
        """
        path = "kf/sync_msg"
        body: dict[str, Any] = {"limit": _sync_limit(limit)}
        if token is not None:
            body["token"] = require_id(token, "token")
        if open_kfid is not None:
            body["open_kfid"] = require_id(open_kfid, "open_kfid")
        if cursor is not None and cursor != "":
            body["cursor"] = require_id(cursor, "cursor")
        if voice_format is not None:
            if voice_format not in (0, 1) or isinstance(voice_format, bool):
                raise WeComInputError(
                    f"voice_format must be 0 (amr) or 1 (silk), got {voice_format!r}"
                )
            body["voice_format"] = voice_format
        options = CallOptions(extra_budget=None if token else _WITHOUT_TOKEN, fast=_SYNC_PAGE)
        client = self._client

        async def call(page_body: Mapping[str, Any]) -> dict[str, Any]:
            return await client._call("POST", path, None, page_body, options)

        async def pages() -> AsyncGenerator[KfSyncPage, None]:
            async for data in follow_cursor(
                call,
                body,
                path,
                items_key="msg_list",
                max_pages=client.max_pages,
                more=_has_more,
                # has_more=1 with an empty page is legal (path/94670): a run of
                # empty pages ends only at a repeated cursor or max_pages.
                max_empty_pages=client.max_pages,
            ):
                yield _sync_page(data, path)

        return pages()

    async def send_msg(
        self,
        touser: str,
        open_kfid: str,
        msgtype: str,
        content: Mapping[str, Any],
        *,
        msgid: str | None = None,
    ) -> str:
        """Send a message to a customer and return its msgid.

        POST /cgi-bin/kf/send_msg
        https://developer.work.weixin.qq.com/document/path/94677

        ``content`` is the body of the field named after ``msgtype``, such as
        ``{"content": "hi"}`` for ``text``. Without ``msgid`` one is generated, so
        that a try the client repeats (the answer was lost) carries the same msgid.
        Pass your own, derived from what you are answering, to make a re-run after
        a crash send the same message rather than a second one.

        Raises:
            WeComInputError: an empty id or msgtype, content that is not a mapping,
                or a msgid WeCom refuses (over 32 bytes, other than ``[0-9A-Za-z_-]``).
        """
        body = {
            "touser": require_id(touser, "touser"),
            "open_kfid": require_id(open_kfid, "open_kfid"),
            **_message(msgtype, content, msgid),
        }
        return await self._send("kf/send_msg", body)

    async def send_text(
        self, touser: str, open_kfid: str, text: str, *, msgid: str | None = None
    ) -> str:
        """Send ``text`` to a customer (:meth:`send_msg` with msgtype ``text``)."""
        if not isinstance(text, str) or not text:
            raise WeComInputError(f"text must be a non-empty string, got {text!r}")
        return await self.send_msg(touser, open_kfid, "text", {"content": text}, msgid=msgid)

    async def send_msg_on_event(
        self, code: str, msgtype: str, content: Mapping[str, Any], *, msgid: str | None = None
    ) -> str:
        """Send a welcome or end-of-session message for an event; returns its msgid.

        POST /cgi-bin/kf/send_msg_on_event
        https://developer.work.weixin.qq.com/document/path/95122

        ``code`` is the event's ``welcome_code`` (or ``msg_code``), usable once
        and within 20 seconds; ``msgtype`` is ``text`` or ``msgmenu``.
        """
        body = {"code": require_id(code, "code"), **_message(msgtype, content, msgid)}
        return await self._send("kf/send_msg_on_event", body)

    async def _send(self, path: str, body: dict[str, Any]) -> str:
        answer = await self._client._call("POST", path, None, body)
        msgid = answer.get("msgid")
        if not isinstance(msgid, str) or not msgid:
            raise WeComDecodeError(f"{path} answered without a msgid", path=path)
        return msgid

    # -- accounts and sessions (path/94661, path/94669) --

    async def list_accounts(self) -> tuple[KfAccount, ...]:
        """Every customer-service account of the corp.

        POST /cgi-bin/kf/account/list
        https://developer.work.weixin.qq.com/document/path/94661

        Pages of 100 are read until one comes back short (at most ``max_pages``).
        """
        path = "kf/account/list"
        accounts: list[KfAccount] = []
        for _ in range(self._client.max_pages):
            body = {"offset": len(accounts), "limit": _ACCOUNTS_PAGE}
            page = await self._client._call("POST", path, None, body, _ACCOUNTS)
            items = array_of(page, "account_list", KfAccount, path=path)
            accounts.extend(items)
            if len(items) < _ACCOUNTS_PAGE:
                return tuple(accounts)
        raise WeComDecodeError(
            f"{path}: the pager did not end after {self._client.max_pages} pages", path=path
        )

    async def get_service_state(self, open_kfid: str, external_userid: str) -> KfServiceState:
        """Who serves the customer now: a bot, the queue, a servicer, or nobody.

        POST /cgi-bin/kf/service_state/get
        https://developer.work.weixin.qq.com/document/path/94669
        """
        path = "kf/service_state/get"
        body = {
            "open_kfid": require_id(open_kfid, "open_kfid"),
            "external_userid": require_id(external_userid, "external_userid"),
        }
        page = await self._client._call("POST", path, None, body, _SERVICE_STATE)
        return decode_page(page, KfServiceState, path=path)

    async def trans_service_state(
        self,
        open_kfid: str,
        external_userid: str,
        service_state: int,
        servicer_userid: str | None = None,
    ) -> str:
        """Move the customer's session to another state; returns the ``msg_code``.

        POST /cgi-bin/kf/service_state/trans
        https://developer.work.weixin.qq.com/document/path/94669

        ``service_state``: 1 the bot, 2 the queue, 3 a servicer (``servicer_userid``
        required), 4 end the session. The ``msg_code``, when WeCom gives one, sends
        a message with :meth:`send_msg_on_event`.
        """
        path = "kf/service_state/trans"
        if service_state not in (1, 2, 3, 4) or isinstance(service_state, bool):
            raise WeComInputError(f"service_state must be 1, 2, 3 or 4, got {service_state!r}")
        body: dict[str, Any] = {
            "open_kfid": require_id(open_kfid, "open_kfid"),
            "external_userid": require_id(external_userid, "external_userid"),
            "service_state": service_state,
        }
        if service_state == 3 or servicer_userid is not None:
            body["servicer_userid"] = require_id(servicer_userid, "servicer_userid")
        answer = await self._client._call("POST", path, None, body)
        msg_code = answer.get("msg_code", "")
        return msg_code if isinstance(msg_code, str) else ""


def _sync_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= SYNC_MAX_LIMIT:
        raise WeComInputError(f"limit must be an integer in 1..{SYNC_MAX_LIMIT}, got {limit!r}")
    return limit


def _has_more(page: Mapping[str, Any]) -> bool:
    return bool(page.get("has_more"))


def _sync_page(data: dict[str, Any], path: str) -> KfSyncPage:
    """Decode one page; a message of a msgtype without a model keeps its whole JSON."""
    page = decode_page(data, KfSyncPage, path=path)
    if any(m.msgtype not in KF_TYPED_MSGTYPES for m in page.msg_list):
        # Only then is a fast page parsed again, for the raw JSON of those messages.
        page = keep_raw(page, data.json() if isinstance(data, FastPage) else data)
    return page


def _message(msgtype: object, content: object, msgid: object) -> dict[str, Any]:
    """The msgtype, its content and the msgid of a message to send."""
    kind = require_id(msgtype, "msgtype")
    if not isinstance(content, Mapping):
        raise WeComInputError(f"content must be a mapping, got {type(content).__name__}")
    if msgid is None:
        msgid = secrets.token_hex(16)
    elif not isinstance(msgid, str) or not _MSGID.fullmatch(msgid):
        raise WeComInputError(f"msgid must be 1 to 32 of [0-9A-Za-z_-], got {msgid!r}"[:120])
    return {"msgid": msgid, "msgtype": kind, kind: dict(content)}
