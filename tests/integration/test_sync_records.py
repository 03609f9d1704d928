"""The sync against odd records and refusals, and its page-level checkpoints, in process.

Odd answers come from a TinyServer scripted here; the corp-sized runs from FakeWeCom.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.test_bulk import check_exactly_once, read_lines
from tests.servers import TinyServer
from tests.unit.test_json import json_path
from wecom_async import WeComClient, WeComInputError, WeComSyncError
from wecom_async._sync_state import Store
from wecom_async.models import SyncedCustomer
from wecom_async.sync import SyncProgress, iter_customers, plan_chunks, sync_customers
from wecom_async.testing import FakeCorp, FakeWeCom

BATCH = "externalcontact/batch/get_by_user"


def minimum_pages(
    corp: FakeCorp, members_per_call: int, lanes: int, plan: Callable[..., Any] = plan_chunks
) -> int:
    """The batch requests a sync of ``corp`` needs: each chunk's pairs in pages of 100.

    A page spans members, so a chunk takes ceil(its pairs / 100) pages: the minimum
    for the plan, which only each chunk's last, partial page keeps above
    ceil(all pairs / 100).
    """
    return sum(
        math.ceil(sum(len(corp.customers_of(corp.member_index(u))) for u in chunk) / 100)  # type: ignore[arg-type]
        for chunk in plan(corp.userids, members_per_call, lanes)
    )


def pair(ext_id: str | None, userid: str | None, name: str = "x") -> dict[str, Any]:
    contact = None if ext_id is None else {"external_userid": ext_id, "name": name, "type": 1}
    info: dict[str, Any] = {"remark": "", "tag_id": []}
    if userid is not None:
        info["userid"] = userid
    return {"external_contact": contact, "follow_info": info}


class OddCorp:
    """Members u1..u4 and ``gone`` (who left: WeCom answers 40003 for any list holding it).

    u1's customers include a name with half an emoji, a pair with
    ``external_contact: null`` and one whose ``follow_info`` lacks ``userid``.
    """

    members = ("u1", "u2", "u3", "gone", "u4")

    def __init__(self) -> None:
        self.customers: dict[str, list[dict[str, Any]]] = {
            "u1": [
                pair("wmA", "u1", "Tom\ud83d"),
                pair(None, "u1"),
                pair("wmB", None),
                pair("wmC", "u1"),
            ],
            "u2": [pair("wmA", "u2", "Tom\ud83d"), pair("wmD", "u2")],
            "u3": [pair(f"wmE{i:03d}", "u3") for i in range(7)],
            "u4": [pair("wmD", "u4")],
        }
        self.lists: list[list[str]] = []

    async def route(self, request: web.Request) -> web.Response:
        path = request.match_info["tail"]
        if path == "externalcontact/get_follow_user_list":
            return web.json_response({"errcode": 0, "follow_user": list(self.members)})
        body = await request.json()
        userids = body["userid_list"]
        self.lists.append(userids)
        if "gone" in userids:
            return web.json_response({"errcode": 40003, "errmsg": "invalid userid"})
        items = [p for u in userids for p in self.customers[u]]
        start = int(body.get("cursor") or 0)
        limit = body.get("limit", 50)
        page = items[start : start + limit]
        more = start + limit < len(items)
        # ensure_ascii (json.dumps's default) sends the lone surrogate as "\ud83d".
        text = json.dumps(
            {
                "errcode": 0,
                "external_contact_list": page,
                "next_cursor": str(start + limit) if more else "",
            }
        )
        return web.Response(text=text, content_type="application/json")


async def test_odd_records_are_written_skipped_or_isolated_and_the_rest_is_complete(
    server: TinyServer, tmp_path: Path
) -> None:
    corp = OddCorp()
    server.route = corp.route
    out = tmp_path / "c.jsonl"
    async with WeComClient("corp", "secret", base_url=server.base_url) as client:
        report = await sync_customers(client, out, concurrency=1, limit=3)
        stream = client.external_contact.batch_get_by_user(corp.members[:3] + corp.members[4:])
        streamed = {
            (c.external_contact.external_userid, c.follow_info.userid) async for c in stream
        }

    raw = out.read_bytes()
    raw.decode("utf-8")  # valid UTF-8, or this raises
    lines = [json.loads(line) for line in raw.splitlines()]
    by_id = {line["external_contact"]["external_userid"]: line for line in lines}
    assert len(by_id) == len(lines)
    assert by_id["wmA"]["external_contact"]["name"] == "Tom\ud83d"  # the same string back
    assert [f["userid"] for f in by_id["wmA"]["follow_info"]] == ["u1", "u2"]
    assert [f["userid"] for f in by_id["wmD"]["follow_info"]] == ["u2", "u4"]
    assert set(by_id) == {"wmA", "wmC", "wmD", *(f"wmE{i:03d}" for i in range(7))}
    assert report.failed_userids == ("gone",)
    # null contact, and wmB's follow_info without userid in a chunk of several members
    assert report.skipped_pairs == 2
    assert report.customers == len(lines)
    # 40003 split the chunk until "gone" was alone; everyone else was fetched.
    assert ["gone"] in corp.lists
    # The stream (one chunk of four) agrees with the sync: same pairs, same skips.
    synced = {(i, f["userid"]) for i, line in by_id.items() for f in line["follow_info"]}
    assert streamed == synced
    assert stream.skipped_pairs == 2


async def test_a_follow_info_without_userid_is_filled_in_for_a_one_member_chunk(
    server: TinyServer, tmp_path: Path
) -> None:
    corp = OddCorp()
    corp.members = ("u1",)
    server.route = corp.route
    async with WeComClient("corp", "secret", base_url=server.base_url) as client:
        report = await sync_customers(client, tmp_path / "c.jsonl")
        stream = client.external_contact.batch_get_by_user(["u1"])
        streamed = {
            (c.external_contact.external_userid, c.follow_info.userid) async for c in stream
        }
    lines = read_lines(tmp_path / "c.jsonl")
    assert {
        (x["external_contact"]["external_userid"], x["follow_info"][0]["userid"]) for x in lines
    } == {
        ("wmA", "u1"),
        ("wmB", "u1"),
        ("wmC", "u1"),
    }
    assert streamed == {("wmA", "u1"), ("wmB", "u1"), ("wmC", "u1")}
    assert report.skipped_pairs == stream.skipped_pairs == 1  # only the null contact


async def test_list_answers_84061_for_a_member_without_customers_as_empty() -> None:
    async with FakeWeCom(customers=5, members=50, popular=0) as fake, fake.client() as client:
        lonely = next(u for m, u in enumerate(fake.corp.userids) if not fake.corp.customers_of(m))
        assert await client.external_contact.list(lonely) == []
    assert [c.errcode for c in fake.calls_to("externalcontact/list")] == [84061]


def test_chunks_are_planned_evenly_across_the_lanes() -> None:
    members = [f"u{i}" for i in range(600)]
    plan = plan_chunks(members, 100, 4)
    assert [len(c) for c in plan] == [75] * 8
    assert [u for c in plan for u in c] == members
    assert [len(c) for c in plan_chunks(members[:250], 100, 4)] == [62, 63, 62, 63]
    assert [len(c) for c in plan_chunks(members[:3], 100, 4)] == [1, 1, 1]
    assert [len(c) for c in plan_chunks(members, 100, 3)] == [100] * 6


async def test_a_sync_makes_the_minimum_requests_for_its_chunks(tmp_path: Path) -> None:
    async with FakeWeCom(customers=20_000, seed=3) as fake, fake.client() as client:
        await sync_customers(client, tmp_path / "c.jsonl")
        pages = minimum_pages(fake.corp, 100, 4)
        assert len(fake.calls_to(BATCH)) == pages
        assert client.stats.requests == pages + 2  # and gettoken, get_follow_user_list
    check_exactly_once(fake.corp, read_lines(tmp_path / "c.jsonl"))


async def test_iter_customers_yields_each_merged_customer_once_and_resumes(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with FakeWeCom(customers=3000, members=60, seed=5) as fake, fake.client() as client:
        async with iter_customers(client, state=state) as stream:
            first = []
            async for c in stream:
                first.append(c)
                if len(first) == 100:
                    break
        assert stream.report is None  # stopped early: not finished, state kept
        assert state.exists()
        fetched = len(fake.calls_to(BATCH))
        stream = iter_customers(client, state=state)
        customers = [c async for c in stream]
        assert len(fake.calls_to(BATCH)) == fetched  # resumed: nothing fetched again
    assert all(isinstance(c, SyncedCustomer) for c in customers)
    assert [c.external_contact.external_userid for c in first] == [
        c.external_contact.external_userid for c in customers[:100]
    ]
    ids = [c.external_contact.external_userid for c in customers]
    assert len(ids) == len(set(ids)) == 3000
    corp = fake.corp
    for c in customers[::97]:
        i = corp.customer_index(c.external_contact.external_userid)
        assert i is not None
        assert [f.userid for f in c.follow_info] == sorted(
            corp.userids[m] for m in corp.followers(i)
        )
    assert stream.report is not None and stream.report.customers == 3000
    assert not state.exists()


async def test_the_readme_sqlite_upsert_fills_a_table(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "crm.db")
    db.execute("CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, followers TEXT)")
    async with FakeWeCom(customers=500, members=20) as fake, fake.client() as client:
        for _ in range(2):  # a second night upserts the same rows
            async with iter_customers(client, state=tmp_path / "sync.state") as customers:
                async for c in customers:
                    db.execute(
                        "INSERT INTO customers VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
                        "SET name = excluded.name, followers = excluded.followers",
                        (
                            c.external_contact.external_userid,
                            c.external_contact.name,
                            ",".join(f.userid for f in c.follow_info),
                        ),
                    )
            db.commit()
    assert db.execute("SELECT count(*) FROM customers").fetchone() == (500,)
    db.close()


async def test_iter_customers_needs_a_state_path() -> None:
    async with FakeWeCom(customers=1) as fake, fake.client() as client:
        with pytest.raises(WeComInputError):
            iter_customers(client, state="")


def set_started_at(state: Path, hours_ago: float) -> None:
    db = sqlite3.connect(state)
    with db:
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'started_at'",
            (repr(time.time() - hours_ago * 3600),),
        )
    db.close()


async def interrupted_run(client: WeComClient, out: Path, members: int) -> None:
    """A sync cancelled once ``members`` members are done, as Ctrl-C would."""
    enough = asyncio.Event()

    def watch(p: SyncProgress) -> None:
        if p.members_done >= members:
            enough.set()

    run = asyncio.create_task(
        sync_customers(client, out, members_per_call=10, concurrency=2, progress=watch)
    )
    await asyncio.wait_for(enough.wait(), 30)
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run


async def test_a_state_older_than_the_limit_starts_over_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "c.jsonl"
    state = tmp_path / "c.jsonl.sync-state"
    async with FakeWeCom(customers=2000, members=60, latency=0.002) as fake:
        async with fake.client() as client:
            await interrupted_run(client, out, 20)
            set_started_at(state, 2)  # younger than the limit: resumed
            report = await sync_customers(client, out, keep_state=True, max_state_age=3 * 3600)
            assert report.resumed_members >= 20
            await interrupted_run(client, out, 20)  # the kept, finished state started afresh
            set_started_at(state, 25)
            with caplog.at_level(logging.WARNING, logger="wecom_async.sync"):
                report = await sync_customers(client, out)
    assert report.resumed_members == 0
    assert any(
        "25.0 h ago" in r.getMessage() and "starting over" in r.getMessage() for r in caplog.records
    )
    check_exactly_once(fake.corp, read_lines(out))


async def test_a_foreign_sqlite_file_as_state_is_refused_and_left_untouched(tmp_path: Path) -> None:
    state = tmp_path / "app.db"
    db = sqlite3.connect(state)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users VALUES (1, 'ada')")
    db.commit()
    db.close()
    before = state.read_bytes()
    async with FakeWeCom(customers=50, members=10) as fake, fake.client() as client:
        for restart in (False, True):
            with pytest.raises(WeComSyncError, match="not a wecom-async sync state"):
                await sync_customers(client, tmp_path / "c.jsonl", state=state, restart=restart)
    assert state.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
    assert fake.stats.calls == 0


async def test_a_state_path_that_is_the_output_or_its_temporary_is_refused(
    tmp_path: Path,
) -> None:
    out = tmp_path / "c.jsonl"
    out.write_text("the previous export\n")
    link = tmp_path / "link"
    link.symlink_to(out)
    async with FakeWeCom(customers=50, members=10) as fake, fake.client() as client:
        for state in (out, link, tmp_path / ".c.jsonl.123.0123abcd.partial"):
            with pytest.raises(WeComInputError, match="is the output or its temporary"):
                await sync_customers(client, out, state=state)
    assert out.read_text() == "the previous export\n"
    assert fake.stats.calls == 0


async def test_the_output_is_byte_identical_with_and_without_orjson(
    server: TinyServer, tmp_path: Path
) -> None:
    server.route = OddCorp().route  # half an emoji, a null customer, a refused member
    async with FakeWeCom(customers=2000, seed=7) as fake:
        for base_url in (fake.base_url, server.base_url):
            outputs = []
            async with WeComClient(fake.corp_id, fake.corp_secret, base_url=base_url) as client:
                for fast in (True, False):
                    with json_path(fast):
                        await sync_customers(client, tmp_path / f"{fast}.jsonl")
                    outputs.append((tmp_path / f"{fast}.jsonl").read_bytes())
            assert outputs[0] == outputs[1]
            if base_url == fake.base_url:
                check_exactly_once(fake.corp, read_lines(tmp_path / "True.jsonl"))
            else:
                assert b"Tom\\ud83d" in outputs[0]


def unbalanced_plan(members: list[str], per_call: int, lanes: int) -> list[list[str]]:
    """The plan before #11: chunks of ``per_call`` in order, whatever the lanes."""
    return [members[i : i + per_call] for i in range(0, len(members), per_call)]


