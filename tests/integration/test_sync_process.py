"""The sync as cron runs it: real processes against a FakeWeCom started by the test.

Two copies at once, SIGKILL and SIGTERM mid-run, a full disk, a broken stderr, odd
output paths. Each child is ``python -m wecom_async sync``; the fake runs on this
test's event loop, so children are started with asyncio and the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.integration.test_bulk import check_exactly_once, read_lines
from tests.integration.test_sync_records import minimum_pages
from wecom_async.testing import FakeWeCom

BATCH = "externalcontact/batch/get_by_user"
CMD = [sys.executable, "-m", "wecom_async", "sync"]


def env_for(fake: FakeWeCom) -> dict[str, str]:
    return {
        **os.environ,
        "WECOM_CORP_ID": fake.corp_id,
        "WECOM_CORP_SECRET": fake.corp_secret,
        "WECOM_BASE_URL": fake.base_url,
    }


async def start(fake: FakeWeCom, *args: str, **kwargs: object) -> asyncio.subprocess.Process:
    options: dict[str, object] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        **kwargs,
    }
    return await asyncio.create_subprocess_exec(*CMD, *args, env=env_for(fake), **options)  # type: ignore[arg-type]


async def finish(proc: asyncio.subprocess.Process, timeout: float = 120) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode() if out else "", err.decode() if err else ""


async def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Wait for a condition the fake's log will make true, checking as requests arrive."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
async def slow_fake() -> AsyncIterator[FakeWeCom]:
    async with FakeWeCom(customers=4000, members=60, latency=0.03, seed=6) as fake:
        yield fake


async def test_a_second_sync_during_the_first_fails_at_once_and_harms_nothing(
    slow_fake: FakeWeCom, tmp_path: Path
) -> None:
    out, state = tmp_path / "c.jsonl", tmp_path / "c.state"
    slowly = ["--concurrency", "1", "--members-per-call", "5", "--quiet"]
    first = await start(slow_fake, "--out", str(out), "--state", str(state), *slowly)
    await until(lambda: len(slow_fake.calls_to(BATCH)) >= 4)
    # Cron overlap: the same output and state, the same output only, the same state only.
    for args in (
        ["--out", str(out), "--state", str(state)],
        ["--out", str(out), "--state", str(tmp_path / "other.state")],
        ["--out", str(tmp_path / "other.jsonl"), "--state", str(state)],
    ):
        began = time.monotonic()
        code, _, err = await finish(await start(slow_fake, *args, "--quiet"), 30)
        assert code == 1, err
        assert "another sync is running" in one_line(err)
        assert time.monotonic() - began < 10  # at once, not after waiting for the first
        assert first.returncode is None  # the first was still running all along
    code, _, err = await finish(first)
    assert code == 0, err
    check_exactly_once(slow_fake.corp, read_lines(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]


@pytest.mark.parametrize("where", ["before the rename", "after the rename"])
async def test_a_sync_killed_around_its_rename_is_finished_and_the_next_fetches_afresh(
    tmp_path: Path, where: str
) -> None:
    """SIGKILL exactly at the rename: the next sync must fetch, not re-export old pairs."""
    out = tmp_path / "c.jsonl"
    out.write_text("last night's export\n")
    after = where == "after the rename"
    child = (
        "import os, signal, sys\n"
        "real = os.replace\n"
        "def replace(a, b):\n"
        f"    if {after}: real(a, b)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.replace = replace  # the sync's only rename is the output's\n"
        "from wecom_async.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    async with FakeWeCom(customers=600, members=30, seed=2) as fake:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", child, "sync", "--out", str(out), "--quiet",
            env=env_for(fake), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        code, _, err = await finish(proc)
        assert code == -signal.SIGKILL, err
        fetched = len(fake.calls_to(BATCH))
        assert (tmp_path / "c.jsonl.sync-state").exists()
        code, _, err = await finish(await start(fake, "--out", str(out)))
        assert code == 0, err
        assert len(fake.calls_to(BATCH)) == 2 * fetched  # everything fetched again
    assert "resumed" not in err
    check_exactly_once(fake.corp, read_lines(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # no partial left


async def test_sigkill_mid_fetch_resumes_from_the_pages_it_had(tmp_path: Path) -> None:
    """A corp of one wave of chunks (300 members, 4 lanes): page-level checkpoints."""
    customers = int(os.environ.get("WECOM_TEST_RESUME_CUSTOMERS", "30000"))
    members = int(os.environ.get("WECOM_TEST_RESUME_MEMBERS", "300"))
    out = tmp_path / "c.jsonl"
    async with FakeWeCom(customers=customers, members=members, latency=0.002, seed=8) as fake:
        code, _, err = await finish(await start(fake, "--out", str(tmp_path / "full.jsonl")), 600)
        assert code == 0, err
        full = len(fake.calls_to(BATCH))

        proc = await start(fake, "--out", str(out))
        await until(lambda: len(fake.calls_to(BATCH)) >= full + full // 2, 600)
        proc.send_signal(signal.SIGKILL)
        code, _, _ = await finish(proc)
        assert code == -signal.SIGKILL
        assert not out.exists()
        before = len(fake.calls_to(BATCH))

        code, _, err = await finish(await start(fake, "--out", str(out)), 600)
        assert code == 0, err
        resumed = len(fake.calls_to(BATCH)) - before
    print(f"full run {full} batch requests; resumed after a kill at half: {resumed}")
    assert resumed <= 0.6 * full
    check_exactly_once(fake.corp, read_lines(out))


async def test_sigterm_is_one_line_exit_143_and_the_state_is_kept(
    slow_fake: FakeWeCom, tmp_path: Path
) -> None:
    out = tmp_path / "c.jsonl"
    args = ["--out", str(out), "--members-per-call", "10", "--concurrency", "2"]
    proc = await start(slow_fake, *args, "--quiet")
    await until(lambda: len(slow_fake.calls_to(BATCH)) >= 10)
    proc.send_signal(signal.SIGTERM)
    code, _, err = await finish(proc)
    assert code == 143, err
    assert one_line(err).endswith("terminated; run the same command again to resume")
    assert not out.exists()
    assert (tmp_path / "c.jsonl.sync-state").exists()
    stopped = len(slow_fake.calls_to(BATCH))
    code, _, err = await finish(await start(slow_fake, *args))
    assert code == 0, err
    # Resumed: both runs together fetched no more than one run, plus the two pages
    # that were in flight when the signal came.
    assert len(slow_fake.calls_to(BATCH)) <= minimum_pages(slow_fake.corp, 10, 2) + 2
    check_exactly_once(slow_fake.corp, read_lines(out))
    assert stopped >= 10


async def test_a_broken_stderr_does_not_abort_the_sync(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    async with FakeWeCom(customers=3000, members=60, latency=0.01) as fake:
        read_end, write_end = os.pipe()
        proc = await start(fake, "--out", str(out), stderr=write_end)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            first = await asyncio.to_thread(pipe.readline)  # as `| head -1` does
        assert first.startswith(b"members:")
        code, _, _ = await finish(proc)  # every later write to stderr meets EPIPE
    assert code == 0
    check_exactly_once(fake.corp, read_lines(out))


async def test_out_dash_writes_json_lines_to_stdout_and_progress_to_stderr(
    tmp_path: Path,
) -> None:
    async with FakeWeCom(customers=700, members=20) as fake:
        proc = await start(fake, "--out", "-", cwd=tmp_path)
        code, stdout, err = await finish(proc)
    assert code == 0, err
    path = tmp_path / "stdout.jsonl"
    path.write_text(stdout)
    check_exactly_once(fake.corp, read_lines(path))
    assert "wrote 700 customers" in err and "to stdout" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdout.jsonl"]  # state removed


async def test_a_symlinked_output_replaces_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "exports" / "customers.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    async with FakeWeCom(customers=300, members=20) as fake:
        code, _, err = await finish(await start(fake, "--out", str(link)))
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == target.resolve()
    check_exactly_once(fake.corp, read_lines(target))


async def test_outputs_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        targets = [fifo, sock_path, Path("/dev/full"), Path("/dev/null")]
        async with FakeWeCom(customers=10, members=5) as fake:
            for target in targets:
                kind = stat.S_IFMT(os.lstat(target).st_mode)
                code, _, err = await finish(await start(fake, "--out", str(target)))
                assert code == 2, err
                assert "not a regular file" in one_line(err)
                assert stat.S_IFMT(os.lstat(target).st_mode) == kind  # still what it was
            code, _, err = await finish(await start(fake, "--out", ""))
            assert code == 2 and "empty" in one_line(err)
            assert fake.stats.calls == 0


@contextlib.contextmanager
def tiny_disk(path: Path, size: str) -> AsyncIterator[Path]:  # type: ignore[misc]
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


async def test_a_full_disk_removes_the_partial_output_and_keeps_the_state(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "256k") as disk:
        out = disk / "c.jsonl"
        state = tmp_path / "c.state"
        async with FakeWeCom(customers=3000, members=60) as fake:
            code, _, err = await finish(
                await start(fake, "--out", str(out), "--state", str(state), "--quiet")
            )
            assert code == 1, err
            assert "No space left on device" in one_line(err)
            assert os.listdir(disk) == []  # the partial output is gone: the disk is free
            assert state.exists()  # kept: a run with room resumes without fetching
            fetched = len(fake.calls_to(BATCH))
            code, _, err = await finish(
                await start(fake, "--out", str(tmp_path / "c.jsonl"), "--state", str(state))
            )
            assert code == 0, err
            assert len(fake.calls_to(BATCH)) == fetched
    check_exactly_once(fake.corp, read_lines(tmp_path / "c.jsonl"))
