"""WeChat customer service (微信客服) endpoints (``kf/*``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._converter import decode
from .._paging import array_field, chunked, gather_all, unique_ids
from ..models.kf import KfCustomerBatch
from ._base import Namespace

__all__ = ["KfAPI"]

#: kf/customer/batchget takes 1 to 100 ids a call.
BATCHGET_MAX_IDS = 100


class KfAPI(Namespace):
    """``client.kf``: WeChat customer service."""

    __slots__ = ()

    async def batchget_customers(
        self,
        external_userid_list: Iterable[str],
        *,
        need_enter_session_context: bool = False,
    ) -> KfCustomerBatch:
        """Get customers' basic info, for any number of ids.

        POST /cgi-bin/kf/customer/batchget
        https://developer.work.weixin.qq.com/document/path/95149

        Duplicate ids are dropped; the rest are sent in chunks of 100 concurrently,
        and the answers merged in request order. Ids WeCom will not answer for
        (no session in the past 48 hours) come back in ``invalid_external_userid``.

        Raises:
            WeComInputError: the list is empty, a bare string, or holds a non-id.
        """
        path = "kf/customer/batchget"
        ids = unique_ids(external_userid_list, "external_userid_list")
        flag = 1 if need_enter_session_context else 0

        async def one_chunk(chunk: list[str]) -> dict[str, Any]:
            body = {"external_userid_list": chunk, "need_enter_session_context": flag}
            return await self._client._call("POST", path, None, body)

        pages = await gather_all(one_chunk(list(c)) for c in chunked(ids, BATCHGET_MAX_IDS))
        merged: dict[str, list[Any]] = {"customer_list": [], "invalid_external_userid": []}
        for page in pages:
            for key, items in merged.items():
                items.extend(array_field(page, key, path))
        return decode(merged, KfCustomerBatch, path=path)
