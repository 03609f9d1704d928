"""B4: a whole-corp sync at two sizes: wall time, customers/s, CPU, requests, peak RSS.

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

from ._common import ServerProcess, fake_server_process, peak_rss_mib


def sync_in_child(server: ServerProcess, *flags: str) -> dict[str, float]:
    """Run ``benchmarks.sync_child`` against ``server``; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.sync_child",
                server.base_url,
                server.corp_id,
                server.corp_secret,
                os.path.join(tmp, "out.jsonl"),
                *flags,
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        ).stdout
    report: dict[str, float] = json.loads(out)
    return report


def one_run(customers: int, *, floor: bool = False) -> dict[str, float]:
    args = ("--customers", str(customers), "--latency-ms", "5")
    with fake_server_process(*args) as server:
        report = sync_in_child(server)
        if floor:
            return {"sync_peak_rss_mib": report["peak_rss_mib"]}
        server_rss = peak_rss_mib(server.proc.pid)
    return {
        "customers": report["customers"],
        "wall_s": report["elapsed"],
        "cpu_s": report["cpu_s"],
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
