"""Which ``batch/get_by_user`` pairs can be used, shared by the stream and the sync.

Both must agree on what a pair is, so that a customer counted by one is counted by
the other. A pair needs a customer id and a member id; WeCom has sent pairs with
``external_contact: null``, and older samples of path/92994 show ``follow_info``
without ``userid``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["usable_pair"]


def usable_pair(
    item: object, userids: Sequence[str]
) -> tuple[str, str, Mapping[str, Any], Mapping[str, Any]] | None:
    """(external_userid, userid, external_contact, follow_info) of one pair, or None to skip.

    A ``follow_info`` without ``userid`` is given the chunk's member when the chunk
    (``userids``, the members the call asked for) has exactly one; with several it
    cannot be told whose customer it is, and the pair is skipped.
    """
    if not isinstance(item, Mapping):
        return None
    contact = item.get("external_contact")
    info = item.get("follow_info")
    if not isinstance(contact, Mapping) or not isinstance(info, Mapping):
        return None
    ext_id = contact.get("external_userid")
    if not isinstance(ext_id, str) or not ext_id:
        return None
    userid = info.get("userid")
    if userid is None or userid == "":
        if len(userids) != 1:
            return None
        userid = userids[0]
        info = {**info, "userid": userid}
    if not isinstance(userid, str):
        return None
    return ext_id, userid, contact, info
