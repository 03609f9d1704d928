"""B4: a whole-corp sync at two sizes: wall time, customers/s and peak RSS.

The fake (5 ms latency, WeCom's real limits) and the sync each run in a process of
their own, started afresh for every run; each peak RSS is that process's own VmHWM
from /proc. The claim under test: the sync's peak RSS does not grow with the corp.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from ._common import peak_rss_mib


def one_run(customers: int, *, floor: bool = False) -> dict[str, float]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wecom_async",
            "fake-server",
            "--port",
            "0",
            "--customers",
            str(customers),
            "--latency-ms",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    info: dict[str, str] = {}
    while len(info) < 3:
        key, _, value = server.stdout.readline().partition(":")
        if key in ("base URL", "corp id", "corp secret"):
            info[key] = value.strip()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.sync_child",
                    info["base URL"],
                    info["corp id"],
                    info["corp secret"],
                    os.path.join(tmp, "out.jsonl"),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            out, _ = child.communicate()
            if child.returncode != 0:
                raise RuntimeError("the sync failed")
            report = json.loads(out)
        server_rss = peak_rss_mib(server.pid)
        if floor:
            return {"sync_peak_rss_mib": report["peak_rss_mib"]}
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
    return {
        "customers": report["customers"],
        "wall_s": report["elapsed"],
        "customers_per_s": report["customers"] / report["elapsed"],
        "sync_peak_rss_mib": report["peak_rss_mib"],
        "server_peak_rss_mib": server_rss,
        "requests": report["requests"],
    }


def run(quick: bool) -> dict[str, object]:
    sizes, repeats = ((2_000, 20_000), 1) if quick else ((20_000, 200_000), 3)
    results: dict[str, object] = {
        "floor": [one_run(50, floor=True)["sync_peak_rss_mib"] for _ in range(repeats)]
    }
    results.update({str(n): [one_run(n) for _ in range(repeats)] for n in sizes})
    return results
