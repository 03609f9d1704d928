"""A pump killed with SIGKILL mid-batch, then started again: no message is skipped and
none is answered twice (the checkpoint in files, the reply's msgid sent once)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from wecom_async.testing import FakeWeCom

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 8
HOLD_AT = 4


async def run_worker(
    fake: FakeWeCom, store: Path, hold_at: int, where: str
) -> tuple[list[str], int | None]:
    """Run one worker; kill it with SIGKILL when it says "hold". Its lines and return code."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.kf.pump_worker",
        fake.base_url,
        fake.corp_id,
        fake.corp_secret,
        fake.kf.open_kfid,
        str(store),
        fake.kf.issue_token(),
        str(hold_at),
        where,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    lines: list[str] = []

    async def read_until_it_ends() -> tuple[list[str], int]:
        assert proc.stdout is not None
        while line := (await proc.stdout.readline()).decode().strip():
            lines.append(line)
            if line == "hold":
                proc.send_signal(signal.SIGKILL)
        return lines, await proc.wait()

    try:
        return await asyncio.wait_for(read_until_it_ends(), 60)  # 3.10 has no asyncio.timeout
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("where", ["before_send", "after_send"])
async def test_a_pump_killed_mid_batch_skips_nothing_and_answers_once(
    tmp_path: Path, where: str
) -> None:
    async with FakeWeCom(customers=5, members=2) as fake:
        who = fake.kf.new_customer("阿强")
        for n in range(MESSAGES):
            fake.kf.customer_says(who, f"m{n}")
        first, code = await run_worker(fake, tmp_path, HOLD_AT, where)
        assert code == -signal.SIGKILL and first[-1] == "hold"
        second, code = await run_worker(fake, tmp_path, -1, where)
        assert code == 0 and second[-1] == "done"
        answers = [s.content["content"] for s in fake.kf.sent_to(who)]
    # Every message answered, each exactly once, in order.
    assert answers == [f"echo m{n}" for n in range(MESSAGES)]
    # The restart resumed at the message it was killed on, not from the start.
    resumed = [line for line in second if line.startswith("sent")]
    assert resumed == [f"sent m{n}" for n in range(HOLD_AT, MESSAGES)]
