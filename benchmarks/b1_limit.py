"""B1: how close the client runs to WeCom's limit without ever passing it.

The fake enforces 50 calls/s per API as a sliding window, with 20 ms latency; the
client, configured with the same limit, fetches customer details from many
workers for a fixed time. Achieved calls/s over the allowed 50/s is the figure.

Because the client measures each slot's period from when its answer came back (so
that network jitter can never push a sixth call into the server's window), the
ceiling is 50 / (1 s + latency) per second: 0.98 of the limit at 20 ms.
"""

from __future__ import annotations

import asyncio
import time

from wecom_async import RateLimit
from wecom_async.testing import FakeWeCom

LIMIT, PERIOD, LATENCY = 50, 1.0, 0.020


async def one_run(seconds: float, workers: int = 100) -> dict[str, float]:
    async with FakeWeCom(
        customers=5000, rate_limits=[RateLimit(LIMIT, PERIOD)], latency=LATENCY
    ) as fake:
        async with fake.client(rate_limit=RateLimit(LIMIT, PERIOD)) as client:
            await client.external_contact.get_follow_user_list()  # the token, outside the clock
            ids = [fake.corp.customer_id(i) for i in range(10, 5000)]
            start = time.monotonic()
            deadline = start + seconds
            done = 0

            async def worker(w: int) -> None:
                nonlocal done
                k = w
                while time.monotonic() < deadline:
                    await client.external_contact.get(ids[k % len(ids)])
                    done += 1
                    k += workers

            await asyncio.gather(*(worker(w) for w in range(workers)))
        path = "externalcontact/get"
        # Steady state, measured slot by slot: call i and call i + k*LIMIT used the
        # same slot k cycles apart, so k*LIMIT calls over that span is the rate, with
        # no error from where the window happens to cut the bursts. The first period
        # is skipped: the run starts with a full budget.
        arrived = sorted(c.time for c in fake.calls_to(path) if c.errcode == 0)
        first = next(i for i, t in enumerate(arrived) if t >= start + PERIOD)
        span = (len(arrived) - 1 - first) // LIMIT * LIMIT
        rate = span / (arrived[first + span] - arrived[first])
        return {
            "calls_per_s": rate,
            "ratio": rate / (LIMIT / PERIOD),
            "violations": fake.stats.violations,
            "max_in_window": fake.stats.max_in_window.get((path, PERIOD), 0),
            "calls": done,
        }


def run(quick: bool) -> dict[str, object]:
    seconds, repeats = (4.0, 1) if quick else (30.0, 3)
    runs = [asyncio.run(one_run(seconds)) for _ in range(repeats)]
    return {"seconds": seconds, "runs": runs}
