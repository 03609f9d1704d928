"""Models of WeChat customer service (微信客服) answers (``kf/*``).

Pages: https://developer.work.weixin.qq.com/document/path/95149 (customers),
path/94670 (sync_msg), path/94661 (accounts), path/94669 (session state).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .enums import ChannelsScene, Gender, KfOrigin, ServiceState

__all__ = [
    "KF_TYPED_MSGTYPES",
    "ORIGIN_CUSTOMER",
    "ORIGIN_EVENT",
    "ORIGIN_SERVICER",
    "EnterSessionContext",
    "KfAccount",
    "KfBusinessCard",
    "KfChannels",
    "KfContent",
    "KfCustomer",
    "KfCustomerBatch",
    "KfEvent",
    "KfLink",
    "KfLocation",
    "KfMedia",
    "KfMenuClick",
    "KfMenuItem",
    "KfMenuMiniprogram",
    "KfMenuText",
    "KfMenuView",
    "KfMessage",
    "KfMiniprogram",
    "KfMsgMenu",
    "KfServiceState",
    "KfSyncPage",
    "KfText",
    "SessionWechatChannels",
]


@attrs.frozen(kw_only=True)
class SessionWechatChannels:
    """The WeChat Channels page a customer entered the session from.

    ``scene`` 1-3 come with ``nickname``, 4-5 (shop pages) with ``shop_nickname``.
    """

    nickname: str | None = None
    shop_nickname: str | None = None
    scene: ChannelsScene = ChannelsScene.UNKNOWN


@attrs.frozen(kw_only=True)
class EnterSessionContext:
    """How the customer last entered a session in the past 48 hours."""

    scene: str = ""
    scene_param: str = ""
    wechat_channels: SessionWechatChannels | None = None


@attrs.frozen(kw_only=True)
class KfCustomer:
    """A WeChat customer of a customer-service account."""

    external_userid: str = ""
    nickname: str = ""
    avatar: str | None = None
    gender: Gender = Gender.UNKNOWN
    unionid: str | None = None
    enter_session_context: EnterSessionContext | None = None


@attrs.frozen(kw_only=True)
class KfCustomerBatch:
    """The merged answer of one or more ``kf/customer/batchget`` calls.

    ``invalid_external_userid`` lists the ids WeCom would not answer for, such as
    customers who have not entered a session in the past 48 hours.
    """

    customer_list: tuple[KfCustomer, ...] = ()
    invalid_external_userid: tuple[str, ...] = ()


# -- kf/sync_msg: messages and events (path/94670) --


@attrs.frozen(kw_only=True)
class KfText:
    """``text``: what the customer typed; ``menu_id`` when it was a menu click."""

    content: str = ""
    menu_id: str | None = None


@attrs.frozen(kw_only=True)
class KfMedia:
    """``image``, ``voice``, ``video`` or ``file``: download it with ``client.media.get``."""

    media_id: str = ""


@attrs.frozen(kw_only=True)
class KfLocation:
    """``location``: a place the customer shared."""

    latitude: float = 0.0
    longitude: float = 0.0
    name: str = ""
    address: str = ""


@attrs.frozen(kw_only=True)
class KfLink:
    """``link``: a shared web page."""

    title: str = ""
    desc: str = ""
    url: str = ""
    pic_url: str = ""


@attrs.frozen(kw_only=True)
class KfBusinessCard:
    """``business_card``: a member's card."""

    userid: str = ""


@attrs.frozen(kw_only=True)
class KfMiniprogram:
    """``miniprogram``: a mini program card."""

    title: str = ""
    appid: str = ""
    pagepath: str = ""
    thumb_media_id: str = ""


@attrs.frozen(kw_only=True)
class KfMenuClick:
    """A menu item that sends back its ``id`` (as ``text.menu_id``) when tapped."""

    id: str = ""
    content: str = ""


@attrs.frozen(kw_only=True)
class KfMenuView:
    """A menu item that opens ``url``."""

    url: str = ""
    content: str = ""


@attrs.frozen(kw_only=True)
class KfMenuMiniprogram:
    """A menu item that opens a mini program page."""

    appid: str = ""
    pagepath: str = ""
    content: str = ""


@attrs.frozen(kw_only=True)
class KfMenuText:
    """A line of plain text inside a menu."""

    content: str = ""
    no_newline: int = 0


@attrs.frozen(kw_only=True)
class KfMenuItem:
    """One item of a ``msgmenu``: ``type`` names the field that is set."""

    type: str = ""
    click: KfMenuClick | None = None
    view: KfMenuView | None = None
    miniprogram: KfMenuMiniprogram | None = None
    text: KfMenuText | None = None


