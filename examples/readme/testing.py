"""README: Testing your code against a fake WeCom."""

from __future__ import annotations


async def fake() -> None:
    # README {
    from wecom_async import RateLimit
    from wecom_async.testing import FakeWeCom, Faults

    async with FakeWeCom(customers=5000, seed=1, latency=(0.01, 0.03),
                         rate_limits=[RateLimit(50, 1.0)], faults=Faults.mixed(0.05)) as fake:
        async with fake.client() as client:   # keeps to the fake's 50/s; other options pass through
            detail = await client.external_contact.get(fake.corp.customer_id(0))
        fake.revoke_token()          # the next call with the old token answers 40014
        fake.expire_token()          # ... or 42001
        print(fake.stats)            # gettoken calls, 45009 violations, faults, most calls in any window
        print(fake.calls[-1])        # path, time, errcode, fault of every call
    # README }
