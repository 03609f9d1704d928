"""The same shapes as wecom_async.models, as pydantic v2 models (the ``bench`` extra).

Lenient like the attrs models: extra keys ignored, absent keys defaulted; pydantic's
lax mode already turns "1" into 1.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ExternalAttrText(_Model):
    value: str = ""


class ExternalAttrWeb(_Model):
    url: str = ""
    title: str = ""


class ExternalAttrMiniprogram(_Model):
    appid: str = ""
    pagepath: str = ""
    title: str = ""


class ExternalAttr(_Model):
    type: int = 0
    name: str = ""
    text: ExternalAttrText | None = None
    web: ExternalAttrWeb | None = None
    miniprogram: ExternalAttrMiniprogram | None = None


class ExternalProfile(_Model):
    external_attr: tuple[ExternalAttr, ...] = ()


class ExternalContact(_Model):
    external_userid: str = ""
    name: str = ""
    type: int = 0
    gender: int = 0
    avatar: str | None = None
    unionid: str | None = None
    position: str | None = None
    corp_name: str | None = None
    corp_full_name: str | None = None
    external_profile: ExternalProfile | None = None


class FollowUserTag(_Model):
    group_name: str = ""
    tag_name: str = ""
    type: int = 0
    tag_id: str | None = None


class WechatChannels(_Model):
    nickname: str = ""
    source: int = 0


class FollowUser(_Model):
    userid: str = ""
    remark: str = ""
    description: str = ""
    createtime: int = 0
    remark_corp_name: str | None = None
    remark_mobiles: tuple[str, ...] = ()
    oper_userid: str | None = None
    add_way: int | None = None
    state: str | None = None
    wechat_channels: WechatChannels | None = None
    tags: tuple[FollowUserTag, ...] = ()


class ExternalContactDetail(_Model):
    external_contact: ExternalContact
    follow_user: tuple[FollowUser, ...] = ()


class SessionWechatChannels(_Model):
    nickname: str | None = None
    shop_nickname: str | None = None
    scene: int = 0


class EnterSessionContext(_Model):
    scene: str = ""
    scene_param: str = ""
    wechat_channels: SessionWechatChannels | None = None


class KfCustomer(_Model):
    external_userid: str = ""
    nickname: str = ""
    avatar: str | None = None
    gender: int = 0
    unionid: str | None = None
    enter_session_context: EnterSessionContext | None = None


class KfCustomerBatch(_Model):
    customer_list: tuple[KfCustomer, ...] = ()
    invalid_external_userid: tuple[str, ...] = ()
