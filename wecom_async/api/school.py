"""School contact (家校沟通) endpoints."""

from __future__ import annotations

from .._call_options import CallOptions
from .._fast_decode import FastDecoder, decode_page
from .._paging import require_id
from ..models.school import SchoolExternalContactDetail
from ._base import Namespace

__all__ = ["SchoolAPI"]

_DETAIL = CallOptions(fast=FastDecoder(SchoolExternalContactDetail))


class SchoolAPI(Namespace):
    """``client.school``: parents as a school's external contacts."""

    __slots__ = ()

    async def get_external_contact(self, external_userid: str) -> SchoolExternalContactDetail:
        """Get a parent's detail, with ``is_subscribe`` and ``subscriber_info``.

        GET /cgi-bin/externalcontact/get (the school variant; no cursor paging)
        https://developer.work.weixin.qq.com/document/path/91670
        """
        path = "externalcontact/get"
        require_id(external_userid, "external_userid")
        params = {"external_userid": external_userid}
        page = await self._client._call("GET", path, params, None, _DETAIL)
        return decode_page(page, SchoolExternalContactDetail, path=path)
