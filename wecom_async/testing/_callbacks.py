"""FakeWeCom's outbound side: it pushes encrypted callbacks the way WeCom does.

WeCom POSTs each callback to the app's URL and waits 5 s; a timeout, a dropped
connection or a non-200 answer counts as a failure, and it tries 3 times in all
(path/90930). ``CallbackPusher`` does exactly that, in background tasks it owns;
``CallbackControls`` gives FakeWeCom the corp changes that fire
``change_external_contact`` events. Encryption needs the ``[callback]`` extra,
imported only when callbacks are configured.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs

from ._data import FakeCorp

if TYPE_CHECKING:
    from ..callback import CallbackCrypto

__all__ = ["CallbackControls", "CallbackPusher", "FakeCallbacks", "PushAttempt", "event_xml"]

logger = logging.getLogger("wecom_async.testing")


@attrs.frozen(kw_only=True)
class FakeCallbacks:
    """Where and how the fake pushes callbacks.

    Attributes:
        url: the app's callback URL.
        token, aes_key: the Token and EncodingAESKey set with the URL.
        tries: attempts per callback (WeCom: 3).
        timeout: seconds each attempt waits for the answer (WeCom: 5).
        agent_id: the ``AgentID`` element of the POST body, when set.
    """

    url: str
    token: str = attrs.field(repr=False)
    aes_key: str = attrs.field(repr=False)
    tries: int = 3
    timeout: float = 5.0
    agent_id: int | None = None


@attrs.frozen
class PushAttempt:
    """One POST of one callback: which try, what came back, how long it took."""

    key: str
    """Which callback (the same for every try of it)."""
    attempt: int
    status: int | None
    """The HTTP status; None when the connection failed or timed out."""
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the app answered 200."""
        return self.status == 200


