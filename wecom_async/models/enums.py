"""The enumerated fields of WeCom's answers, as :class:`enum.IntEnum`.

A model field annotated with one of these holds the member for a value listed
here, and the plain ``int`` for any other: WeCom adds values (``add_way`` grew
from 10 to 24 over the years) and a new one must not fail a whole answer. Both
compare equal to the number, so ``contact.gender == 1`` and
``contact.gender == Gender.MALE`` mean the same; :func:`wecom_async.to_dict`
writes plain numbers either way.
"""

from __future__ import annotations

import enum

__all__ = [
    "AddWay",
    "ChannelsScene",
    "ChannelsSource",
    "ContactType",
    "ExternalAttrType",
    "Gender",
    "KfOrigin",
    "ServiceState",
    "TagType",
]


class ContactType(enum.IntEnum):
    """``external_contact.type``: who the customer is."""

    UNKNOWN = 0
    WECHAT = 1
    """A WeChat user."""
    WECOM = 2
    """A WeCom user of another corp."""


class Gender(enum.IntEnum):
    """``gender`` of a customer; third-party and agent-developed apps always get 0."""

    UNKNOWN = 0
    MALE = 1
    FEMALE = 2


class ExternalAttrType(enum.IntEnum):
    """``external_attr.type``: which of ``text``, ``web`` and ``miniprogram`` is set."""

    TEXT = 0
    WEB = 1
    MINIPROGRAM = 2


class TagType(enum.IntEnum):
    """``follow_user.tags.type``: who made the tag."""

    UNKNOWN = 0
    CORP = 1
    """Set up by the corp; has a ``tag_id``."""
    PERSONAL = 2
    """A member's own tag; WeCom sends no ``tag_id``."""
    RULE_GROUP = 3
    """A tag of a rule group."""


class AddWay(enum.IntEnum):
    """``add_way``: how the member and the customer became contacts (来源定义, path/92114)."""

    UNKNOWN = 0
    QR_CODE = 1
    MOBILE_SEARCH = 2
    BUSINESS_CARD = 3
    GROUP_CHAT = 4
    PHONE_CONTACTS = 5
    WECHAT_CONTACTS = 6
    THIRD_PARTY_APP = 8
    EMAIL_SEARCH = 9
    CHANNELS = 10
    """Through WeChat Channels: ``wechat_channels`` says which."""
    SCHEDULE = 11
    MEETING = 12
    WECHAT_FRIEND_WECOM = 13
    SMART_HARDWARE = 14
    ON_SITE_SERVICE = 15
    ACQUISITION_LINK = 16
    CUSTOM_DEVELOPMENT = 17
    DEMAND_REPLY = 18
    THIRD_PARTY_PRESALES = 21
    BUSINESS_PARTNER = 22
    WECHAT_FRIEND_REQUEST = 24
    SHARED_BY_MEMBER = 201
    ASSIGNED_BY_ADMIN = 202


class ChannelsSource(enum.IntEnum):
    """``wechat_channels.source``: where on WeChat Channels the customer was added."""

    UNKNOWN = 0
    HOME_PAGE = 1
    LIVE_ROOM = 2
    LEAD_FORM = 3


class ChannelsScene(enum.IntEnum):
    """``enter_session_context.wechat_channels.scene``: the Channels page of the session."""

    UNKNOWN = 0
    HOME_PAGE = 1
    LIVE_PRODUCTS = 2
    SHOWCASE = 3
    SHOP_PRODUCT = 4
    SHOP_ORDER = 5


class KfOrigin(enum.IntEnum):
    """``origin`` of a ``kf/sync_msg`` message: who sent it."""

    UNKNOWN = 0
    CUSTOMER = 3
    EVENT = 4
    """A system event."""
    SERVICER = 5
    """A servicer, or this app through ``kf.send_msg``."""


class ServiceState(enum.IntEnum):
    """A kf session's ``service_state`` (path/94669)."""

    NEW = 0
    BOT = 1
    """Handled by a bot (智能助手)."""
    QUEUED = 2
    """Waiting in the queue for a servicer."""
    SERVICER = 3
    """Served by a servicer."""
    ENDED = 4
