"""Typed callback events, parsed from the decrypted XML.

Each field is the snake_case of its XML element (``ExternalUserID`` is
``external_user_id``). Every event also keeps all its top-level elements in
``fields`` and the whole plaintext in ``xml``, so nothing WeCom adds is lost.

Pages: 客户变更事件 https://developer.work.weixin.qq.com/document/path/92130,
微信客服事件 https://developer.work.weixin.qq.com/document/path/94670.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..errors import WeComCallbackError
from ._xml import Fields, Lists, check_prolog, parse_fields

__all__ = [
    "CallbackEvent",
    "ExternalChatEvent",
    "ExternalContactEvent",
    "ExternalTagEvent",
    "KfMsgOrEvent",
    "UnknownEvent",
    "parse_event",
]

# Elements that tell one event from another when there is no MsgId. The ids (every
# element named ...Id or ...ID) are added to these.
_IDENTITY = (
    "FromUserName",
    "CreateTime",
    "TimeStamp",
    "MsgType",
    "Event",
    "InfoType",
    "ChangeType",
    "UpdateDetail",
    "TagType",
)


def _frozen_fields(value: Mapping[str, str]) -> Mapping[str, str]:
    if type(value) is types.MappingProxyType:  # made here, over a dict nobody else holds
        return value
    return types.MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class CallbackEvent:
    """What every callback has; the base of the typed events.

    Attributes:
        to_user_name: the corp id (or suite id) the callback was sent to.
        from_user_name: the sender; ``sys`` for events.
        create_time: seconds since the epoch, as WeCom stamped it.
        msg_type: ``event`` for events; ``text`` and others for messages.
        event: the event name, such as ``change_external_contact``.
        change_type: what changed, for change events.
        msg_id: a message's ``MsgId``; None for events.
        agent_id: the app's ``AgentID`` when sent.
        fields: every top-level element's text, by XML name.
        xml: the decrypted XML as received.
    """

    to_user_name: str = ""
    from_user_name: str = ""
    create_time: int = 0
    msg_type: str = ""
    event: str = ""
    change_type: str = ""
    msg_id: str | None = None
    agent_id: str | None = None
    fields: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_fields, repr=False, hash=False
    )
    xml: str = attrs.field(default="", repr=False, eq=False)

    @property
    def dedup_key(self) -> str:
        """The key a retried delivery of this callback shares with the first one.

        ``MsgId`` for messages; for events, FromUserName, CreateTime, Event,
        ChangeType and the ids (WeCom retries a callback 3 times, path/90930).
        """
        if self.msg_id:
            return f"msg:{self.msg_id}"
        names = [n for n in self.fields if n in _IDENTITY or n.endswith(("Id", "ID"))]
        text = "\x1f".join(f"{n}={self.fields[n]}" for n in sorted(names))
        return "evt:" + hashlib.sha256(text.encode()).hexdigest()[:40]


@attrs.frozen(kw_only=True)
class ExternalContactEvent(CallbackEvent):
    """``change_external_contact``: a customer added, edited or deleted.

    ``change_type`` is one of ``add_external_contact``, ``edit_external_contact``,
    ``add_half_external_contact``, ``del_external_contact`` (the member deleted the
    customer), ``del_follow_user`` (the customer deleted the member) and
    ``transfer_fail``. ``state`` and ``welcome_code`` come with adds, ``source``
    with deletes, ``fail_reason`` with failed transfers.
    """

    EVENT: ClassVar[str] = "change_external_contact"

    user_id: str = ""
    external_user_id: str = ""
    state: str | None = None
    welcome_code: str | None = attrs.field(default=None, repr=False)
    source: str | None = None
    fail_reason: str | None = None


@attrs.frozen(kw_only=True)
class ExternalChatEvent(CallbackEvent):
    """``change_external_chat``: a customer group created, updated or dismissed.

    For updates, ``update_detail`` says what (``add_member``, ``del_member``,
    ``change_owner``, ``change_name``, ``change_notice``); joins and quits carry
    ``join_scene`` / ``quit_scene``, ``mem_change_cnt`` and ``mem_change_list``.
    """

    EVENT: ClassVar[str] = "change_external_chat"

    chat_id: str = ""
    update_detail: str | None = None
    join_scene: int | None = None
    quit_scene: int | None = None
    mem_change_cnt: int | None = None
    mem_change_list: tuple[str, ...] = ()
    last_mem_ver: str | None = None
    cur_mem_ver: str | None = None


@attrs.frozen(kw_only=True)
class ExternalTagEvent(CallbackEvent):
    """``change_external_tag``: a customer tag or tag group created, changed or deleted.

    ``tag_type`` is ``tag`` or ``tag_group``; ``change_type`` is ``create``,
    ``update``, ``delete`` or ``shuffle``.
    """

    EVENT: ClassVar[str] = "change_external_tag"

    id: str = ""
    tag_type: str = ""
    strategy_id: str | None = None


@attrs.frozen(kw_only=True)
class KfMsgOrEvent(CallbackEvent):
    """``kf_msg_or_event``: new WeChat customer-service messages are ready.

    Pass ``token`` (valid 10 minutes) to ``kf/sync_msg`` for ``open_kfid``. The
    token is a credential, so it is left out of the repr.
    """

    EVENT: ClassVar[str] = "kf_msg_or_event"

    token: str = attrs.field(default="", repr=False)
    open_kfid: str = ""

    @property
    def dedup_key(self) -> str:
        """As for any event, plus a hash of the token (never the token itself).

        Every ``kf_msg_or_event`` carries a new token and WeCom's retries repeat it,
        so two callbacks in the same second are two, not one retried (path/94670).
        """
        key = super().dedup_key
        if not self.token:
            return key
        return f"{key}:{hashlib.sha256(self.token.encode()).hexdigest()[:16]}"


@attrs.frozen(kw_only=True)
class UnknownEvent(CallbackEvent):
    """A message or event this library has no model for; see ``fields`` and ``xml``."""


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _common(fields: Mapping[str, str], xml: str) -> dict[str, Any]:
    return {
        "to_user_name": fields.get("ToUserName", ""),
        "from_user_name": fields.get("FromUserName", ""),
        "create_time": _int(fields.get("CreateTime")) or 0,
        "msg_type": fields.get("MsgType", ""),
        "event": fields.get("Event", ""),
        "change_type": fields.get("ChangeType", ""),
        "msg_id": fields.get("MsgId") or None,
        "agent_id": fields.get("AgentID") or None,
        "fields": types.MappingProxyType(fields),
        "xml": xml,
    }


def parse_event(xml: str | bytes) -> CallbackEvent:
    """Parse a decrypted callback into its typed event (or :class:`UnknownEvent`).

    The XML is parsed safely: UTF-8 only, no DOCTYPE, no entities; whitespace
    around CDATA is ignored.

    Raises:
        WeComCallbackError: the XML is malformed, unsafe or not UTF-8 (its message
            starts "bad plaintext").
    """
    try:
        text = xml.decode("utf-8") if isinstance(xml, bytes) else xml
        if not text.startswith("<xml>"):  # how WeCom starts: nothing before the root
            check_prolog(text[:256].encode("utf-8", "replace"), "bad plaintext")
        fields, lists = parse_fields(text)
    except UnicodeDecodeError:
        raise WeComCallbackError("bad plaintext: the callback XML is not UTF-8") from None
    except WeComCallbackError as exc:
        if str(exc).startswith("bad plaintext"):
            raise
        raise WeComCallbackError(f"bad plaintext: {exc}") from None
    return event_from_fields(fields, lists, text)


def event_from_fields(fields: Fields, lists: Lists, xml: str) -> CallbackEvent:
    """The typed event for a callback's parsed fields (see :func:`parse_event`).

    ``lists`` holds the texts of the items of each top-level element that has
    child elements (``MemChangeList``); ``xml`` is the plaintext they came from.
    The event keeps ``fields`` itself (read-only): pass a dict nobody else changes.
    """
    common = _common(fields, xml)
    get = fields.get
    event = common["event"] if common["msg_type"] == "event" else ""
    if event == ExternalContactEvent.EVENT:
        return ExternalContactEvent(
            **common,
            user_id=get("UserID", ""),
            external_user_id=get("ExternalUserID", ""),
            state=get("State"),
            welcome_code=get("WelcomeCode"),
            source=get("Source"),
            fail_reason=get("FailReason"),
        )
    if event == ExternalChatEvent.EVENT:
        return ExternalChatEvent(
            **common,
            chat_id=get("ChatId", ""),
            update_detail=get("UpdateDetail"),
            join_scene=_int(get("JoinScene")),
            quit_scene=_int(get("QuitScene")),
            mem_change_cnt=_int(get("MemChangeCnt")),
            mem_change_list=lists.get("MemChangeList", ()),
            last_mem_ver=get("LastMemVer"),
            cur_mem_ver=get("CurMemVer"),
        )
    if event == ExternalTagEvent.EVENT:
        return ExternalTagEvent(
            **common, id=get("Id", ""), tag_type=get("TagType", ""), strategy_id=get("StrategyId")
        )
    if event == KfMsgOrEvent.EVENT:
        return KfMsgOrEvent(**common, token=get("Token", ""), open_kfid=get("OpenKfId", ""))
    return UnknownEvent(**common)
