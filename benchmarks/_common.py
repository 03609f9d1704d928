"""What the benchmarks share: a fake server in its own process, medians, the report."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs


@attrs.define
class ServerProcess:
    """``wecom-async fake-server`` in a child process."""

    proc: subprocess.Popen[str]
    base_url: str
    corp_id: str
    corp_secret: str


@contextmanager
def fake_server_process(*args: str) -> Iterator[ServerProcess]:
    """Start the fake server in its own process (so it does not share our CPU core)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wecom_async", "fake-server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        info: dict[str, str] = {}
        assert proc.stdout is not None
        while len(info) < 3:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the fake server did not start")
            key, _, value = line.partition(":")
            if key in ("base URL", "corp id", "corp secret"):
                info[key] = value.strip()
        yield ServerProcess(proc, info["base URL"], info["corp id"], info["corp secret"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """min–max of the runs, for the report."""
    return f"{min(values):.3g}–{max(values):.3g}" if len(values) > 1 else "one run"


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {time.strftime('%Y-%m-%d')}"
    )


def peak_rss_mib(pid: int | str = "self") -> float:
    """A live process's peak RSS (VmHWM) in MiB, from /proc (Linux).

    Not wait4's ru_maxrss: that keeps the high-water mark from before exec, so a
    child forked from a large parent would report the parent's size.
    """
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")
