"""fake.route: an endpoint the fake lacks, served through the same pipeline as its own."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from tests.integration.test_fake_fidelity import raw, token_of
from wecom_async import RateLimit, RetryPolicy, WeComInputError, WeComNotFoundError
from wecom_async.testing import FakeWeCom, Faults

PATH = "externalcontact/groupchat/list"


class Recorder:
    """A route handler that keeps what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], dict[str, Any] | None]] = []

    def __call__(self, query: Mapping[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        self.seen.append((dict(query), body))
        return {"group_chat_list": [{"chat_id": "wr1", "status": 0}], "next_cursor": ""}


async def test_sync_and_async_handlers_answer_through_the_client() -> None:
    handler = Recorder()

    async def tags(query: Mapping[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"tag_group": [{"group_id": query.get("group", "")}]}

    async with FakeWeCom(customers=10) as fake:
        fake.route("POST", PATH, handler)
        fake.route("get", "/cgi-bin/externalcontact/get_corp_tag_list", tags)
        async with fake.client() as client:
            answer = await client.request("POST", PATH, json={"status_filter": 0, "limit": 10})
            tagged = await client.request(
                "GET", "externalcontact/get_corp_tag_list", params={"group": "g1"}
            )
    assert answer["group_chat_list"] == [{"chat_id": "wr1", "status": 0}]
    assert answer["errcode"] == 0
    assert handler.seen == [({}, {"status_filter": 0, "limit": 10})]  # no access_token
    assert tagged["tag_group"] == [{"group_id": "g1"}]
    assert [c.errcode for c in fake.calls_to(PATH)] == [0]


async def test_a_routed_path_checks_the_token_and_the_method() -> None:
    handler = Recorder()
    async with FakeWeCom(customers=10) as fake:
        fake.route("POST", PATH, handler)
        assert (await raw(fake, "POST", PATH, json={}))["errcode"] == 41001
        token = await token_of(fake)
        assert (await raw(fake, "GET", PATH, params={"access_token": token}))["errcode"] == 43002
        bad = await raw(fake, "POST", PATH, params={"access_token": token}, data=b"{not json")
        assert bad["errcode"] == 47001  # as WeCom answers a body that is not JSON
        fake.revoke_token()
        answer = await raw(fake, "POST", PATH, params={"access_token": token}, json={})
        assert answer["errcode"] == 40014
        async with fake.client() as client:  # the client refreshes once and goes on
            await client.request("POST", PATH, json={})
        assert fake.stats.tokens_issued == 2
    assert len(handler.seen) == 1  # only the call with a valid token reached it


async def test_a_routed_path_keeps_the_limits_and_the_block() -> None:
    handler = Recorder()
    async with FakeWeCom(customers=10, rate_limits=[RateLimit(3, 0.5)]) as fake:
        fake.route("POST", PATH, handler)
        token = await token_of(fake)
        answers = [
            (await raw(fake, "POST", PATH, params={"access_token": token}, json={}))["errcode"]
            for _ in range(5)
        ]
        assert answers == [0, 0, 0, 45009, 45009]
        assert fake.stats.violations == 2
        assert fake.stats.max_in_window[(PATH, 0.5)] == 5
        # The fake's own client keeps to the same limits: no 45009 however many calls.
        await asyncio.sleep(0.5)  # the block after the violation lasts one period
        fake.stats.violations = 0
        async with fake.client() as client:
            await asyncio.gather(*(client.request("POST", PATH, json={}) for _ in range(7)))
        assert fake.stats.violations == 0
    assert len(handler.seen) == 3 + 7


async def test_a_routed_path_gets_faults_and_latency() -> None:
    handler = Recorder()
    async with FakeWeCom(customers=10, faults=Faults(busy=1.0)) as fake:
        fake.route("POST", PATH, handler)
        token = await token_of(fake)
        answer = await raw(fake, "POST", PATH, params={"access_token": token}, json={})
        assert answer["errcode"] == -1 and fake.stats.faults == 1
    assert handler.seen == []  # the fault answered instead of the handler
    async with FakeWeCom(customers=10, latency=0.3) as fake:
        fake.route("POST", PATH, handler)
        async with fake.client() as client:
            await client.request("GET", "externalcontact/get_follow_user_list")  # the token
            loop = asyncio.get_running_loop()
            started = loop.time()
            await client.request("POST", PATH, json={})
            assert loop.time() - started >= 0.3


async def test_a_handler_may_answer_an_errcode() -> None:
    async with FakeWeCom(customers=10) as fake:
        fake.route("POST", PATH, lambda query, body: {"errcode": 40096, "errmsg": "nobody"})
        async with fake.client(retry=RetryPolicy(max_attempts=1)) as client:
            with pytest.raises(WeComNotFoundError):
                await client.request("POST", PATH, json={})


def test_bad_routes_are_refused() -> None:
    fake = FakeWeCom(customers=10)
    for method, path, handler in [
        ("PUT", PATH, Recorder()),
        ("POST", "", Recorder()),
        ("POST", "gettoken", Recorder()),
        ("POST", PATH, "not callable"),
    ]:
        with pytest.raises(WeComInputError):
            fake.route(method, path, handler)  # type: ignore[arg-type]
