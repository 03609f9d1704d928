"""FakeWeCom: an aiohttp.web server on loopback that answers like WeCom.

It serves the endpoints this library covers with WeCom's methods, JSON shapes,
field types and errcodes, and adds what a test needs: tokens that can be revoked or
expired, WeCom's sliding-window limits (scaled), seeded fault injection, latency,
and a log of every call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

from .._ratelimit import DEFAULT_LIMITS, RateLimit
from ..client import WeComClient
from ._callbacks import CallbackControls, FakeCallbacks
from ._data import FakeCorp, _mix
from ._kf import FakeKf

__all__ = ["FakeCall", "FakeStats", "FakeWeCom", "Faults"]

#: WeCom's documented per-corp, per-API limits: 10,000 a minute, 150,000 an hour.
WECOM_LIMITS: tuple[RateLimit, ...] = DEFAULT_LIMITS

_HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>stgw</center></body></html>"
)

Answer = dict[str, Any]

#: Customers per member above which a member's customer list is built off the loop.
_INLINE_STEPS = 20_000

#: How many distinct requests the fault draws remember before starting over.
_SEEN_LIMIT = 1_000_000


def _probability(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


@attrs.frozen(kw_only=True)
class Faults:
    """How often each fault is injected, as a probability per request.

    The draw for a request depends only on the seed, the request itself (path,
    parameters, body) and how many times that same request was seen before, so a
    run is reproducible however its requests interleave, and a retried request
    gets a fresh draw. (A fake that has seen a million distinct requests forgets
    the counts and starts over.)

    Attributes:
        busy: answer errcode -1 (system busy).
        http_502: answer HTTP 502 with an HTML body, as WeCom's gateway does.
        drop: close the connection without answering.
        timeout: hold the answer for ``delay`` seconds (beyond a client's timeout).
        rate_limited: answer 45009 although no limit was passed (a burst of them
            when the probability is high), without blocking the path.
        delay: how long a ``timeout`` fault holds the answer.
        on_gettoken: also inject faults into ``gettoken`` (off by default, so that
            token counts in tests stay exact).
    """

    busy: float = attrs.field(default=0.0, validator=_probability)
    http_502: float = attrs.field(default=0.0, validator=_probability)
    drop: float = attrs.field(default=0.0, validator=_probability)
    timeout: float = attrs.field(default=0.0, validator=_probability)
    rate_limited: float = attrs.field(default=0.0, validator=_probability)
    delay: float = 30.0
    on_gettoken: bool = False

    def __attrs_post_init__(self) -> None:
        if self.busy + self.http_502 + self.drop + self.timeout + self.rate_limited > 1.0:
            raise ValueError("fault probabilities add up to more than 1")

    @classmethod
    def mixed(cls, rate: float, *, delay: float = 30.0) -> Faults:
        """``rate`` of all requests fail, split evenly over the four kinds."""
        share = rate / 4
        return cls(busy=share, http_502=share, drop=share, timeout=share, delay=delay)

    def pick(self, u: float) -> str | None:
        """The fault for a uniform draw ``u`` in [0, 1), or None."""
        for name in ("busy", "http_502", "drop", "timeout", "rate_limited"):
            p: float = getattr(self, name)
            if u < p:
                return name
            u -= p
        return None


@attrs.frozen
class FakeCall:
    """One request the fake received."""

    path: str
    method: str
    time: float
    """Arrival on the event loop's clock (``loop.time()``)."""
    errcode: int | None
    """The errcode answered; None when no JSON answer was sent (a fault)."""
    status: int
    token: str | None = attrs.field(repr=False)
    fault: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    """The query parameters, ``access_token`` left out."""


@attrs.define
class FakeStats:
    """Counters over every request, exact even when the call log is capped."""

    calls: int = 0
    gettoken_calls: int = 0
    tokens_issued: int = 0
    violations: int = 0
    """Requests answered 45009 (over a limit, or during the block after one)."""
    faults: int = 0
    max_in_flight: int = 0
    """The most requests the fake was handling at once."""
    max_in_window: dict[tuple[str, float], int] = attrs.Factory(dict)
    """The most requests that arrived for a path within any window of each enforced
    limit's period: what the client sent, rejected requests included."""

    def most_in_any_window(self) -> int:
        return max(self.max_in_window.values(), default=0)


class _Reject(Exception):
    """Raised inside a handler to answer an errcode."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


class _Window:
    """Arrival times in one sliding window, for one path and one limit."""

    __slots__ = ("accepted", "arrivals", "max_calls", "period")

    def __init__(self, max_calls: int, period: float) -> None:
        self.max_calls = max_calls
        self.period = period
        self.accepted: deque[float] = deque()
        self.arrivals: deque[float] = deque()


def _encode_cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, parts)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Reject(40058, "invalid cursor") from exc
    if len(parts) != count:
        raise _Reject(40058, "invalid cursor")
    return parts


def _as_rate_limit(limit: RateLimit | tuple[int, float]) -> RateLimit:
    return limit if isinstance(limit, RateLimit) else RateLimit(*limit)


def _int_field(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError
    return value


class FakeWeCom(CallbackControls):
    """A WeCom server for tests, demos and benchmarks, on 127.0.0.1.

    Use it as ``async with FakeWeCom(customers=5000, seed=1) as fake:``; then point a
    client at ``fake.base_url`` with ``fake.corp_id`` and ``fake.corp_secret`` (or call
    :meth:`client`). Everything it answers is generated from ``seed``.

    Args:
        customers, members, popular, parents, kf_active_ratio, unlicensed_ratio,
            seed: the corp's data (see :class:`FakeCorp`).
        page_size: followers per ``externalcontact/get`` page (WeCom's is 500).
        token_ttl: seconds an access token lives (``expires_in``).
        rate_limits: :class:`~wecom_async.RateLimit` objects enforced per API path as
            sliding windows; WeCom's own by default; an empty sequence enforces none.
            (``(max_calls, period)`` pairs are still taken.)
        rate_scale: multiplies every limit's ``max_calls`` (0.01 gives 100/min).
        block_on_violation: after a 45009, answer 45009 for the rest of that
            limit's period, as WeCom blocks a corp for the rest of the minute.
        max_concurrency: answer 45033 past this many requests in flight.
        faults: what to inject, and how often.
        latency: seconds added to every request, fixed or a ``(low, high)`` uniform
            range; half before the request is handled and half after.
        host, port: where to listen; port 0 picks a free one.
        log_limit: how many calls the log keeps (the counters keep counting).
        content_type: the Content-Type of JSON answers; WeCom's have been seen as
            ``text/plain``, which a client must decode all the same.
        callbacks: where to push ``change_external_contact`` events when the corp
            changes (``add_customer``, ``edit_remark``, ``remove_follower``,
            ``delete_customer``; see ``testing/_callbacks.py``).
    """

    def __init__(
        self,
        *,
        customers: int = 1000,
        members: int = 600,
        popular: int = 3,
        parents: int = 100,
        kf_active_ratio: float = 0.8,
        unlicensed_ratio: float = 0.0,
        seed: int = 1,
        page_size: int = 500,
        token_ttl: float = 7200.0,
        rate_limits: Sequence[RateLimit | tuple[int, float]] = WECOM_LIMITS,
        rate_scale: float = 1.0,
        block_on_violation: bool = True,
        max_concurrency: int | None = None,
        faults: Faults | None = None,
        latency: float | tuple[float, float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        log_limit: int = 200_000,
        content_type: str = "application/json",
        callbacks: FakeCallbacks | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self.corp = FakeCorp(
            seed=seed,
            customers=customers,
            members=members,
            popular=popular,
            parents=parents,
            kf_active_ratio=kf_active_ratio,
            unlicensed_ratio=unlicensed_ratio,
        )
        self.seed = seed
        self.page_size = page_size
        self.token_ttl = token_ttl
        self.limits = tuple(
            RateLimit(max(1, math.floor(limit.max_calls * rate_scale)), limit.period)
            for limit in map(_as_rate_limit, rate_limits)
        )
        """The limits enforced per API path, scaled; :meth:`client` keeps to them."""
        self.block_on_violation = block_on_violation
        self.max_concurrency = max_concurrency
        self.faults = faults or Faults()
        self.latency = latency
        self.content_type = content_type
        self._host = host
        self._port = port
        self.calls: deque[FakeCall] = deque(maxlen=log_limit)
        self.stats = FakeStats()

        self._token: str | None = None
        self._token_expires = 0.0
        self._revoked: set[str] = set()
        self._issued: set[str] = set()
        self._windows: dict[str, list[_Window]] = {}
        self._blocked_until: dict[str, float] = {}
        self._in_flight = 0
        self._seen: dict[int, int] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._routes: dict[
            str, tuple[str, Callable[[web.Request], Awaitable[Answer | web.StreamResponse]]]
        ] = {
            "externalcontact/get": ("GET", self._get_contact),
            "externalcontact/list": ("GET", self._list),
            "externalcontact/get_follow_user_list": ("GET", self._follow_user_list),
            "externalcontact/batch/get_by_user": ("POST", self._batch_get_by_user),
            "kf/customer/batchget": ("POST", self._kf_batchget),
        }
        self.kf = FakeKf(self)
        """Customer service: accounts, customers who write, sent messages, media."""
        self._routes.update(self.kf.routes())
        self._init_callbacks(callbacks)  # callbacks: testing/_callbacks.py

    def __repr__(self) -> str:
        where = self.base_url or "not started"
        return f"<FakeWeCom {where} {self.corp!r}>"

    # -- lifetime --

    @property
    def corp_id(self) -> str:
        return self.corp.corp_id

    @property
    def corp_secret(self) -> str:
        return self.corp.corp_secret

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> FakeWeCom:
        """Start listening. ``base_url`` is set once this returns."""
        if self._runner is not None:
            return self
        # media/upload takes files up to 20 MiB (aiohttp's default cap is 1 MiB).
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/cgi-bin/{path:.+}", self._dispatch)
        # handler_cancellation: a client that times out and hangs up cancels the
        # handler that was holding its answer, so shutdown never waits on it.
        runner = web.AppRunner(
            app, handle_signals=False, handler_cancellation=True, shutdown_timeout=0.1
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]
        self.base_url = f"http://{self._host}:{self._port}/cgi-bin/"
        return self

    async def aclose(self) -> None:
        await self._close_callbacks()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeWeCom:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def client(self, **kwargs: Any) -> WeComClient:
        """A :class:`~wecom_async.WeComClient` for this fake's corp and its limits.

        The client keeps to the limits this fake enforces (:attr:`limits`, scaled),
        not WeCom's, unless ``rate_limit`` is given; other keyword arguments go to
        :class:`~wecom_async.WeComClient` as they are.
        """
        kwargs.setdefault("rate_limit", self.limits)
        return WeComClient(self.corp_id, self.corp_secret, base_url=self.base_url, **kwargs)

    # -- controls for tests --

    @property
    def current_token(self) -> str | None:
        return self._token

    @property
    def issued_tokens(self) -> frozenset[str]:
        """Every token this fake ever handed out (to scan logs and errors for)."""
        return frozenset(self._issued)

    def revoke_token(self) -> None:
        """Revoke the current token: calls made with it answer 40014 from now on."""
        if self._token is not None:
            self._revoked.add(self._token)
            self._token = None

    def expire_token(self) -> None:
        """Make the current token expire now: calls made with it answer 42001."""
        self._token_expires = asyncio.get_running_loop().time()

    def calls_to(self, path: str) -> list[FakeCall]:
        return [c for c in self.calls if c.path == path]

    def max_calls_in_window(self, period: float, path: str | None = None) -> int:
        """The most logged requests (to ``path``, or to any one path) within ``period``."""
        paths = [path] if path is not None else sorted({c.path for c in self.calls})
        best = 0
        for p in paths:
            times = [c.time for c in self.calls if c.path == p]
            start = 0
            for end, t in enumerate(times):
                while t - times[start] >= period:
                    start += 1
                best = max(best, end - start + 1)
        return best

    # -- the request pipeline --

    def _draw(self, request: web.Request, body: bytes, salt: int) -> float:
        """A uniform draw fixed by the seed, the request, and how often it was seen."""
        query = sorted((k, v) for k, v in request.query.items() if k != "access_token")
        digest = hashlib.blake2b(
            repr((request.method, request.path, query)).encode() + body, digest_size=8
        ).digest()
        key = int.from_bytes(digest, "big")
        if salt == 0:
            if len(self._seen) >= _SEEN_LIMIT:
                # Bounded memory over very long runs, at the cost of reproducibility
                # across the reset (documented on Faults).
                self._seen.clear()
            self._seen[key] = self._seen.get(key, 0) + 1
        return _mix(self.seed, key, self._seen.get(key, 0), salt) / 2**64

    async def _sleep_latency(self, u: float) -> None:
        if isinstance(self.latency, tuple):
            low, high = self.latency
            seconds = low + (high - low) * u
        else:
            seconds = self.latency
        if seconds > 0:
            await asyncio.sleep(seconds / 2)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        # In flight from arrival to answer, latency included: what a client's
        # concurrency looks like from here.
        self._in_flight += 1
        self.stats.calls += 1  # counted on arrival, before any latency
        self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
        try:
            return await self._handle(request)
        finally:
            self._in_flight -= 1

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await request.read()
        fault_draw = self._draw(request, body, 0)
        latency_draw = self._draw(request, body, 1)
        await self._sleep_latency(latency_draw)
        loop = asyncio.get_running_loop()
        now = loop.time()
        token = request.query.get("access_token")
        if path == "gettoken":
            self.stats.gettoken_calls += 1

        query = tuple((k, v) for k, v in request.query.items() if k != "access_token")

        def log(errcode: int | None, status: int = 200, fault: str | None = None) -> None:
            self.calls.append(
                FakeCall(path, request.method, now, errcode, status, token, fault, query)
            )

        fault = None
        logged = False
        if path != "gettoken" or self.faults.on_gettoken:
            fault = self.faults.pick(fault_draw)
        answer: Answer | web.StreamResponse | None = self._check_limits(path, now)
        if answer is None and fault is not None:
            self.stats.faults += 1
            if fault == "busy":
                answer = {"errcode": -1, "errmsg": "system busy"}
            elif fault == "rate_limited":
                self.stats.violations += 1
                answer = {"errcode": 45009, "errmsg": "api freq out of limit"}
            elif fault == "http_502":
                log(None, 502, fault)
                await self._sleep_latency(latency_draw)
                return web.Response(status=502, text=_HTML_502, content_type="text/html")
            elif fault == "drop":
                log(None, 0, fault)
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=500)
            else:  # timeout: hold the answer past the client's patience
                log(None, 0, fault)
                logged = True
                await asyncio.sleep(self.faults.delay)
        if answer is None:
            answer = await self._answer(request, path, body, now)
        if isinstance(answer, web.StreamResponse):  # a file (media/get)
            log(0)
            await self._sleep_latency(latency_draw)
            return answer
        if not logged:
            errcode = answer.get("errcode")
            log(errcode if isinstance(errcode, int) else None, 200, fault)
        await self._sleep_latency(latency_draw)
        return web.Response(
            body=json.dumps(answer, ensure_ascii=False).encode(),
            content_type=self.content_type,
            charset="utf-8",
        )

    def _check_limits(self, path: str, now: float) -> Answer | None:
        """Count the arrival; answer 45009 if a window is full or the path is blocked."""
        if self.max_concurrency is not None and self._in_flight > self.max_concurrency:
            return {"errcode": 45033, "errmsg": "api concurrent out of limit"}
        windows = self._windows.get(path)
        if windows is None:
            windows = self._windows[path] = [_Window(w.max_calls, w.period) for w in self.limits]
        violated: _Window | None = None
        for w in windows:
            w.arrivals.append(now)
            while w.arrivals and w.arrivals[0] <= now - w.period:
                w.arrivals.popleft()
            key = (path, w.period)
            self.stats.max_in_window[key] = max(
                self.stats.max_in_window.get(key, 0), len(w.arrivals)
            )
            while w.accepted and w.accepted[0] <= now - w.period:
                w.accepted.popleft()
            if violated is None and len(w.accepted) >= w.max_calls:
                violated = w
        blocked = now < self._blocked_until.get(path, -math.inf)
        if violated is not None or blocked:
            self.stats.violations += 1
            if violated is not None and self.block_on_violation and not blocked:
                self._blocked_until[path] = now + violated.period
            return {"errcode": 45009, "errmsg": "api freq out of limit"}
        for w in windows:
            w.accepted.append(now)
        return None

    async def _answer(
        self, request: web.Request, path: str, body: bytes, now: float
    ) -> Answer | web.StreamResponse:
        try:
            if path == "gettoken":
                return self._gettoken(request, now)
            route = self._routes.get(path)
            if route is None:
                raise _Reject(40058, f"unknown api path {path}")
            method, handler = route
            if request.method != method:
                raise _Reject(43002 if method == "POST" else 43001, f"require {method} method")
            self._check_token(request, now)
            answer = await handler(request)
        except _Reject as exc:
            return {"errcode": exc.errcode, "errmsg": exc.errmsg}
        if isinstance(answer, web.StreamResponse):
            return answer
        return {"errcode": 0, "errmsg": "ok", **answer}

    # -- tokens --

    def _gettoken(self, request: web.Request, now: float) -> Answer:
        corpid = request.query.get("corpid")
        secret = request.query.get("corpsecret")
        if not corpid:
            raise _Reject(41002, "corpid missing")
        if not secret:
            raise _Reject(41004, "corpsecret missing")
        if corpid != self.corp_id:
            raise _Reject(40013, "invalid corpid")
        if not secrets.compare_digest(secret, self.corp_secret):
            raise _Reject(40001, "invalid credential")
        # Within its lifetime WeCom hands back the same token; then a new one.
        if self._token is None or now >= self._token_expires:
            self._token = secrets.token_urlsafe(48)
            self._token_expires = now + self.token_ttl
            self._issued.add(self._token)
            self.stats.tokens_issued += 1
        # Rounded down: promising a second more than the token has would earn 42001.
        remaining = max(1, math.floor(self._token_expires - now))
        return {"errcode": 0, "errmsg": "ok", "access_token": self._token, "expires_in": remaining}

    def _check_token(self, request: web.Request, now: float) -> None:
        token = request.query.get("access_token")
        if not token:
            raise _Reject(41001, "access_token missing")
        if token not in self._issued or token in self._revoked:
            raise _Reject(40014, "invalid access_token")
        if token != self._token or now >= self._token_expires:
            raise _Reject(42001, "access_token expired")

    # -- endpoints --

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.read())
        except ValueError as exc:
            raise _Reject(47001, "data format error: Warning: wrong json format.") from exc
        if not isinstance(data, dict):
            raise _Reject(47001, "data format error")
        return data

    async def _get_contact(self, request: web.Request) -> Answer:
        ext_id = request.query.get("external_userid")
        if not ext_id:
            raise _Reject(41035, "missing external userid")
        corp = self.corp
        parent = corp.parent_index(ext_id)
        if parent is not None:
            return corp.parent_detail(parent)
        i = corp.customer_index(ext_id)
        if i is None:
            raise _Reject(40096, "invalid external userid")
        followers = corp.followers(i)
        if not followers:  # every member's relationship ended (a callbacks change)
            raise _Reject(84061, "not external contact")
        offset = 0
        cursor = request.query.get("cursor")
        if cursor:
            who, start = _decode_cursor(cursor, 2)
            if who != str(i) or not start.isdigit() or int(start) >= len(followers):
                raise _Reject(40058, "invalid cursor")
            offset = int(start)
        page = followers[offset : offset + self.page_size]
        answer: Answer = {
            "external_contact": corp.contact(i),
            "follow_user": [corp.follow_user(i, m) for m in page],
        }
        if offset + self.page_size < len(followers):
            answer["next_cursor"] = _encode_cursor(i, offset + self.page_size)
        return answer

    async def _customers_of(self, m: int) -> tuple[int, ...]:
        """A member's customers; stepped out in a thread when that is long work.

        The fake shares its event loop with the client under test: a member of a
        corp with few members and a million customers takes seconds to step out,
        which must not stall the client's timers.
        """
        corp = self.corp
        if corp.customers // corp.members > _INLINE_STEPS:
            return await asyncio.to_thread(corp.customers_of, m)
        return corp.customers_of(m)

    def _member(self, userid: object) -> int:
        m = self.corp.member_index(userid) if isinstance(userid, str) else None
        if m is None:
            raise _Reject(40003, f"invalid userid {userid!r}"[:80])
        return m

    async def _list(self, request: web.Request) -> Answer:
        userid = request.query.get("userid")
        if not userid:
            raise _Reject(41009, "missing userid")
        customers = await self._customers_of(self._member(userid))
        if not customers:
            raise _Reject(84061, "not external contact")
        return {"external_userid": [self.corp.customer_id(i) for i in customers]}

    async def _follow_user_list(self, request: web.Request) -> Answer:
        return {"follow_user": list(self.corp.userids)}

    async def _batch_get_by_user(self, request: web.Request) -> Answer:
        data = await self._json_body(request)
        userids = data.get("userid_list")
        if not userids:
            raise _Reject(41009, "missing userid")
        if not isinstance(userids, list) or len(userids) > 100:
            raise _Reject(40058, "userid_list must be a list of at most 100 userids")
        try:
            limit = _int_field(data.get("limit", 50))
        except ValueError:
            raise _Reject(40058, "invalid limit") from None
        if not 1 <= limit <= 100:
            raise _Reject(40058, "limit must be 1 to 100")
        members = [self._member(u) for u in userids]
        licensed = [m for m in members if m not in self.corp.unlicensed]
        unlicensed = [self.corp.userids[m] for m in members if m in self.corp.unlicensed]
        if not licensed:
            raise _Reject(701008, "no member in the list has an interop licence")
        list_key = _mix(*members) & 0xFFFFFFFF
        pos, offset = 0, 0
        cursor = data.get("cursor")
        if cursor:
            if not isinstance(cursor, str):
                raise _Reject(40058, "invalid cursor")
            key, p, o = _decode_cursor(cursor, 3)
            if key != str(list_key) or not p.isdigit() or not o.isdigit():
                raise _Reject(40058, "invalid cursor")
            pos, offset = int(p), int(o)
        items: list[Answer] = []
        while pos < len(licensed) and len(items) < limit:
            m = licensed[pos]
            customers = await self._customers_of(m)
            take = customers[offset : offset + limit - len(items)]
            items.extend(
                {
                    "external_contact": self.corp.contact(i),
                    "follow_info": self.corp.follow_info(i, m),
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

    async def _kf_batchget(self, request: web.Request) -> Answer:
        data = await self._json_body(request)
        ids = data.get("external_userid_list")
        if not isinstance(ids, list) or not ids:
            raise _Reject(40058, "external_userid_list must hold 1 to 100 ids")
        if len(ids) > 100:
            raise _Reject(40058, "external_userid_list holds more than 100 ids")
        flag = data.get("need_enter_session_context", 0)
        if flag not in (0, 1) or isinstance(flag, bool):
            raise _Reject(40058, "need_enter_session_context must be 0 or 1")
        customers: list[Answer] = []
        invalid: list[str] = []
        for ext_id in ids:
            record = None
            if isinstance(ext_id, str):  # customers who wrote to the fake first
                record = self.kf.customer(ext_id, bool(flag)) or self.corp.kf_customer(
                    ext_id, bool(flag)
                )
            if record is None:
                invalid.append(ext_id if isinstance(ext_id, str) else str(ext_id))
            else:
                customers.append(record)
        return {"customer_list": customers, "invalid_external_userid": invalid}
