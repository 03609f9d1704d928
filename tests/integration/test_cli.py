"""The wecom-async command, run as a user runs it: a separate process on real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_sync_records import OddCorp
from tests.servers import TinyServer
from wecom_async import from_dict, to_dict
from wecom_async.models import ExternalContactDetail, KfCustomerBatch, SyncedCustomer
from wecom_async.testing import FakeCorp

CMD = [sys.executable, "-m", "wecom_async"]


class FakeServerProcess:
    """``wecom-async fake-server`` in a child process, with the credentials it printed."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*CMD, "fake-server", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        info: dict[str, str] = {}
        assert self.proc.stdout is not None
        while len(info) < 3:
            line = self.proc.stdout.readline()
            assert line, (
                f"fake-server ended early: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
            key, _, value = line.partition(":")
            if key in ("base URL", "corp id", "corp secret"):
                info[key] = value.strip()
        self.base_url = info["base URL"]
        self.env = {
            **os.environ,
            "WECOM_CORP_ID": info["corp id"],
            "WECOM_CORP_SECRET": info["corp secret"],
            "WECOM_BASE_URL": self.base_url,
        }

    def stop(self) -> None:
        self.proc.terminate()
        try:
            assert self.proc.wait(timeout=10) == 0
        finally:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServerProcess]:
    server = FakeServerProcess("--customers", "300", "--members", "30", "--seed", "4")
    yield server
    server.stop()


CORP = FakeCorp(customers=300, members=30, seed=4)


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_customer_get_prints_json(fake: FakeServerProcess) -> None:
    ext_id = CORP.customer_id(7)
    result = run("customer", "get", ext_id, env=fake.env)
    assert result.returncode == 0, result.stderr
    detail = json.loads(result.stdout)
    assert detail["external_contact"]["external_userid"] == ext_id
    assert [f["userid"] for f in detail["follow_user"]] == [
        CORP.userids[m] for m in CORP.followers(7)
    ]
    # The one JSON shape: to_dict's, absent fields left out rather than null.
    assert detail == to_dict(from_dict(ExternalContactDetail, detail))


def test_kf_customers_prints_json(fake: FakeServerProcess) -> None:
    ids = [CORP.customer_id(i) for i in range(20)]
    result = run("kf", "customers", *ids, "nobody", "--context", env=fake.env)
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    returned = [c["external_userid"] for c in batch["customer_list"]] + batch[
        "invalid_external_userid"
    ]
    assert sorted(returned) == sorted([*ids, "nobody"])
    assert "nobody" in batch["invalid_external_userid"]
    assert batch == to_dict(from_dict(KfCustomerBatch, batch))