@attrs.frozen(kw_only=True)
class KfMsgMenu:
    """``msgmenu``: a message with tappable items."""

    head_content: str = ""
    list: tuple[KfMenuItem, ...] = ()
    tail_content: str = ""


@attrs.frozen(kw_only=True)
class KfChannels:
    """``channels``: a WeChat Channels item the customer shared."""

    sub_type: int = 0
    nickname: str = ""
    title: str = ""


@attrs.frozen(kw_only=True)
class KfEvent:
    """``event``: a system event; ``event_type`` says which, and which fields are set.

    Among them ``enter_session`` (with ``welcome_code`` for
    ``kf.send_msg_on_event``), ``msg_send_fail``, ``servicer_status_change``,
    ``session_status_change``, ``user_recall_msg`` and ``servicer_recall_msg``.
    """

    event_type: str = ""
    open_kfid: str = ""
    external_userid: str = ""
    scene: str = ""
    scene_param: str = ""
    welcome_code: str = ""
    wechat_channels: SessionWechatChannels | None = None
    fail_msgid: str = ""
    fail_type: int = 0
    servicer_userid: str = ""
    status: int = 0
    stop_type: int = 0
    change_type: int = 0
    old_servicer_userid: str = ""
    new_servicer_userid: str = ""
    msg_code: str = ""
    recall_msgid: str = ""
    reject_switch: int = 0


#: The msgtypes with typed content; any other is kept whole in ``KfMessage.raw``.
KF_TYPED_MSGTYPES = frozenset(
    {
        "text",
        "image",
        "voice",
        "video",
        "file",
        "location",
        "link",
        "business_card",
        "miniprogram",
        "msgmenu",
        "channels",
        "event",
    }
)

KfContent = (
    KfText
    | KfMedia
    | KfLocation
    | KfLink
    | KfBusinessCard
    | KfMiniprogram
    | KfMsgMenu
    | KfChannels
    | KfEvent
)


@attrs.frozen(kw_only=True)
class KfMessage:
    """One message or event from ``kf/sync_msg``.

    The content sits in the field named after ``msgtype`` (``message.text.content``),
    also reachable as :attr:`content`. A msgtype without a model here (WeCom adds
    them: ``note``, ``merged_msg``, ``channels_shop_product`` ...) keeps the whole
    message as WeCom sent it in ``raw``; ``raw`` is ``None`` otherwise.

    ``origin`` is 3 for the customer, 4 for a system event, 5 for a servicer (or
    this app, through ``kf.send_msg``).
    """

    msgid: str = ""
    open_kfid: str = ""
    external_userid: str = ""
    send_time: int = 0
    origin: KfOrigin = KfOrigin.UNKNOWN
    servicer_userid: str = ""
    msgtype: str = ""
    text: KfText | None = None
    image: KfMedia | None = None
    voice: KfMedia | None = None
    video: KfMedia | None = None
    file: KfMedia | None = None
    location: KfLocation | None = None
    link: KfLink | None = None
    business_card: KfBusinessCard | None = None
    miniprogram: KfMiniprogram | None = None
    msgmenu: KfMsgMenu | None = None
    channels: KfChannels | None = None
    event: KfEvent | None = None
    raw: Mapping[str, Any] | None = attrs.field(default=None, eq=False)

    @property
    def content(self) -> KfContent | None:
        """The typed content for ``msgtype``, or None for a msgtype kept in ``raw``."""
        if self.msgtype not in KF_TYPED_MSGTYPES:
            return None
        value: KfContent | None = getattr(self, self.msgtype)
        return value

    @property
    def from_customer(self) -> bool:
        """Whether the customer sent it (``origin`` 3)."""
        return self.origin == ORIGIN_CUSTOMER


#: ``origin`` values: the customer, a system event, a servicer (or this app).
ORIGIN_CUSTOMER = KfOrigin.CUSTOMER
ORIGIN_EVENT = KfOrigin.EVENT
ORIGIN_SERVICER = KfOrigin.SERVICER


@attrs.frozen(kw_only=True)
class KfSyncPage:
    """One ``kf/sync_msg`` answer: messages, and the cursor to go on from.

    ``has_more`` 1 with an empty ``msg_list`` is legal: keep going.
    """

    next_cursor: str = ""
    has_more: int = 0
    msg_list: tuple[KfMessage, ...] = ()


# -- accounts and sessions (path/94661, path/94669) --


@attrs.frozen(kw_only=True)
class KfAccount:
    """A customer-service account (客服账号)."""

    open_kfid: str = ""
    name: str = ""
    avatar: str = ""
    manage_privilege: bool = False


@attrs.frozen(kw_only=True)
class KfServiceState:
    """Who serves a customer: ``service_state`` 0 new, 1 bot, 2 queue, 3 servicer, 4 ended."""

    service_state: ServiceState = ServiceState.NEW
    servicer_userid: str = ""
