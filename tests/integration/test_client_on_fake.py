"""The client end to end over real sockets against FakeWeCom."""

from __future__ import annotations

import asyncio

from wecom_async import RateLimit, RetryPolicy
from wecom_async.testing import FakeWeCom, Faults


async def test_token_revoked_in_the_middle_of_200_concurrent_calls() -> None:
    async with FakeWeCom(customers=300, latency=(0.005, 0.03), seed=2) as fake:
        async with fake.client() as client:
            await client.external_contact.get_follow_user_list()  # a token in place

            async def revoke_midway() -> None:
                # Polling the fake's log is the point: revoke once 60 calls have arrived.
                while len(fake.calls_to("externalcontact/get")) < 60:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                fake.revoke_token()

            ids = [fake.corp.customer_id(i) for i in range(200)]
            revoker = asyncio.create_task(revoke_midway())
            details = await asyncio.gather(*(client.external_contact.get(i) for i in ids))
            await revoker
    assert [d.external_contact.external_userid for d in details] == ids
    rejected = [c for c in fake.calls_to("externalcontact/get") if c.errcode == 40014]
    assert rejected, "the revocation should have hit calls in flight"
    assert fake.stats.tokens_issued == 2
    assert fake.stats.gettoken_calls == 2  # one refresh for all 200 callers


async def test_recovery_from_45009() -> None:
    # No client-side limit: the server's 45009 and its block are what the client meets.
    async with FakeWeCom(customers=100, rate_limits=[RateLimit(10, 0.5)]) as fake:
        policy = RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_max=0.6)
        async with fake.client(rate_limit=[], retry=policy) as client:
            # Past the popular customers, so that each detail is exactly one page.
            ids = [fake.corp.customer_id(i) for i in range(10, 40)]
            details = await asyncio.gather(*(client.external_contact.get(i) for i in ids))
    assert [d.external_contact.external_userid for d in details] == ids
    assert fake.stats.violations > 0
    served = [c for c in fake.calls_to("externalcontact/get") if c.errcode == 0]
    assert len(served) == 30


async def test_ten_percent_faults_lose_nothing_and_duplicate_nothing() -> None:
    # The timeout must hold a normal answer even on a loaded machine (it covers the
    # wait for one of the pool's connections too), yet end a held one well before.
    faults = Faults.mixed(0.10, delay=6.0)
    async with FakeWeCom(customers=2000, faults=faults, seed=11) as fake:
        policy = RetryPolicy(max_attempts=8, backoff_base=0.005, backoff_max=0.05)
        async with fake.client(retry=policy, timeout=2.5) as client:
            ids = [fake.corp.customer_id(i) for i in range(400)]
            details, batch = await asyncio.gather(
                asyncio.gather(*(client.external_contact.get(i) for i in ids)),
                client.kf.batchget_customers(ids),
            )
    assert [d.external_contact.external_userid for d in details] == ids
    for d, i in zip(details, range(400), strict=True):
        assert [f.userid for f in d.follow_user] == [
            fake.corp.userids[m] for m in fake.corp.followers(i)
        ]
    returned = [c.external_userid for c in batch.customer_list] + list(
        batch.invalid_external_userid
    )
    assert sorted(returned) == sorted(ids)  # every id once: none lost, none doubled
    assert len(set(returned)) == len(returned)
    kinds = {c.fault for c in fake.calls if c.fault}
    assert kinds == {"busy", "http_502", "drop", "timeout"}
    assert fake.stats.faults >= 20


async def test_no_server_window_is_ever_exceeded() -> None:
    limit = RateLimit(20, 0.5)
    async with FakeWeCom(
        customers=500, rate_limits=[RateLimit(20, 0.5)], latency=(0.0, 0.04)
    ) as fake:
        async with fake.client(rate_limit=limit) as client:
            ids = [fake.corp.customer_id(i) for i in range(120)]
            await asyncio.gather(*(client.external_contact.get(i) for i in ids))
    assert fake.stats.violations == 0
    assert fake.stats.max_in_window[("externalcontact/get", 0.5)] == 20
    assert fake.max_calls_in_window(0.5, "externalcontact/get") == 20


async def test_the_fakes_own_client_keeps_to_the_fakes_limits() -> None:
    # The README's testing snippet (50/s on the fake) grown to 100 details: with
    # WeCom's 10,000/min the client would run into 45009s and the block after each.
    async with FakeWeCom(customers=500, rate_limits=[RateLimit(50, 1.0)]) as fake:
        async with fake.client() as client:
            ids = [fake.corp.customer_id(i) for i in range(10, 110)]
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.gather(*(client.external_contact.get(i) for i in ids))
            elapsed = loop.time() - started
        assert client.stats.rate_limited == 0
    assert fake.stats.violations == 0
    assert fake.max_calls_in_window(1.0, "externalcontact/get") == 50
    assert 1.0 <= elapsed < 10.0  # two windows' worth: it waited for slots, not for blocks


async def test_a_long_wait_for_a_slot_never_sends_a_stale_token() -> None:
    # Tokens live 2 s; the limit makes the last calls wait about 5 s for a slot. The
    # token is taken once the slot is held, so none goes out after it expired.
    async with FakeWeCom(customers=100, token_ttl=2.0, rate_limits=[RateLimit(5, 1.0)]) as fake:
        async with fake.client(rate_limit=RateLimit(5, 1.0)) as client:
            ids = [fake.corp.customer_id(i) for i in range(10, 35)]
            await asyncio.gather(*(client.external_contact.get(i) for i in ids))
    answers = [c.errcode for c in fake.calls_to("externalcontact/get")]
    assert answers == [0] * 25  # not one 42001
    assert fake.stats.tokens_issued >= 2  # the run outlived the first token
