"""Models of customer contact answers (``externalcontact/*``).

Attribute names are WeCom's wire names. Fields that WeCom only sometimes sends
(``unionid`` only for bound WeChat users, ``position`` only for WeCom users, and so
on) default to ``None``; arrays default to an empty tuple.

Page: https://developer.work.weixin.qq.com/document/path/92114
"""

from __future__ import annotations

import attrs

from .enums import AddWay, ChannelsSource, ContactType, ExternalAttrType, Gender, TagType

__all__ = [
    "BatchContact",
    "BatchGetByUserPage",
    "ExternalAttr",
    "ExternalAttrMiniprogram",
    "ExternalAttrText",
    "ExternalAttrWeb",
    "ExternalContact",
    "ExternalContactDetail",
    "ExternalProfile",
    "FailInfo",
    "FollowInfo",
    "FollowUser",
    "FollowUserTag",
    "SyncedCustomer",
    "WechatChannels",
]


@attrs.frozen(kw_only=True)
class ExternalAttrText:
    """A text attribute of a WeCom user's external profile."""

    value: str = ""


@attrs.frozen(kw_only=True)
class ExternalAttrWeb:
    """A web link attribute of a WeCom user's external profile."""

    url: str = ""
    title: str = ""


@attrs.frozen(kw_only=True)
class ExternalAttrMiniprogram:
    """A mini-program attribute of a WeCom user's external profile."""

    appid: str = ""
    pagepath: str = ""
    title: str = ""


@attrs.frozen(kw_only=True)
class ExternalAttr:
    """One external attribute; ``type`` 0 is text, 1 web, 2 mini-program."""

    type: ExternalAttrType = ExternalAttrType.TEXT
    name: str = ""
    text: ExternalAttrText | None = None
    web: ExternalAttrWeb | None = None
    miniprogram: ExternalAttrMiniprogram | None = None


@attrs.frozen(kw_only=True)
class ExternalProfile:
    """A WeCom user's custom external profile (only for ``type`` 2 contacts)."""

    external_attr: tuple[ExternalAttr, ...] = ()


@attrs.frozen(kw_only=True)
class ExternalContact:
    """The customer themself: a WeChat user (``type`` 1) or a WeCom user (``type`` 2)."""

    external_userid: str = ""
    name: str = ""
    type: ContactType = ContactType.UNKNOWN
    gender: Gender = Gender.UNKNOWN
    avatar: str | None = None
    unionid: str | None = None
    position: str | None = None
    corp_name: str | None = None
    corp_full_name: str | None = None
    external_profile: ExternalProfile | None = None


@attrs.frozen(kw_only=True)
class FollowUserTag:
    """A tag a member put on the customer.

    ``type`` 1 is a corp tag, 2 a member's own tag (which has no ``tag_id``),
    3 a rule-group tag.
    """

    group_name: str = ""
    tag_name: str = ""
    type: TagType = TagType.UNKNOWN
    tag_id: str | None = None


@attrs.frozen(kw_only=True)
class WechatChannels:
    """The WeChat Channels account a customer was added through (``add_way`` 10)."""

    nickname: str = ""
    source: ChannelsSource = ChannelsSource.UNKNOWN


@attrs.frozen(kw_only=True)
class _Relationship:
    """What a member recorded about a customer: the fields both answer shapes share."""

    userid: str = ""
    remark: str = ""
    description: str = ""
    createtime: int = 0
    remark_corp_name: str | None = None
    remark_mobiles: tuple[str, ...] = ()
    oper_userid: str | None = None
    add_way: AddWay | None = None
    state: str | None = None
    wechat_channels: WechatChannels | None = None


@attrs.frozen(kw_only=True)
class FollowUser(_Relationship):
    """One member who added the customer, with that member's remarks and tags."""

    tags: tuple[FollowUserTag, ...] = ()


@attrs.frozen(kw_only=True)
class ExternalContactDetail:
    """A customer's detail: the contact and every member who follows them.

    ``follow_user`` holds the followers of every cursor page, in order.
    """

    external_contact: ExternalContact
    follow_user: tuple[FollowUser, ...] = ()


@attrs.frozen(kw_only=True)
class FollowInfo(_Relationship):
    """One member's relationship to a customer, as ``batch/get_by_user`` gives it.

    Unlike :class:`FollowUser` it carries ``tag_id`` (ids only) instead of ``tags``.
    """

    tag_id: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class BatchContact:
    """One (customer, member) pair from ``batch/get_by_user``."""

    external_contact: ExternalContact
    follow_info: FollowInfo


@attrs.frozen(kw_only=True)
class SyncedCustomer:
    """A customer with every member who follows it, as the bulk sync merges them.

    ``follow_info`` holds one :class:`FollowInfo` per following member, by userid.
    """

    external_contact: ExternalContact
    follow_info: tuple[FollowInfo, ...] = ()


@attrs.frozen(kw_only=True)
class FailInfo:
    """Members whose customers could not be listed for lack of an interop licence."""

    unlicensed_userid_list: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class BatchGetByUserPage:
    """One page of ``batch/get_by_user``; an empty ``next_cursor`` means the last."""

    external_contact_list: tuple[BatchContact, ...] = ()
    next_cursor: str = ""
    fail_info: FailInfo | None = None
