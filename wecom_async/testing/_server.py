"""FakeWeCom: an aiohttp.web server on loopback that answers like WeCom.

It serves the endpoints this library covers with WeCom's methods, JSON shapes,
field types and errcodes, and adds what a test needs: tokens that can be revoked or
expired, WeCom's sliding-window limits (scaled), seeded fault injection, latency,
a log of every call, and :meth:`FakeWeCom.route` for endpoints it lacks.

The parts: ``_pipeline.py`` (every request's way through tokens, limits, faults,
latency and the log), ``_endpoints.py`` (the customer-contact endpoints),
``_kf.py`` (customer service), ``_callbacks.py`` (pushing callbacks),
``_window.py`` (the sliding-window counter), ``_data.py`` (the seeded corp) and
``_access_log.py`` (aiohttp's request lines, secrets masked).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from .._ratelimit import DEFAULT_LIMITS, RateLimit
from ..client import WeComClient
from ..errors import WeComInputError
from ._access_log import MaskedAccessLogger
from ._callbacks import CallbackControls, FakeCallbacks
from ._data import FakeCorp
from ._endpoints import RouteHandler, contact_routes, user_route
from ._kf import FakeKf
from ._pipeline import FakeCall, FakeStats, Faults, RequestPipeline
from ._window import most_in_any_window

__all__ = ["WECOM_LIMITS", "FakeCall", "FakeStats", "FakeWeCom", "Faults"]

#: WeCom's documented per-corp, per-API limits: 10,000 a minute, 150,000 an hour.
WECOM_LIMITS: tuple[RateLimit, ...] = DEFAULT_LIMITS


def _as_rate_limit(limit: RateLimit | tuple[int, float]) -> RateLimit:
    return limit if isinstance(limit, RateLimit) else RateLimit(*limit)


class FakeWeCom(RequestPipeline, CallbackControls):
    """A WeCom server for tests, demos and benchmarks, on 127.0.0.1.

    Use it as ``async with FakeWeCom(customers=5000, seed=1) as fake:``; then point a
    client at ``fake.base_url`` with ``fake.corp_id`` and ``fake.corp_secret`` (or call
    :meth:`client`). Everything it answers is generated from ``seed``.

    ``customers``, ``members``, ``popular``, ``parents``, ``kf_active_ratio``,
    ``unlicensed_ratio`` and ``seed`` make the corp's data (see :class:`FakeCorp`).

    Args:
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
        host: the address to listen on.
        port: the port to listen on; 0 picks a free one.
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
        self._init_pipeline(log_limit)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._routes = contact_routes(self)
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
        """The corp id clients must use."""
        return self.corp.corp_id

    @property
    def corp_secret(self) -> str:
        """The secret ``gettoken`` accepts."""
        return self.corp.corp_secret

    @property
    def port(self) -> int:
        """The port it listens on (picked at start for port 0)."""
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
        # The access log masks the corp secret and tokens in each request line.
        runner = web.AppRunner(
            app,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=0.1,
            access_log_class=MaskedAccessLogger,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]
        self.base_url = f"http://{self._host}:{self._port}/cgi-bin/"
        return self

    async def aclose(self) -> None:
        """Stop pushing callbacks and listening; safe to call twice."""
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
        """The token ``gettoken`` hands out now, or None before the first."""
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
        """The logged calls to ``path``, in order."""
        return [c for c in self.calls if c.path == path]

    def max_calls_in_window(self, period: float, path: str | None = None) -> int:
        """The most logged requests (to ``path``, or to any one path) within ``period``."""
        paths = [path] if path is not None else sorted({c.path for c in self.calls})
        return max(
            (
                most_in_any_window((c.time for c in self.calls if c.path == p), period)
                for p in paths
            ),
            default=0,
        )

    def route(self, method: str, path: str, handler: RouteHandler) -> None:
        """Serve ``path`` (such as ``"externalcontact/groupchat/list"``) with ``handler``.

        ``handler(query, body)``, a function or a coroutine function, receives the
        query parameters (without ``access_token``) and the JSON body (None when
        the request has none), and returns the answer as a dict; ``errcode`` 0 and
        ``errmsg`` "ok" are added unless it sets its own. The token check, the
        limits, latency, faults and the call log apply as to the built-in
        endpoints; another method answers 43001/43002. A path the fake serves
        already is replaced.
        """
        verb = method.upper() if isinstance(method, str) else method
        if verb not in ("GET", "POST"):
            raise WeComInputError(f"method must be GET or POST, got {method!r}")
        if not isinstance(path, str) or not path.strip("/"):
            raise WeComInputError(f"path must name an API path, got {path!r}")
        if not callable(handler):
            raise WeComInputError("handler must be callable: handler(query, body) -> dict")
        key = path.strip("/").removeprefix("cgi-bin/")
        if key == "gettoken":
            raise WeComInputError("gettoken is the fake's own; use token_ttl, revoke_token")
        self._routes[key] = (verb, user_route(handler))
