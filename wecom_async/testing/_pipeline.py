"""The fake's one request pipeline, for built-in endpoints and ``fake.route`` alike.

Every request goes the same way: counted, a seeded draw for its fault and
latency, half the latency, the limits (45033 past ``max_concurrency``, 45009 past
a window, and the block after one), an injected fault if one is drawn, the token
check and the method, then the handler, the other half of the latency, and a
:class:`FakeCall` in the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
from collections import deque

import attrs
from aiohttp import web

from .._observe import MASK, SECRET_PARAMS
from .._ratelimit import RateLimit
from ._data import FakeCorp, _mix
from ._endpoints import Answer, Handler, Reject
from ._window import SlidingWindow

__all__ = ["FakeCall", "FakeStats", "Faults", "RequestPipeline"]

_HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>stgw</center></body></html>"
)

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


def _query_repr(query: tuple[tuple[str, str], ...]) -> str:
    """The query as its repr, with the corp secret (on ``gettoken``) masked."""
    return repr(tuple((k, MASK if k in SECRET_PARAMS else v) for k, v in query))


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
    query: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=_query_repr)
    """The query parameters, ``access_token`` left out (``corpsecret`` masked in the repr)."""


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
        """The most requests to one path within any window of any enforced limit."""
        return max(self.max_in_window.values(), default=0)


class _PathWindow:
    """One limit's windows for one path: every arrival, and the requests let through."""

    __slots__ = ("accepted", "arrivals", "limit")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.arrivals = SlidingWindow(limit.period)
        self.accepted = SlidingWindow(limit.period)


class RequestPipeline:
    """FakeWeCom's request handling: tokens, limits, latency, faults and the log.

    A mixin: :class:`FakeWeCom` sets the configuration and calls
    :meth:`_init_pipeline`; ``_routes`` maps a path to its method and handler.
    """

    seed: int
    token_ttl: float
    limits: tuple[RateLimit, ...]
    block_on_violation: bool
    max_concurrency: int | None
    faults: Faults
    latency: float | tuple[float, float]
    content_type: str
    calls: deque[FakeCall]
    stats: FakeStats
    _routes: dict[str, tuple[str, Handler]]

    corp: FakeCorp

    def _init_pipeline(self, log_limit: int) -> None:
        self.calls = deque(maxlen=log_limit)
        self.stats = FakeStats()
        self._token: str | None = None
        self._token_expires = 0.0
        self._revoked: set[str] = set()
        self._issued: set[str] = set()
        self._windows: dict[str, list[_PathWindow]] = {}
        self._blocked_until: dict[str, float] = {}
        self._in_flight = 0
        self._seen: dict[int, int] = {}

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
            windows = self._windows[path] = [_PathWindow(limit) for limit in self.limits]
        violated: _PathWindow | None = None
        for w in windows:
            w.arrivals.add(now)
            self.stats.max_in_window[(path, w.limit.period)] = w.arrivals.most
            if violated is None and w.accepted.count(now) >= w.limit.max_calls:
                violated = w
        blocked = now < self._blocked_until.get(path, -math.inf)
        if violated is not None or blocked:
            self.stats.violations += 1
            if violated is not None and self.block_on_violation and not blocked:
                self._blocked_until[path] = now + violated.limit.period
            return {"errcode": 45009, "errmsg": "api freq out of limit"}
        for w in windows:
            w.accepted.add(now)
        return None

    async def _answer(
        self, request: web.Request, path: str, body: bytes, now: float
    ) -> Answer | web.StreamResponse:
        try:
            if path == "gettoken":
                return self._gettoken(request, now)
            route = self._routes.get(path)
            if route is None:
                raise Reject(40058, f"unknown api path {path}")
            method, handler = route
            if request.method != method:
                raise Reject(43002 if method == "POST" else 43001, f"require {method} method")
            self._check_token(request, now)
            answer = await handler(request)
        except Reject as exc:
            return {"errcode": exc.errcode, "errmsg": exc.errmsg}
        if isinstance(answer, web.StreamResponse):
            return answer
        return {"errcode": 0, "errmsg": "ok", **answer}

    # -- tokens --

    def _gettoken(self, request: web.Request, now: float) -> Answer:
        corpid = request.query.get("corpid")
        secret = request.query.get("corpsecret")
        if not corpid:
            raise Reject(41002, "corpid missing")
        if not secret:
            raise Reject(41004, "corpsecret missing")
        if corpid != self.corp.corp_id:
            raise Reject(40013, "invalid corpid")
        if not secrets.compare_digest(secret, self.corp.corp_secret):
            raise Reject(40001, "invalid credential")
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
            raise Reject(41001, "access_token missing")
        if token not in self._issued or token in self._revoked:
            raise Reject(40014, "invalid access_token")
        if token != self._token or now >= self._token_expires:
            raise Reject(42001, "access_token expired")
