"""Models of WeChat customer service (微信客服) answers (``kf/*``).

Page: https://developer.work.weixin.qq.com/document/path/95149
"""

from __future__ import annotations

import attrs

__all__ = ["EnterSessionContext", "KfCustomer", "KfCustomerBatch", "SessionWechatChannels"]


@attrs.frozen(kw_only=True)
class SessionWechatChannels:
    """The WeChat Channels page a customer entered the session from.

    ``scene`` 1-3 come with ``nickname``, 4-5 (shop pages) with ``shop_nickname``.
    """

    nickname: str | None = None
    shop_nickname: str | None = None
    scene: int = 0


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
    gender: int = 0
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