def test_sync_writes_every_customer_once(fake: FakeServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "customers.jsonl"
    result = run("sync", "--out", str(out), env=fake.env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [line["external_contact"]["external_userid"] for line in lines]
    # WeCom's own JSON, which from_dict reads back as the model.
    customers = [from_dict(SyncedCustomer, line) for line in lines]
    assert [c.external_contact.external_userid for c in customers] == ids
    assert sorted(ids) == sorted(CORP.customer_id(i) for i in range(300))
    # Not a terminal: one line per phase, each once it has its figures, then the
    # summary with the request figures.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, result.stderr
    assert lines[0] == "members: 30 members to fetch"
    assert lines[1].startswith("fetch: 30/30 members, ")
    assert lines[2] == "export: 300 customers written"
    assert "0/0" not in result.stderr
    summary = re.fullmatch(
        r"wrote 300 customers from 30 members to .* in [\d.]+s: "
        r"(\d+) requests, (\d+) retries, (\d+) 45009s",
        lines[3],
    )
    assert summary is not None, lines[3]
    # gettoken, the member list, a member's list of ids and batch pages at least.
    assert int(summary[1]) >= 3 and (summary[2], summary[3]) == ("0", "0")


def test_version_and_verbose_logging(fake: FakeServerProcess) -> None:
    from wecom_async import __version__

    result = run("--version", env=fake.env)
    assert (result.returncode, result.stdout.strip()) == (0, f"wecom-async {__version__}")

    ext_id = CORP.customer_id(7)
    quiet = run("customer", "get", ext_id, env=fake.env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    info = run("-v", "customer", "get", ext_id, env=fake.env)
    assert "INFO fetched an access token for corp" in info.stderr
    assert "DEBUG" not in info.stderr
    for args in (("-vv", "customer", "get", ext_id), ("customer", "get", ext_id, "-vv")):
        debug = run(*args, env=fake.env)
        assert debug.returncode == 0, debug.stderr
        assert "externalcontact/get?external_userid=" in debug.stderr
        assert "access_token=***" in debug.stderr and "errcode 0" in debug.stderr
        assert fake.env["WECOM_CORP_SECRET"] not in debug.stderr


def test_timeout_bounds_each_attempt() -> None:
    slow = FakeServerProcess("--customers", "10", "--members", "2", "--latency-ms", "500")
    try:
        ext_id = FakeCorp(customers=10, members=2).customer_id(1)
        result = run("customer", "get", ext_id, "--timeout", "0.05", "-v", env=slow.env)
        assert result.returncode == 1
        assert "timed out after 0.05s" in result.stderr.strip().splitlines()[-1]
        assert "retrying gettoken for corp" in result.stderr
        assert run("customer", "get", ext_id, "--timeout", "0", env=slow.env).returncode == 2
        assert run("customer", "get", ext_id, "--timeout", "5", env=slow.env).returncode == 0
    finally:
        slow.stop()


def test_missing_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WECOM_")}
    result = run("sync", "--out", str(tmp_path / "c.jsonl"), env=env)
    assert result.returncode == 2
    assert "WECOM_CORP_ID and WECOM_CORP_SECRET" in one_line_error(result)


def test_unreachable_base_url(fake: FakeServerProcess, tmp_path: Path) -> None:
    env = {**fake.env, "WECOM_BASE_URL": "http://127.0.0.1:9/cgi-bin/"}
    result = run("customer", "get", "wm1", env=env)
    assert result.returncode == 1
    assert "gettoken failed" in one_line_error(result)


def test_wrong_secret(fake: FakeServerProcess) -> None:
    result = run("customer", "get", "wm1", env={**fake.env, "WECOM_CORP_SECRET": "wrong"})
    assert result.returncode == 1
    line = one_line_error(result)
    assert "40001" in line and "wrong" not in line


def test_an_out_file_that_cannot_be_written(fake: FakeServerProcess, tmp_path: Path) -> None:
    result = run("sync", "--out", str(tmp_path / "no-such-dir" / "c.jsonl"), env=fake.env)
    assert result.returncode == 1
    assert "No such file or directory" in one_line_error(result)


def test_an_out_path_that_is_a_directory_fails_before_fetching(
    fake: FakeServerProcess, tmp_path: Path
) -> None:
    result = run("sync", "--out", str(tmp_path), env=fake.env)
    assert result.returncode == 2  # a usage error, like every non-regular output
    assert "is a directory" in one_line_error(result)


def test_a_state_file_that_is_not_a_database(fake: FakeServerProcess, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not sqlite " * 100)
    result = run("sync", "--out", str(tmp_path / "c.jsonl"), "--state", str(state), env=fake.env)
    assert result.returncode == 1
    assert "sync state" in one_line_error(result)


def test_an_unknown_customer_is_one_line(fake: FakeServerProcess) -> None:
    result = run("customer", "get", "wmNOBODY", env=fake.env)
    assert result.returncode == 1
    assert "40096" in one_line_error(result)


def read_ids(path: Path) -> list[str]:
    return [
        json.loads(x)["external_contact"]["external_userid"] for x in path.read_text().splitlines()
    ]


def test_ctrl_c_interrupts_cleanly_and_the_next_run_resumes(tmp_path: Path) -> None:
    slow = FakeServerProcess(
        "--customers", "300", "--members", "30", "--seed", "4", "--latency-ms", "400"
    )
    try:
        out = tmp_path / "customers.jsonl"
        args = [*CMD, "sync", "--out", str(out), "--members-per-call", "5", "--concurrency", "1"]
        args += ["-vv"]
        with subprocess.Popen(
            args, env=slow.env, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        ) as proc:
            assert proc.stderr is not None
            lines: list[Any] = []
            while True:  # -vv logs every request: wait until the first chunk is stored
                line = proc.stderr.readline()
                assert line, "sync ended before it could be interrupted: " + "".join(lines)
                lines.append(line)
                if sum("batch/get_by_user" in x for x in lines) >= 3:
                    break
            proc.send_signal(signal.SIGINT)
            rest = proc.stderr.read()
            assert proc.wait(timeout=20) == 130, rest
        assert "Traceback" not in rest
        assert (
            rest.strip()
            .splitlines()[-1]
            .endswith("interrupted; run the same command again to resume")
        )
        assert not out.exists()

        started = time.monotonic()
        result = subprocess.run(args, env=slow.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "resumed after" in result.stderr
        assert time.monotonic() - started < 120
        assert sorted(read_ids(out)) == sorted(CORP.customer_id(i) for i in range(300))
    finally:
        slow.stop()


@pytest.mark.parametrize(
    "args",
    [
        ("sync", "--out", ""),
        ("sync", "--out", "x.jsonl", "--state", " "),
        ("demo", "--out", ""),
    ],
)
def test_an_empty_path_is_a_usage_error(args: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "WECOM_CORP_ID": "ww1", "WECOM_CORP_SECRET": "s"}
    result = subprocess.run(
        [*CMD, *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "an empty path names no file" in one_line_error(result)
    assert "unexpected" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was started, nothing was written


def test_every_wecom_command_shares_the_same_options() -> None:
    from wecom_async.cli import _parser

    parser = _parser()
    for argv in (["sync", "--out", "x"], ["customer", "get", "wm1"], ["kf", "customers", "wm1"]):
        args = parser.parse_args([*argv, "--base-url", "http://127.0.0.1:1/", "--timeout", "2"])
        assert (args.base_url, args.timeout) == ("http://127.0.0.1:1/", 2.0)
        assert callable(args.run)  # dispatched by set_defaults, not by a table of names
    assert parser.parse_args(["-vv", "demo"]).verbose == 2
    assert parser.parse_args(["demo", "-v"]).verbose == 1


async def sync_odd_corp(server: TinyServer, out: Path, *flags: str) -> str:
    """``wecom-async sync`` of an OddCorp (see test_sync_records); its stderr.

    The server runs on this test's loop, so the child is awaited, not waited for.
    """
    server.route = OddCorp().route
    env = {**os.environ, "WECOM_CORP_ID": "corp", "WECOM_CORP_SECRET": "secret"}
    proc = await asyncio.create_subprocess_exec(
        *CMD, "sync", *flags, "--base-url", server.base_url, "--out", str(out), "--quiet",
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert stdout == b""
    return stderr.decode()


async def test_sync_reports_refused_members_and_skipped_pairs_once(
    server: TinyServer, tmp_path: Path
) -> None:
    out = tmp_path / "c.jsonl"
    text = await sync_odd_corp(server, out)
    lines = text.splitlines()
    assert [line for line in lines if "gone" in line] == [
        "warning: WeCom refused 1 members; their customers are missing: gone"
    ], text
    # Chunks [u1] [u2] [u3] [gone, u4]: u1's pair without userid is u1's; the pair
    # with a null customer is the one skipped.
    assert [line for line in lines if "skipped" in line] == [
        "warning: 1 pairs were skipped: no customer in them, or no member to file them under"
    ], text
    assert len(lines) == 3 and lines[0].startswith("wrote 11 customers from 5 members"), text
    assert sorted(read_ids(out)) == ["wmA", "wmB", "wmC", "wmD", *(f"wmE{i:03d}" for i in range(7))]


async def test_sync_verbose_also_reports_them_as_they_happen(
    server: TinyServer, tmp_path: Path
) -> None:
    text = await sync_odd_corp(server, tmp_path / "c.jsonl", "-v")
    refused = [line for line in text.splitlines() if "'gone' refused" in line]
    assert refused == [
        "warning: member 'gone' refused by WeCom (WeCom errcode 40003 on "
        "externalcontact/batch/get_by_user: invalid userid); skipped"
    ], text
