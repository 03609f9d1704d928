"""A bulk sync in a process of its own, so that its peak RSS and CPU can be read alone.

``python -m benchmarks.sync_child BASE_URL CORP_ID SECRET OUT [--json stdlib]
[--plan unbalanced]`` prints a JSON report; with ``--floor`` it only imports, makes
one call and reports its peak RSS.

``--json stdlib`` switches orjson off (the path without the ``fast`` extra);
``--plan unbalanced`` plans chunks as before #11's balancing (100 members each, in
order), so the two can be measured against each other in the same build.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from wecom_async import WeComClient, _json, sync
from wecom_async.sync import sync_customers

from ._common import peak_rss_mib


def unbalanced_plan(members: Sequence[str], per_call: int, lanes: int) -> list[list[str]]:
    """Chunks of ``per_call`` members in order, whatever the lanes (the plan before #11)."""
    return [list(members[i : i + per_call]) for i in range(0, len(members), per_call)]


def record_chunks(spans: list[float]) -> None:
    """Add up the time each chunk (on its lane) was fetching."""
    fetch = sync._fetch_chunk

    async def timed(*args: Any) -> Any:
        started = time.monotonic()
        try:
            return await fetch(*args)
        finally:
            spans.append(time.monotonic() - started)

    sync._fetch_chunk = timed  # type: ignore[assignment]


async def main(args: argparse.Namespace) -> None:
    if args.json == "stdlib":
        _json.orjson = None  # type: ignore[assignment]
    if args.plan == "unbalanced":
        sync.plan_chunks = unbalanced_plan
    spans: list[float] = []
    record_chunks(spans)
    async with WeComClient(args.corp_id, args.secret, base_url=args.base_url) as client:
        if args.floor:
            # Everything imported and one call made, nothing synced: the baseline.
            await client.external_contact.get_follow_user_list()
            print(json.dumps({"peak_rss_mib": peak_rss_mib()}))
            return
        cpu = time.process_time()
        report = await sync_customers(client, args.out, concurrency=args.concurrency)
        cpu = time.process_time() - cpu
        print(
            json.dumps(
                {
                    "customers": report.customers,
                    "elapsed": report.elapsed,
                    "cpu_s": cpu,
                    "requests": client.stats.requests,
                    "chunks": len(spans),
                    "chunk_seconds": sum(spans),
                    "peak_rss_mib": peak_rss_mib(),
                }
            )
        )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sync_child")
    for name in ("base_url", "corp_id", "secret", "out"):
        p.add_argument(name)
    p.add_argument("--floor", action="store_true", help="one call, no sync: the RSS floor")
    p.add_argument("--json", choices=("fast", "stdlib"), default="fast")
    p.add_argument("--plan", choices=("balanced", "unbalanced"), default="balanced")
    p.add_argument("--concurrency", type=int, default=4)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
