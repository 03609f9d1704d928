"""The fake's built-in customer-contact endpoints, one function each.

Each takes the :class:`FakeWeCom` and the request, and returns the answer's fields
(the pipeline adds ``errcode`` 0 and ``errmsg``) or raises :class:`Reject` to
answer an errcode. Token checks, limits, latency and faults happen before, in
``_pipeline.py``; customer service is in ``_kf.py``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._data import _mix

if TYPE_CHECKING:
    from ._server import FakeWeCom

Answer = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[Answer | web.StreamResponse]]
RouteHandler = Callable[
    [Mapping[str, str], "dict[str, Any] | None"], "Mapping[str, Any] | Awaitable[Mapping[str, Any]]"
]
"""What :meth:`FakeWeCom.route` takes: (query, JSON body or None) -> answer dict."""

#: Customers per member above which a member's customer list is built off the loop.
_INLINE_STEPS = 20_000


class Reject(Exception):
    """Raised inside a handler to answer an errcode."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


def contact_routes(fake: FakeWeCom) -> dict[str, tuple[str, Handler]]:
    """The customer-contact paths, with their methods and handlers, bound to ``fake``."""
    table: dict[str, tuple[str, Callable[..., Awaitable[Answer]]]] = {
        "externalcontact/get": ("GET", get_contact),
        "externalcontact/list": ("GET", list_ids),
        "externalcontact/get_follow_user_list": ("GET", follow_user_list),
        "externalcontact/batch/get_by_user": ("POST", batch_get_by_user),
        "kf/customer/batchget": ("POST", kf_batchget),
    }
    return {path: (method, functools.partial(fn, fake)) for path, (method, fn) in table.items()}


def user_route(handler: RouteHandler) -> Handler:
    """A request handler that calls ``handler(query, body)``, sync or async.

    ``query`` leaves out ``access_token``; ``body`` is the decoded JSON object, or
    None for a request without one. A body that is not a JSON object answers
    47001, as WeCom does.
    """

    async def serve(request: web.Request) -> Answer:
        query = {k: v for k, v in request.query.items() if k != "access_token"}
        raw = await request.read()
        body = await json_body(request) if raw.strip() else None
        answer = handler(query, body)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, Mapping):
            raise TypeError(f"a fake.route handler must return a dict, got {type(answer).__name__}")
        return dict(answer)

    return serve


def _encode_cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, parts)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Reject(40058, "invalid cursor") from exc
    if len(parts) != count:
        raise Reject(40058, "invalid cursor")
    return parts


def _int_field(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read())
    except ValueError as exc:
        raise Reject(47001, "data format error: Warning: wrong json format.") from exc
    if not isinstance(data, dict):
        raise Reject(47001, "data format error")
    return data


async def get_contact(fake: FakeWeCom, request: web.Request) -> Answer:
    ext_id = request.query.get("external_userid")
    if not ext_id:
        raise Reject(41035, "missing external userid")
    corp = fake.corp
    parent = corp.parent_index(ext_id)
    if parent is not None:
        return corp.parent_detail(parent)
    i = corp.customer_index(ext_id)
    if i is None:
        raise Reject(40096, "invalid external userid")
    followers = corp.followers(i)
    if not followers:  # every member's relationship ended (a callbacks change)
        raise Reject(84061, "not external contact")
    offset = 0
    cursor = request.query.get("cursor")
    if cursor:
        who, start = _decode_cursor(cursor, 2)
        if who != str(i) or not start.isdigit() or int(start) >= len(followers):
            raise Reject(40058, "invalid cursor")
        offset = int(start)
    page = followers[offset : offset + fake.page_size]
    answer: Answer = {
        "external_contact": corp.contact(i),
        "follow_user": [corp.follow_user(i, m) for m in page],
    }
    if offset + fake.page_size < len(followers):
        answer["next_cursor"] = _encode_cursor(i, offset + fake.page_size)
    return answer


