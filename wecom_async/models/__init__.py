"""Typed, frozen models of WeCom answers. Attribute names are the wire names."""

from .external_contact import (
    BatchContact,
    BatchGetByUserPage,
    ExternalAttr,
    ExternalAttrMiniprogram,
    ExternalAttrText,
    ExternalAttrWeb,
    ExternalContact,
    ExternalContactDetail,
    ExternalProfile,
    FailInfo,
    FollowInfo,
    FollowUser,
    FollowUserTag,
    SyncedCustomer,
    WechatChannels,
)
from .kf import EnterSessionContext, KfCustomer, KfCustomerBatch, SessionWechatChannels
from .school import SchoolExternalContact, SchoolExternalContactDetail, SubscriberInfo

__all__ = [
    "BatchContact",
    "BatchGetByUserPage",
    "EnterSessionContext",
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
    "KfCustomer",
    "KfCustomerBatch",
    "SchoolExternalContact",
    "SchoolExternalContactDetail",
    "SessionWechatChannels",
    "SubscriberInfo",
    "SyncedCustomer",
    "WechatChannels",
]