def event_xml(to_user_name: str, fields: Mapping[str, str | int]) -> str:
    """A callback plaintext as WeCom writes it: CDATA for text, bare numbers."""
    parts = [f"<ToUserName><![CDATA[{to_user_name}]]></ToUserName>"]
    for name, value in fields.items():
        text = str(value) if isinstance(value, int) else f"<![CDATA[{value}]]>"
        parts.append(f"<{name}>{text}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


class CallbackPusher:
    """POSTs encrypted callbacks to one URL with WeCom's tries and timeout."""

    def __init__(self, config: FakeCallbacks, receive_id: str) -> None:
        from ..callback import CallbackCrypto  # the [callback] extra, only when used

        self.config = config
        self.receive_id = receive_id
        self.crypto: CallbackCrypto = CallbackCrypto(config.token, config.aes_key, receive_id)
        self.attempts: list[PushAttempt] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[list[PushAttempt]]] = set()
        self._count = 0

    def body(self, plaintext: str) -> tuple[dict[str, str], bytes]:
        """Query parameters and POST body for one try, freshly encrypted and signed."""
        encrypted = self.crypto.encrypt_text(plaintext)
        timestamp = str(int(time.time()))
        nonce = str(secrets.randbelow(10**10))
        params = {
            "msg_signature": self.crypto.signature(timestamp, nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        agent = "" if self.config.agent_id is None else f"<AgentID>{self.config.agent_id}</AgentID>"
        body = (
            f"<xml><ToUserName><![CDATA[{self.receive_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>{agent}</xml>"
        )
        return params, body.encode()

    async def post_once(
        self, plaintext: str, *, key: str = "", attempt: int = 1, **overrides: str
    ) -> PushAttempt:
        """One try; ``overrides`` replace query parameters (a forged signature, say)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        params, body = self.body(plaintext)
        params.update(overrides)
        loop = asyncio.get_running_loop()
        started = loop.time()
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                self.config.url,
                params=params,
                data=body,
                headers={"Content-Type": "text/xml"},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            ) as response:
                await response.read()
                status = response.status
        except asyncio.TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        result = PushAttempt(key, attempt, status, loop.time() - started, error)
        self.attempts.append(result)
        return result

    async def push(self, plaintext: str) -> list[PushAttempt]:
        """Try up to ``tries`` times, until one answer is 200."""
        self._count += 1
        key = f"cb{self._count}"
        tries: list[PushAttempt] = []
        for attempt in range(1, self.config.tries + 1):
            result = await self.post_once(plaintext, key=key, attempt=attempt)
            tries.append(result)
            if result.ok:
                break
        else:
            logger.warning("callback %s failed %d tries", key, len(tries))
        return tries

    def send(self, plaintext: str) -> asyncio.Task[list[PushAttempt]]:
        """Push in the background (as WeCom does, concurrently); see :meth:`idle`."""
        task = asyncio.create_task(self.push(plaintext))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def idle(self) -> None:
        """Wait until every callback sent so far has been answered or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def aclose(self) -> None:
        """Cancel pushes still running and close the HTTP session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class CallbackControls:
    """FakeWeCom's corp changes; each pushes ``change_external_contact`` events.

    Without ``callbacks`` configured the corp still changes (the endpoints show it)
    and nothing is pushed. ``callbacks`` may be set after the fake started (when
    the app's URL is only known then).
    """

    corp: FakeCorp
    _callbacks: FakeCallbacks | None
    _pusher: CallbackPusher | None

    def _init_callbacks(self, callbacks: FakeCallbacks | None) -> None:
        self._callbacks = callbacks
        self._pusher = None

    @property
    def callbacks(self) -> FakeCallbacks | None:
        """Where changes are pushed; None pushes nothing."""
        return self._callbacks

    @callbacks.setter
    def callbacks(self, config: FakeCallbacks | None) -> None:
        if self._pusher is not None and config != self._callbacks:
            raise RuntimeError("set callbacks before the first change is pushed")
        self._callbacks = config

    @property
    def pusher(self) -> CallbackPusher | None:
        """The pusher, once callbacks are configured: its ``attempts`` log every try."""
        if self._pusher is None and self._callbacks is not None:
            self._pusher = CallbackPusher(self._callbacks, self.corp.corp_id)
        return self._pusher

    async def callbacks_idle(self) -> None:
        """Wait until every pushed callback has been answered (or has used its tries)."""
        if self._pusher is not None:
            await self._pusher.idle()

    async def _close_callbacks(self) -> None:
        pusher, self._pusher = self._pusher, None
        if pusher is not None:
            await pusher.aclose()

    def _push(self, change_type: str, userid: str, external_userid: str, **extra: Any) -> None:
        pusher = self.pusher
        if pusher is None:
            return
        fields: dict[str, str | int] = {
            "FromUserName": "sys",
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "change_external_contact",
            "ChangeType": change_type,
            "UserID": userid,
            "ExternalUserID": external_userid,
            **extra,
        }
        pusher.send(event_xml(self.corp.corp_id, fields))

    def _customer(self, external_userid: str) -> int:
        i = self.corp.customer_index(external_userid)
        if i is None:
            raise KeyError(f"no customer {external_userid!r}")
        return i

    def _follower(self, i: int, userid: str) -> int:
        m = self.corp.member_index(userid)
        if m is None or m not in self.corp.followers(i):
            raise KeyError(f"{userid!r} does not follow customer {i}")
        return m

    def add_customer(self) -> str:
        """A new customer; each member who follows it fires ``add_external_contact``."""
        i = self.corp.add_customer()
        external_userid = self.corp.customer_id(i)
        for m in self.corp.followers(i):
            welcome = secrets.token_urlsafe(16)
            userid = self.corp.userids[m]
            self._push("add_external_contact", userid, external_userid, WelcomeCode=welcome)
        return external_userid

    def edit_remark(self, external_userid: str, userid: str, remark: str) -> None:
        """``userid`` changes the remark on a customer: ``edit_external_contact``."""
        i = self._customer(external_userid)
        self.corp.edit_remark(i, self._follower(i, userid), remark)
        self._push("edit_external_contact", userid, external_userid)

    def remove_follower(self, external_userid: str, userid: str) -> None:
        """The customer deletes member ``userid``: ``del_follow_user``."""
        i = self._customer(external_userid)
        self.corp.remove_follower(i, self._follower(i, userid))
        self._push("del_follow_user", userid, external_userid)

    def delete_customer(self, external_userid: str) -> None:
        """Every member deletes the customer: ``del_external_contact`` from each."""
        i = self._customer(external_userid)
        followers = self.corp.followers(i)
        self.corp.delete_customer(i)
        for m in followers:
            self._push("del_external_contact", self.corp.userids[m], external_userid)