async def test_balanced_chunks_keep_every_lane_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 members in 4 lanes: 6 chunks of 100 run in two waves, the second half idle.

    A chunk's pages follow one cursor, so the fetch takes as many page times as its
    busiest lane walks pages: 6 chunks of 11 pages take 22 (two waves), 8 chunks of
    8 take 16. At 0.15 s a page the sync's own CPU is a small part of a page time.
    """
    phases = {}
    for name, plan in (("unbalanced", unbalanced_plan), ("balanced", plan_chunks)):
        monkeypatch.setattr("wecom_async.sync.plan_chunks", plan)
        async with FakeWeCom(customers=3000, seed=3, latency=0.15) as fake:
            async with fake.client() as client:
                await sync_customers(client, tmp_path / f"{name}.jsonl")
            calls = fake.calls_to(BATCH)
            assert len(calls) == minimum_pages(fake.corp, 100, 4, plan)
            phases[name] = calls[-1].time - calls[0].time
    # 15 page times against 21 between the first and the last arrival: 0.71.
    assert phases["balanced"] < 0.85 * phases["unbalanced"], phases


def test_a_pair_stored_twice_is_read_back_once_as_stored_last(tmp_path: Path) -> None:
    """A page fetched again (after a crash, a refused cursor) appends its pairs again."""
    store = Store(tmp_path / "state")
    store.open("corp", False, 3600)
    try:
        ((chunk, _, _),) = store.add_chunks([["u1", "u2"]])
        store.add_page(chunk, [("wmA", '{"v":1}', "u2", '{"i":1}')], [], 0, "c1")
        store.add_page(chunk, [("wmA", '{"v":1}', "u1", '{"i":2}')], [], 0, "c2")
        store.add_page(chunk, [("wmB", '{"v":3}', "u1", '{"i":3}')], [], 0, "c3")
        # The first page again, changed since: its copies win.
        store.add_page(chunk, [("wmA", '{"v":4}', "u2", '{"i":4}')], [], 0, "")
        assert store.groups(10) == [
            ('{"v":4}', ['{"i":2}', '{"i":4}']),
            ('{"v":3}', ['{"i":3}']),
        ]
        assert store.groups(10) == []
    finally:
        store.close()