async def customers_of(fake: FakeWeCom, m: int) -> tuple[int, ...]:
    """A member's customers; stepped out in a thread when that is long work.

    The fake shares its event loop with the client under test: a member of a
    corp with few members and a million customers takes seconds to step out,
    which must not stall the client's timers.
    """
    corp = fake.corp
    if corp.customers // corp.members > _INLINE_STEPS:
        return await asyncio.to_thread(corp.customers_of, m)
    return corp.customers_of(m)


def member(fake: FakeWeCom, userid: object) -> int:
    m = fake.corp.member_index(userid) if isinstance(userid, str) else None
    if m is None:
        raise Reject(40003, f"invalid userid {userid!r}"[:80])
    return m


async def list_ids(fake: FakeWeCom, request: web.Request) -> Answer:
    userid = request.query.get("userid")
    if not userid:
        raise Reject(41009, "missing userid")
    customers = await customers_of(fake, member(fake, userid))
    if not customers:
        raise Reject(84061, "not external contact")
    return {"external_userid": [fake.corp.customer_id(i) for i in customers]}


async def follow_user_list(fake: FakeWeCom, request: web.Request) -> Answer:
    return {"follow_user": list(fake.corp.userids)}


async def batch_get_by_user(fake: FakeWeCom, request: web.Request) -> Answer:
    data = await json_body(request)
    userids = data.get("userid_list")
    if not userids:
        raise Reject(41009, "missing userid")
    if not isinstance(userids, list) or len(userids) > 100:
        raise Reject(40058, "userid_list must be a list of at most 100 userids")
    try:
        limit = _int_field(data.get("limit", 50))
    except ValueError:
        raise Reject(40058, "invalid limit") from None
    if not 1 <= limit <= 100:
        raise Reject(40058, "limit must be 1 to 100")
    members = [member(fake, u) for u in userids]
    licensed = [m for m in members if m not in fake.corp.unlicensed]
    unlicensed = [fake.corp.userids[m] for m in members if m in fake.corp.unlicensed]
    if not licensed:
        raise Reject(701008, "no member in the list has an interop licence")
    list_key = _mix(*members) & 0xFFFFFFFF
    pos, offset = 0, 0
    cursor = data.get("cursor")
    if cursor:
        if not isinstance(cursor, str):
            raise Reject(40058, "invalid cursor")
        key, p, o = _decode_cursor(cursor, 3)
        if key != str(list_key) or not p.isdigit() or not o.isdigit():
            raise Reject(40058, "invalid cursor")
        pos, offset = int(p), int(o)
    items: list[Answer] = []
    while pos < len(licensed) and len(items) < limit:
        m = licensed[pos]
        customers = await customers_of(fake, m)
        take = customers[offset : offset + limit - len(items)]
        items.extend(
            {
                "external_contact": fake.corp.contact(i),
                "follow_info": fake.corp.follow_info(i, m),
            }
            for i in take
        )
        offset += len(take)
        if offset >= len(customers):
            pos, offset = pos + 1, 0
    answer: Answer = {
        "external_contact_list": items,
        "next_cursor": _encode_cursor(list_key, pos, offset) if pos < len(licensed) else "",
    }
    if unlicensed:
        answer["fail_info"] = {"unlicensed_userid_list": unlicensed}
    return answer


async def kf_batchget(fake: FakeWeCom, request: web.Request) -> Answer:
    data = await json_body(request)
    ids = data.get("external_userid_list")
    if not isinstance(ids, list) or not ids:
        raise Reject(40058, "external_userid_list must hold 1 to 100 ids")
    if len(ids) > 100:
        raise Reject(40058, "external_userid_list holds more than 100 ids")
    flag = data.get("need_enter_session_context", 0)
    if flag not in (0, 1) or isinstance(flag, bool):
        raise Reject(40058, "need_enter_session_context must be 0 or 1")
    customers: list[Answer] = []
    invalid: list[str] = []
    for ext_id in ids:
        record = None
        if isinstance(ext_id, str):  # customers who wrote to the fake first
            record = fake.kf.customer(ext_id, bool(flag)) or fake.corp.kf_customer(
                ext_id, bool(flag)
            )
        if record is None:
            invalid.append(ext_id if isinstance(ext_id, str) else str(ext_id))
        else:
            customers.append(record)
    return {"customer_list": customers, "invalid_external_userid": invalid}
