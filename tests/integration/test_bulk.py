"""Bulk endpoints and the resumable sync, against FakeWeCom over real sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from wecom_async import RetryPolicy, WeComError, WeComInputError, WeComNotFoundError
from wecom_async.sync import SyncProgress, sync_customers
from wecom_async.testing import FakeCorp, FakeWeCom, Faults


def pairs_of(corp: FakeCorp, userids: list[str]) -> set[tuple[str, str]]:
    return {
        (corp.customer_id(i), u)
        for u in userids
        for i in corp.customers_of(corp.member_index(u))  # type: ignore[arg-type]
    }


async def test_batch_get_by_user_runs_chunks_of_100_concurrently_to_the_end() -> None:
    async with FakeWeCom(customers=2000, members=250, latency=0.02) as fake:
        async with fake.client() as client:
            stream = client.external_contact.batch_get_by_user(fake.corp.userids, limit=37)
            got = [(c.external_contact.external_userid, c.follow_info.userid) async for c in stream]
        bodies = [c for c in fake.calls_to("externalcontact/batch/get_by_user")]
    assert len(got) == len(set(got))
    assert set(got) == pairs_of(fake.corp, fake.corp.userids)
    assert stream.unlicensed_userid_list == []
    assert len(bodies) > 3
    assert fake.stats.max_in_flight >= 2  # the three chunks overlapped


async def test_batch_get_by_user_reports_unlicensed_members() -> None:
    async with FakeWeCom(customers=500, members=120, unlicensed_ratio=0.2) as fake:
        unlicensed = sorted(fake.corp.userids[m] for m in fake.corp.unlicensed)
        licensed = [u for u in fake.corp.userids if u not in unlicensed]
        async with fake.client() as client:
            stream = client.external_contact.batch_get_by_user(fake.corp.userids)
            got = {(c.external_contact.external_userid, c.follow_info.userid) async for c in stream}
            # A chunk of only unlicensed members answers 701008: reported, not raised.
            only = client.external_contact.batch_get_by_user(unlicensed[:3])
            assert [c async for c in only] == []
    assert unlicensed
    assert sorted(stream.unlicensed_userid_list) == unlicensed
    assert sorted(stream.fail_info.unlicensed_userid_list) == unlicensed
    assert sorted(only.unlicensed_userid_list) == unlicensed[:3]
    assert got == pairs_of(fake.corp, licensed)


async def test_a_single_chunk_of_more_than_100_is_refused_before_any_request() -> None:
    async with FakeWeCom(customers=10, members=150) as fake, fake.client() as client:
        with pytest.raises(WeComInputError, match="at most 100"):
            async for _ in client.external_contact.batch_get_by_user_pages(fake.corp.userids):
                pass
        with pytest.raises(WeComInputError, match="limit"):
            client.external_contact.batch_get_by_user(["a"], limit=101)
    assert fake.stats.calls == 0


async def test_iter_details_reports_failed_ids_and_goes_on_within_its_bound() -> None:
    async with FakeWeCom(customers=400, latency=(0.005, 0.02)) as fake:
        good = [fake.corp.customer_id(i) for i in range(10, 210)]
        bad = [f"wmBOGUS{i:025d}" for i in range(5)]
        async with fake.client() as client:
            stream = client.external_contact.iter_details(bad[:2] + good + bad[2:], concurrency=8)
            async with stream:
                got = [d.external_contact.external_userid async for d in stream]
    assert sorted(got) == sorted(good)
    assert sorted(stream.failures) == sorted(bad)
    assert all(
        isinstance(e, WeComNotFoundError) and e.errcode == 40096 for e in stream.failures.values()
    )
    assert 2 <= fake.stats.max_in_flight <= 8


async def test_iter_details_stops_early_without_leaving_requests_behind() -> None:
    async with FakeWeCom(customers=400, latency=0.01) as fake, fake.client() as client:
        stream = client.external_contact.iter_details(
            (fake.corp.customer_id(i) for i in range(400)), concurrency=4
        )
        async with stream:
            async for _ in stream:
                break
        sent = client.stats.requests
        await asyncio.sleep(0.1)
        assert client.stats.requests == sent  # nothing kept running after the break
        assert sent < 20


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_exactly_once(corp: FakeCorp, lines: list[dict[str, Any]]) -> None:
    ids = [line["external_contact"]["external_userid"] for line in lines]
    assert len(ids) == len(set(ids)), "a customer was written twice"
    assert sorted(ids) == sorted(corp.customer_id(i) for i in range(corp.customers))
    for line in lines[:: max(1, len(lines) // 500)]:  # spot-check the merge
        i = corp.customer_index(line["external_contact"]["external_userid"])
        assert i is not None
        assert [f["userid"] for f in line["follow_info"]] == sorted(
            corp.userids[m] for m in corp.followers(i)
        )
        assert line["external_contact"] == corp.contact(i)


async def test_full_sync_of_20000_customers_with_faults_finds_each_exactly_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "customers.jsonl"
    seen: list[SyncProgress] = []
    async with FakeWeCom(customers=20_000, faults=Faults.mixed(0.08, delay=2.0), seed=9) as fake:
        policy = RetryPolicy(max_attempts=10, backoff_base=0.005, backoff_max=0.05)
        async with fake.client(retry=policy, timeout=0.5) as client:
            report = await sync_customers(client, out, progress=seen.append)
    check_exactly_once(fake.corp, read_lines(out))
    assert report.customers == 20_000
    assert report.members == 600 and report.resumed_members == 0
    assert fake.stats.faults > 10
    assert seen[-1].phase == "done" and seen[-1].customers_written == 20_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.jsonl"]  # state removed


async def test_an_interrupted_sync_resumes_and_finds_each_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "customers.jsonl"
    async with FakeWeCom(customers=6000, members=300, latency=0.005) as fake:
        halfway = asyncio.Event()

        def watch(p: SyncProgress) -> None:
            if p.members_done >= 100:
                halfway.set()

        async with fake.client() as client:
            run = asyncio.create_task(
                sync_customers(client, out, members_per_call=20, concurrency=2, progress=watch)
            )
            await halfway.wait()
            run.cancel()  # what Ctrl-C does to the CLI's task
            with pytest.raises(asyncio.CancelledError):
                await run
        assert not out.exists()
        assert (tmp_path / "customers.jsonl.sync-state").exists()
        first_run_calls = len(fake.calls_to("externalcontact/batch/get_by_user"))

        async with fake.client() as client:
            report = await sync_customers(client, out, members_per_call=20, concurrency=2)
        check_exactly_once(fake.corp, read_lines(out))
        second_run_calls = len(fake.calls_to("externalcontact/batch/get_by_user")) - first_run_calls

        async with fake.client() as client:  # a full run, for comparison
            await sync_customers(client, tmp_path / "again.jsonl", members_per_call=20)
        full_run_calls = (
            len(fake.calls_to("externalcontact/batch/get_by_user"))
            - first_run_calls
            - second_run_calls
        )
    assert report.resumed_members >= 100
    assert second_run_calls < full_run_calls  # finished members were not fetched again


async def test_a_sync_interrupted_while_exporting_resumes_without_fetching_again(
    tmp_path: Path,
) -> None:
    out = tmp_path / "customers.jsonl"
    async with FakeWeCom(customers=3000, members=60) as fake:

        def stop_in_export(p: SyncProgress) -> None:
            if p.phase == "export":
                raise KeyboardInterrupt  # as Ctrl-C would land, mid-export

        async with fake.client() as client:
            with pytest.raises(KeyboardInterrupt):
                await sync_customers(client, out, progress=stop_in_export)
            assert not out.exists()
            fetched = len(fake.calls_to("externalcontact/batch/get_by_user"))
            report = await sync_customers(client, out)
        assert len(fake.calls_to("externalcontact/batch/get_by_user")) == fetched
    assert report.resumed_members == 60
    check_exactly_once(fake.corp, read_lines(out))


async def test_a_kept_state_of_a_finished_sync_starts_the_next_one_afresh(tmp_path: Path) -> None:
    out = tmp_path / "customers.jsonl"
    async with FakeWeCom(customers=500, members=20) as fake, fake.client() as client:
        await sync_customers(client, out, keep_state=True)
        assert (tmp_path / "customers.jsonl.sync-state").exists()
        report = await sync_customers(client, out)
    assert report.resumed_members == 0
    check_exactly_once(fake.corp, read_lines(out))


async def test_closing_a_batch_stream_early_cancels_its_chunks_at_once() -> None:
    async with FakeWeCom(customers=3000, members=400, latency=0.01) as fake:
        async with fake.client() as client:

            def chunk_tasks() -> list[asyncio.Task[object]]:
                return [
                    t
                    for t in asyncio.all_tasks()
                    if "merge_streams" in getattr(t.get_coro(), "__qualname__", "")
                ]

            async with client.external_contact.batch_get_by_user(fake.corp.userids) as stream:
                async for _ in stream:
                    assert len(chunk_tasks()) == 4  # 400 members: four chunks running
                    break
            assert chunk_tasks() == []


async def test_a_state_of_another_corp_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    async with FakeWeCom(customers=50, members=10, seed=1) as one:
        async with one.client() as client:
            await sync_customers(client, out, keep_state=True)
    async with FakeWeCom(customers=50, members=10, seed=2) as other:
        async with other.client() as client:
            with pytest.raises(WeComInputError, match="another corp"):
                await sync_customers(client, out)
            report = await sync_customers(client, out, restart=True)
    assert report.customers == 50
    check_exactly_once(other.corp, read_lines(out))


async def test_an_unwritable_destination_fails_before_any_request(tmp_path: Path) -> None:
    async with FakeWeCom(customers=10) as fake, fake.client() as client:
        with pytest.raises(OSError):
            await sync_customers(client, tmp_path / "missing-dir" / "c.jsonl")
    assert fake.stats.calls == 0


async def test_a_failed_sync_leaves_no_partial_output(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    out.write_text("the previous export\n")
    async with FakeWeCom(customers=100, members=10) as fake:
        async with fake.client() as client:
            await client.external_contact.get_follow_user_list()
            fake.revoke_token()
            fake.corp.corp_secret = "changed"  # the refresh now fails with 40001
            with pytest.raises(WeComError):
                await sync_customers(client, out)
    assert out.read_text() == "the previous export\n"
    assert not (tmp_path / ".c.jsonl.partial").exists()
