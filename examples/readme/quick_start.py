"""README: Quick start, many corps, limits, views, proxies."""

from __future__ import annotations

import ssl

from wecom_async import RateLimit, RetryPolicy, SessionPool

# README {
import asyncio
from wecom_async import WeComClient

async def main() -> None:
    async with WeComClient("ww-your-corp-id", "your-app-secret") as client:
        detail = await client.external_contact.get("wmXXXXXXXXXXXX")
        print(detail.external_contact.name, len(detail.follow_user), "followers")
        for member in detail.follow_user:
            print(member.userid, [tag.tag_name for tag in member.tags])

        batch = await client.kf.batchget_customers(["wmAAAA", "wmBBBB"])
        print([c.nickname for c in batch.customer_list], batch.invalid_external_userid)

        # Any endpoint not wrapped yet, with the same token, limits and retries:
        answer = await client.request("GET", "externalcontact/get_follow_user_list")

asyncio.run(main())
# README }


async def many_corps(tenants: dict[str, str]) -> None:
    # README {
    from wecom_async import SessionPool, WeComClient

    async with SessionPool(limit=200) as pool:
        clients = {
            corp_id: WeComClient(corp_id, secret, pool=pool) for corp_id, secret in tenants.items()
        }
        ...  # clients of the same corp on this pool share one rate budget
    # README }


def tuned(corp_id: str, secret: str) -> WeComClient:
    return (
        # README {
        WeComClient(
            corp_id, secret,
            rate_limit=[RateLimit(5_000, 60), RateLimit(100_000, 3600)],  # all of them hold
            retry=RetryPolicy(max_attempts=6, backoff_base=0.5, backoff_max=60),
            timeout=10.0,
        )
        # README }
    )


async def view(client: WeComClient, uid: str) -> None:
    # README {
    fast = client.with_options(timeout=3.0, retry=RetryPolicy(max_attempts=2, backoff_max=1.0))
    detail = await fast.external_contact.get(uid)   # never waits out a minute-long 45009 pause
    # README }


def proxied(my_ssl_context: ssl.SSLContext) -> SessionPool:
    # README {
    pool = SessionPool(proxy="http://egress.internal:3128", ssl=my_ssl_context)
    # or SessionPool(trust_env=True) to take HTTP(S)_PROXY / NO_PROXY from the environment
    # README }
    return pool
