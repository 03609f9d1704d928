"""B5: what the sync's two cheap speed-ups buy, each against the path without it.

- CPU: the sync's process CPU with orjson (the ``fast`` extra) and with the stdlib,
  against the fake in another process without latency (so CPU is what is left).
- Lanes: wall time with chunks balanced across the lanes and with the plan before
  #11 (100 members a chunk, in order), against the fake at 50 ms latency.

Runs alternate between the two variants; each run is a fresh sync process and a
fresh fake. The plan's minimum requests (each chunk's pairs in pages of 100, plus
gettoken and the member list) are worked out from the fake's seeded corp and set
beside the requests made.
"""

from __future__ import annotations

import math
from typing import Any

from wecom_async.sync import plan_chunks
from wecom_async.testing import FakeCorp

from ._common import fake_server_process
from .b4_sync import sync_in_child
from .sync_child import unbalanced_plan

CUSTOMERS = 20_000
MEMBERS = 600
LANES = 4
LATENCY_MS = 50


def chunk_pages(plan: list[list[str]], corp: FakeCorp) -> list[int]:
    """Pages each chunk takes: its members' pairs, 100 a page (a page spans members)."""
    index = {u: m for m, u in enumerate(corp.userids)}
    return [math.ceil(sum(len(corp.customers_of(index[u])) for u in c) / 100) for c in plan]


def plans() -> dict[str, list[int]]:
    corp = FakeCorp(customers=CUSTOMERS, members=MEMBERS)
    return {
        "unbalanced": chunk_pages(unbalanced_plan(corp.userids, 100, LANES), corp),
        "balanced": chunk_pages(plan_chunks(corp.userids, 100, LANES), corp),
    }


def alternate(runs: int, latency_ms: int, variants: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    args = ("--customers", str(CUSTOMERS), "--members", str(MEMBERS))
    for _ in range(runs):
        for name, flags in variants.items():
            with fake_server_process(*args, "--latency-ms", str(latency_ms)) as server:
                results[name].append(sync_in_child(server, *flags))
    return results


def run(quick: bool) -> dict[str, object]:
    runs = 2 if quick else 5
    return {
        "runs": runs,
        "plans": plans(),
        "cpu": alternate(runs, 0, {"stdlib": ("--json", "stdlib"), "orjson": ("--json", "fast")}),
        "lanes": alternate(
            runs,
            LATENCY_MS,
            {"unbalanced": ("--plan", "unbalanced"), "balanced": ("--plan", "balanced")},
        ),
    }
