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
import os
import shutil
import subprocess
import sys
import tempfile
import time

import aiohttp

from wecom_async import WeComClient
from wecom_async.testing import FakeCorp

from ._common import ServerProcess, fake_server_process

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


#: Requests per loop in the instruction count (the count is taken with and without them).
COUNTED_REQUESTS = 1000


async def one_loop(name: str, n: int, base_url: str, corp_id: str, secret: str) -> None:
    """Warm both loops as ``measure`` does, then run ``n`` requests through ``name``'s."""
    corp = FakeCorp(customers=20_000)
    ids = [corp.customer_id(i) for i in range(10, 10 + max(n, 200))]
    async with (
        WeComClient(corp_id, secret, base_url=base_url, rate_limit=[]) as client,
        aiohttp.ClientSession() as session,
    ):
        await client_loop(client, ids[:200])
        token = client._tokens._local.value  # type: ignore[union-attr]
        await bare_loop(session, base_url, token, ids[:200])
        if n and name == "client":
            await client_loop(client, ids[:n])
        elif n:
            await bare_loop(session, base_url, token, ids[:n])


def _instructions(valgrind: str, args: list[str], scratch: str) -> subprocess.Popen[bytes]:
    out = os.path.join(scratch, "-".join(args[:2]) + ".out")
    command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
    return subprocess.Popen(
        [*command, sys.executable, "-m", "benchmarks.b2_overhead", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _total(path: str) -> int:
    with open(path, encoding="ascii", errors="replace") as out:
        for line in out:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


def count_instructions(server: ServerProcess) -> dict[str, float] | None:
    """Instructions per request of each loop under callgrind: deterministic, load-proof.

    Each loop runs in a fresh process twice, with and without ``COUNTED_REQUESTS``
    requests after the same warm-up; the difference over the count is the cost of a
    request, start-up and warm-up cancelled out. None when valgrind is not installed.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    target = [server.base_url, server.corp_id, server.corp_secret]
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("client", "bare"):
            runs = [
                _instructions(valgrind, [name, str(n), *target], scratch)
                for n in (0, COUNTED_REQUESTS)
            ]
            for proc in runs:
                if proc.wait() != 0:
                    raise RuntimeError(f"callgrind run of the {name} loop failed")
            without, with_ = (
                _total(os.path.join(scratch, f"{name}-{n}.out")) for n in (0, COUNTED_REQUESTS)
            )
            per_request[name] = (with_ - without) / COUNTED_REQUESTS
    return per_request


def run(quick: bool) -> dict[str, object]:
    n, repeats = (1000, 3) if quick else (5000, 5)
    with fake_server_process("--customers", "20000", "--rate-scale", "1000") as server:
        runs = asyncio.run(measure(server.base_url, server.corp_id, server.corp_secret, n, repeats))
        instructions = None if quick else count_instructions(server)
    return {
        "requests": n,
        "concurrency": CONCURRENCY,
        "runs": runs,
        "instructions": instructions,
        "counted_requests": COUNTED_REQUESTS,
    }


if __name__ == "__main__":
    # A child of count_instructions: python -m benchmarks.b2_overhead NAME N URL CORP SECRET
    loop_name, count, *server_args = sys.argv[1:]
    asyncio.run(one_loop(loop_name, int(count), *server_args))
