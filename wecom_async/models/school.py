"""Models of the school (家校沟通) variant of ``externalcontact/get``.

Page: https://developer.work.weixin.qq.com/document/path/91670
"""

from __future__ import annotations

import attrs

from .external_contact import ExternalContact, FollowUser

__all__ = ["SchoolExternalContact", "SchoolExternalContactDetail", "SubscriberInfo"]


@attrs.frozen(kw_only=True)
class SubscriberInfo:
    """What the school recorded about a parent."""

    tag_id: tuple[str, ...] = ()
    remark_mobiles: tuple[str, ...] = ()
    remark: str = ""


@attrs.frozen(kw_only=True)
class SchoolExternalContact(ExternalContact):
    """A parent: the customer fields plus the school's subscription data.

    ``is_subscribe`` is 1 when the parent follows the school's notices; WeCom
    sends it only then, so 0 means "not sent".
    """

    is_subscribe: int = 0
    subscriber_info: SubscriberInfo | None = None


@attrs.frozen(kw_only=True)
class SchoolExternalContactDetail:
    """A parent's detail and the members who follow them (no cursor paging)."""

    external_contact: SchoolExternalContact
    follow_user: tuple[FollowUser, ...] = ()
