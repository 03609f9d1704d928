"""Cancelling callers at random points leaves no lock held, no connection, no bad token."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import warnings

import pytest

from wecom_async import SessionPool, WeComClient, WeComClosedError
from wecom_async._ratelimit import LocalRateLimiter
from wecom_async.testing import FakeWeCom


def acquired_connections(client: WeComClient) -> int:
    connector = client._pool.session().connector
    assert connector is not None
    return len(connector._acquired)  # aiohttp keeps no public count of these


async def test_cancelling_at_random_points_leaves_nothing_behind() -> None:
    rng = random.Random(5)
    async with FakeWeCom(customers=2000, latency=(0.0, 0.02), seed=5) as fake:
        async with fake.client() as client:
            ids = [fake.corp.customer_id(i) for i in range(2000)]
            cancelled = completed = 0
            for i in range(300):
                if i % 20 == 0:
                    fake.revoke_token()  # so that some cancellations land in a refresh
                op = rng.choice(["get", "kf", "list", "details"])
                if op == "get":
                    coro = client.external_contact.get(rng.choice(ids))
                elif op == "kf":
                    coro = client.kf.batchget_customers(rng.sample(ids, 250))
                elif op == "list":
                    coro = client.external_contact.list(rng.choice(fake.corp.userids))
                else:

                    async def details() -> int:
                        async with client.external_contact.iter_details(
                            rng.sample(ids, 20), concurrency=4
                        ) as stream:
                            return len([d async for d in stream])

                    coro = details()
                task = asyncio.ensure_future(coro)
                await asyncio.sleep(rng.uniform(0, 0.03))
                task.cancel()
                try:
                    await task
                    completed += 1
                except asyncio.CancelledError:
                    cancelled += 1
            assert cancelled > 100 and completed > 10  # both outcomes were exercised

            # Nothing left behind...
            await asyncio.sleep(0)
            assert acquired_connections(client) == 0
            assert client._tokens._refresh is None
            limiter = client._pool.rate_limiter
            assert isinstance(limiter, LocalRateLimiter)
            for window in limiter._windows.values():
                assert [w.in_flight for w in window._windows] == [0] * len(window._windows)
                assert not window._waiters
            # ...and the next call works, with a token WeCom accepts.
            detail = await client.external_contact.get(ids[42])
            assert detail.external_contact.external_userid == ids[42]
            assert client._tokens._local is not None
            assert client._tokens._local.value == fake.current_token


@pytest.mark.parametrize("how", ["normal", "raise", "cancel", "unused", "twice"])
async def test_no_unclosed_warnings_on_any_path(how: str, caplog: pytest.LogCaptureFixture) -> None:
    async with FakeWeCom(customers=10) as fake:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")

            async def body() -> None:
                async with fake.client() as client:
                    if how == "unused":
                        return
                    await client.external_contact.get_follow_user_list()
                    if how == "raise":
                        raise RuntimeError("inside async with")
                    if how == "cancel":
                        await asyncio.sleep(10)
                    if how == "twice":
                        await client.aclose()

            task = asyncio.ensure_future(body())
            if how == "cancel":
                await asyncio.sleep(0.2)
                task.cancel()
            with contextlib.suppress(RuntimeError, asyncio.CancelledError):
                await task
            del task
            gc.collect()
        assert [w for w in seen if issubclass(w.category, ResourceWarning)] == []
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


async def test_a_client_on_a_closed_pool_says_so() -> None:
    async with FakeWeCom(customers=10) as fake:
        pool = SessionPool()
        client = fake.client(pool=pool)
        await pool.aclose()
        with pytest.raises(WeComClosedError, match="SessionPool is closed"):
            await client.external_contact.get_follow_user_list()
        await client.aclose()


def test_the_package_ships_its_type_marker() -> None:
    import importlib.resources

    assert importlib.resources.files("wecom_async").joinpath("py.typed").is_file()
