"""A bulk sync in a process of its own, so that its peak RSS can be read alone.

``python -m benchmarks.sync_child BASE_URL CORP_ID SECRET OUT`` prints a JSON report;
with ``--floor`` for OUT it only imports, makes one call and reports its peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import sys

from wecom_async import WeComClient
from wecom_async.sync import sync_customers

from ._common import peak_rss_mib


async def main(base_url: str, corp_id: str, secret: str, out: str) -> None:
    async with WeComClient(corp_id, secret, base_url=base_url) as client:
        if out == "--floor":
            # Everything imported and one call made, nothing synced: the baseline.
            await client.external_contact.get_follow_user_list()
            print(json.dumps({"peak_rss_mib": peak_rss_mib()}))
            return
        report = await sync_customers(client, out)
        print(
            json.dumps(
                {
                    "customers": report.customers,
                    "elapsed": report.elapsed,
                    "requests": client.stats.requests,
                    "peak_rss_mib": peak_rss_mib(),
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
