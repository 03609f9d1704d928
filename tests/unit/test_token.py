"""The access token: single flight, compare before invalidate, no loop on a bad secret."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import BASE, CORP_ID, SECRET, Call, MockWeCom
from wecom_async import (
    AccessToken,
    MemoryTokenStore,
    RetryPolicy,
    WeComClient,
    WeComClosedError,
    WeComDecodeError,
    WeComPermissionError,
    WeComTokenError,
)
from wecom_async._token import TokenManager, token_key, usable_until


def ok(call: Call) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", "follow_user": ["u1"]}


PATH = "externalcontact/get_follow_user_list"


async def test_200_concurrent_first_calls_make_one_gettoken(
    wecom: MockWeCom, client: WeComClient
) -> None:
    wecom.gettoken_delay = 0.05  # every caller arrives while the fetch is in flight
    wecom.on("GET", PATH, ok)
    results = await asyncio.gather(
        *(client.external_contact.get_follow_user_list() for _ in range(200))
    )
    assert results == [["u1"]] * 200
    assert wecom.gettoken_calls == 1
    assert {c.token for c in wecom.calls_to(PATH)} == {wecom.issued[0]}


async def test_token_is_cached_between_calls(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on("GET", PATH, ok)
    for _ in range(5):
        await client.external_contact.get_follow_user_list()
    assert wecom.gettoken_calls == 1


@pytest.mark.parametrize("errcode", [40014, 42001])
async def test_revoked_token_mid_run_is_refreshed_once_for_all_callers(
    wecom: MockWeCom, client: WeComClient, errcode: int
) -> None:
    served = 0
    rejected = 0

    async def handler(call: Call) -> dict[str, Any]:
        nonlocal served, rejected
        await asyncio.sleep(0.01)
        if call.token == wecom.issued[0] and served >= 20:
            rejected += 1
            return {"errcode": errcode, "errmsg": "token gone"}
        served += 1
        return ok(call)

    wecom.on("GET", PATH, handler)
    await client.external_contact.get_follow_user_list()  # token 1 in place
    results = await asyncio.gather(
        *(client.external_contact.get_follow_user_list() for _ in range(100))
    )
    assert results == [["u1"]] * 100
    assert wecom.gettoken_calls == 2  # the first fetch and exactly one refresh
    assert rejected == 81  # 101 calls sent with token 1, of which 20 were served
    # Each rejected call was retried exactly once, with the new token.
    with_new = [c for c in wecom.calls_to(PATH) if c.token == wecom.issued[1]]
    assert len(with_new) == rejected
    assert served == 101


async def test_token_error_twice_raises_without_looping(
    wecom: MockWeCom, client: WeComClient
) -> None:
    wecom.on("GET", PATH, lambda call: {"errcode": 40014, "errmsg": "invalid access_token"})
    with pytest.raises(WeComTokenError) as info:
        await client.external_contact.get_follow_user_list()
    assert info.value.errcode == 40014
    assert len(wecom.calls_to(PATH)) == 2  # the call and its one retry
    assert wecom.gettoken_calls == 2


async def test_wrong_secret_raises_at_once_and_never_loops(wecom: MockWeCom) -> None:
    wecom.on("GET", PATH, ok)
    async with WeComClient(CORP_ID, "wrong-secret", base_url=BASE) as client:
        with pytest.raises(WeComPermissionError) as info:
            await asyncio.gather(
                *(client.external_contact.get_follow_user_list() for _ in range(20))
            )
        assert info.value.errcode == 40001
        assert "wrong-secret" not in str(info.value)
    assert wecom.gettoken_calls == 1
    assert wecom.calls_to(PATH) == []


async def test_gettoken_transient_failure_is_retried_by_the_calling_request(
    wecom: MockWeCom, fast_retry: RetryPolicy
) -> None:
    wecom.on("GET", PATH, ok)
    wecom.gettoken_script = [{"errcode": -1, "errmsg": "system busy"}] * 2
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, retry=fast_retry) as client:
        assert await client.external_contact.get_follow_user_list() == ["u1"]
    assert wecom.gettoken_calls == 3  # two busy answers, then the token


async def test_gettoken_without_a_token_is_a_decode_error(
    wecom: MockWeCom, fast_retry: RetryPolicy
) -> None:
    wecom.gettoken_reply = {"errcode": 0, "errmsg": "ok"}
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, retry=fast_retry) as client:
        with pytest.raises(WeComDecodeError, match="access_token"):
            await client.request("GET", PATH)


async def test_shared_store_serves_a_second_client(wecom: MockWeCom) -> None:
    wecom.on("GET", PATH, ok)
    store = MemoryTokenStore()
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, token_store=store) as a:
        await a.external_contact.get_follow_user_list()
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, token_store=store) as b:
        await b.external_contact.get_follow_user_list()
    assert wecom.gettoken_calls == 1


# -- the manager on its own, with a fake clock --


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_token_is_refreshed_a_margin_before_expiry() -> None:
    clock = Clock()
    fetched: list[str] = []

    async def fetch() -> tuple[str, float]:
        fetched.append(f"T{len(fetched)}")
        return fetched[-1], 7200

    manager = TokenManager("k", MemoryTokenStore(), clock=clock)
    assert await manager.get(fetch) == "T0"
    clock.now += 7200 - 301
    assert await manager.get(fetch) == "T0"
    clock.now += 2  # inside the 300 s margin
    assert await manager.get(fetch) == "T1"
    assert usable_until(0, 7200) == 6900
    assert usable_until(0, 10) == 9  # short lifetimes keep most of their life


async def test_invalidate_compares_before_dropping() -> None:
    store = MemoryTokenStore()
    await store.set("k", AccessToken("NEW", expires_at=2e9))
    await store.invalidate("k", "OLD")  # a late failure of an older token
    assert (await store.get("k")) == AccessToken("NEW", expires_at=2e9)
    await store.invalidate("k", "NEW")
    assert await store.get("k") is None


async def test_manager_ignores_a_rejected_token_the_store_still_holds() -> None:
    class ForgetfulStore(MemoryTokenStore):
        async def invalidate(self, key: str, value: str) -> None:
            pass  # as a slow shared store might, for a moment

    calls = 0

    async def fetch() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        return f"T{calls}", 7200

    manager = TokenManager("k", ForgetfulStore())
    assert await manager.get(fetch) == "T1"
    await manager.invalidate("T1")
    assert await manager.get(fetch) == "T2"


async def test_a_cancelled_waiter_does_not_cancel_the_shared_refresh() -> None:
    release = asyncio.Event()
    calls = 0

    async def fetch() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await release.wait()
        return "T", 7200

    manager = TokenManager("k", MemoryTokenStore())
    first = asyncio.create_task(manager.get(fetch))
    second = asyncio.create_task(manager.get(fetch))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "T"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert calls == 1


def test_token_repr_and_key_hide_secrets() -> None:
    assert "SECRETVALUE" not in repr(AccessToken("SECRETVALUE", 1.0))
    key = token_key("ww1", "my-secret")
    assert key.startswith("ww1:") and "my-secret" not in key
    assert token_key("ww1", "other") != key


async def test_the_manager_keeps_a_newer_token_when_an_older_one_fails() -> None:
    tokens = iter(["T1", "T2"])

    async def fetch() -> tuple[str, float]:
        return next(tokens), 7200

    manager = TokenManager("k", MemoryTokenStore())
    assert await manager.get(fetch) == "T1"
    await manager.invalidate("T1")
    assert await manager.get(fetch) == "T2"
    await manager.invalidate("T1")  # a late failure of the old token
    assert manager._local is not None and manager._local.value == "T2"
    assert await manager.get(fetch) == "T2"


async def test_closing_during_a_token_fetch_tells_waiters_the_client_closed() -> None:
    started = asyncio.Event()

    async def fetch() -> tuple[str, float]:
        started.set()
        await asyncio.sleep(10)
        return "T", 7200

    manager = TokenManager("k", MemoryTokenStore())
    waiter = asyncio.create_task(manager.get(fetch))
    await started.wait()
    await manager.aclose()
    with pytest.raises(WeComClosedError):
        await waiter


async def test_a_caller_cancelled_as_the_refresh_completes_stays_cancelled() -> None:
    # On 3.11, asyncio.wait_for swallowed a cancellation landing just as the awaited
    # refresh completed: the cancelled caller ran on, and a merge_streams consumer
    # that was waiting for it to end hung for ever. Cancel at every step around the
    # completion; each cancellation that was accepted must end the caller.
    for steps in range(8):
        manager = TokenManager("k", MemoryTokenStore())
        gate = asyncio.Event()

        async def fetch(gate: asyncio.Event = gate) -> tuple[str, float]:
            await gate.wait()
            return "T1", 7200

        first = asyncio.create_task(manager.get(fetch))
        await asyncio.sleep(0)
        second = asyncio.create_task(manager.get(fetch, max_wait=5.0))
        await asyncio.sleep(0)
        gate.set()
        for _ in range(steps):
            await asyncio.sleep(0)
        accepted = second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        if accepted:
            assert second.cancelled(), f"a cancellation was swallowed after {steps} steps"
