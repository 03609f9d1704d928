"""Customer contact endpoints (``externalcontact/*``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from .._converter import decode
from .._paging import array_field, follow_cursor, require_id
from ..models.external_contact import ExternalContactDetail
from ._base import Namespace

__all__ = ["ExternalContactAPI"]


class ExternalContactAPI(Namespace):
    """``client.external_contact``: customers and the members who follow them."""

    __slots__ = ()

    async def get(self, external_userid: str) -> ExternalContactDetail:
        """Get a customer's detail, with every follower from every cursor page.

        GET /cgi-bin/externalcontact/get
        https://developer.work.weixin.qq.com/document/path/92114

        WeCom pages ``follow_user`` once a customer has more than 500 followers;
        the pages are fetched in turn and their followers merged in order.
        """
        path = "externalcontact/get"
        require_id(external_userid, "external_userid")

        async def call(params: Mapping[str, Any]) -> dict[str, Any]:
            return await self._client._call("GET", path, params)

        first: dict[str, Any] | None = None
        follow_user: builtins.list[Any] = []
        async for page in follow_cursor(call, {"external_userid": external_userid}, path):
            if first is None:
                first = page
            follow_user.extend(array_field(page, "follow_user", path))
        assert first is not None
        return decode({**first, "follow_user": follow_user}, ExternalContactDetail, path=path)

    async def list(self, userid: str) -> builtins.list[str]:
        """List the external_userid of every customer of one member (no paging).

        GET /cgi-bin/externalcontact/list
        https://developer.work.weixin.qq.com/document/path/92113
        """
        path = "externalcontact/list"
        require_id(userid, "userid")
        page = await self._client._call("GET", path, {"userid": userid})
        return builtins.list(
            decode(array_field(page, "external_userid", path), tuple[str, ...], path=path)
        )

    async def get_follow_user_list(self) -> builtins.list[str]:
        """List the userid of every member with customer contact enabled.

        GET /cgi-bin/externalcontact/get_follow_user_list
        https://developer.work.weixin.qq.com/document/path/92571
        """
        path = "externalcontact/get_follow_user_list"
        page = await self._client._call("GET", path)
        return builtins.list(
            decode(array_field(page, "follow_user", path), tuple[str, ...], path=path)
        )
