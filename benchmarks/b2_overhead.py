"""B2: the client's overhead against the floor, a bare aiohttp + json loop.

The fake runs in its own process with no latency and no limit. Both loops make the
same requests (``externalcontact/get`` of one-page customers) from the same number
of concurrent workers, alternately, several times; the figure is the ratio of
their median requests/s. On 2 cores the fake (one core, in Python) is the
bottleneck, so requests/s come out nearly equal whatever the client costs; the
client-side CPU time per request is therefore the headline: it shows the client's
cost whatever the server does.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from wecom_async import WeComClient
from wecom_async.testing import FakeCorp

from ._common import fake_server_process

CONCURRENCY = 16


async def bare_loop(
    session: aiohttp.ClientSession, base_url: str, token: str, ids: list[str]
) -> None:
    """The floor: what any client must do, and nothing more (on a warm session, as the
    client's is)."""
    url = base_url + "externalcontact/get"
    queue = iter(ids)

    async def worker() -> None:
        for external_userid in queue:
            params = {"access_token": token, "external_userid": external_userid}
            async with session.get(url, params=params) as resp:
                data = json.loads(await resp.read())
            if data.get("errcode", 0) != 0:
                raise RuntimeError(data)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def client_loop(client: WeComClient, ids: list[str]) -> None:
    queue = iter(ids)

    async def worker() -> None:
        for external_userid in queue:
            await client.external_contact.get(external_userid)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def measure(
    base_url: str, corp_id: str, secret: str, n: int, repeats: int
) -> dict[str, object]:
    corp = FakeCorp(customers=20_000)
    ids = [corp.customer_id(i) for i in range(10, 10 + n)]
    runs: dict[str, list[dict[str, float]]] = {"client": [], "bare": []}
    async with (
        WeComClient(corp_id, secret, base_url=base_url, rate_limit=[]) as client,
        aiohttp.ClientSession() as session,
    ):
        await client_loop(client, ids[:200])  # warm both: token, connections
        token = client._tokens._local.value  # type: ignore[union-attr]
        await bare_loop(session, base_url, token, ids[:200])
        for _ in range(repeats):
            for name in ("client", "bare"):
                wall, cpu = time.perf_counter(), time.process_time()
                if name == "client":
                    await client_loop(client, ids)
                else:
                    await bare_loop(session, base_url, token, ids)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                runs[name].append({"rps": n / wall, "cpu_us": cpu / n * 1e6})
    return runs


def run(quick: bool) -> dict[str, object]:
    n, repeats = (1000, 3) if quick else (5000, 5)
    with fake_server_process("--customers", "20000", "--rate-scale", "1000") as server:
        runs = asyncio.run(measure(server.base_url, server.corp_id, server.corp_secret, n, repeats))
    return {"requests": n, "concurrency": CONCURRENCY, "runs": runs}
