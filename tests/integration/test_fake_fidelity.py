"""FakeWeCom answers like WeCom: field types, paging, errcodes, tokens, limits, faults."""

from __future__ import annotations

import asyncio
import json
import sys
import tracemalloc
from typing import Any

import aiohttp
import pytest

from tests.conftest import load
from wecom_async import RateLimit, RetryPolicy, WeComClient
from wecom_async.testing import FakeCorp, FakeWeCom, Faults

Shape = set[tuple[str, str]]


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def shape(value: Any, path: str = "") -> Shape:
    """Every (path, JSON type) pair in a document; array items share the path ``[]``."""
    out: Shape = {(path, json_type(value))}
    if isinstance(value, dict):
        for key, item in value.items():
            out |= shape(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            out |= shape(item, f"{path}[]")
    return out


def missing(seed: Shape, fake: Shape) -> list[tuple[str, str]]:
    """Seed (path, type) pairs the fake never showed, and fake types a seed path never has."""
    gaps = sorted(seed - fake)
    seed_paths = {path for path, _ in seed}
    strays = sorted((path, f"also {kind}") for path, kind in fake - seed if path in seed_paths)
    return gaps + strays


async def raw(fake: FakeWeCom, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One request that bypasses the client, to see exactly what the fake answers."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, fake.base_url + path, **kwargs) as resp:
            assert resp.status == 200
            return json.loads(await resp.read())  # type: ignore[no-any-return]


async def token_of(fake: FakeWeCom) -> str:
    answer = await raw(
        fake, "GET", "gettoken", params={"corpid": fake.corp_id, "corpsecret": fake.corp_secret}
    )
    return answer["access_token"]  # type: ignore[no-any-return]


async def test_customer_detail_has_every_seed_field_with_its_type() -> None:
    async with FakeWeCom(customers=300, members=40, page_size=20) as fake, fake.client() as client:
        seen: Shape = set()
        for i in range(300):
            answer = await client.request(
                "GET", "externalcontact/get", params={"external_userid": fake.corp.customer_id(i)}
            )
            seen |= shape(answer)
    assert missing(shape(load("seed_externalcontact_get.json")), seen) == []


async def test_school_detail_has_every_seed_field_with_its_type() -> None:
    async with FakeWeCom(customers=10, parents=60) as fake, fake.client() as client:
        seen: Shape = set()
        for j in range(60):
            seen |= shape(
                await client.request(
                    "GET", "externalcontact/get", params={"external_userid": fake.corp.parent_id(j)}
                )
            )
    assert missing(shape(load("seed_school_externalcontact_get.json")), seen) == []


async def test_kf_batch_has_every_seed_field_with_its_type() -> None:
    async with FakeWeCom(customers=400) as fake, fake.client() as client:
        ids = [fake.corp.customer_id(i) for i in range(400)] + ["zhangsan"]
        seen: Shape = set()
        for start in range(0, len(ids), 100):
            seen |= shape(
                await client.request(
                    "POST",
                    "kf/customer/batchget",
                    json={
                        "external_userid_list": ids[start : start + 100],
                        "need_enter_session_context": 1,
                    },
                )
            )
    assert missing(shape(load("seed_kf_customer_batchget.json")), seen) == []


async def test_batch_get_by_user_has_every_peer_fixture_field() -> None:
    async with FakeWeCom(customers=500, members=20) as fake, fake.client() as client:
        seen: Shape = set()
        cursor = ""
        while True:
            page = await client.request(
                "POST",
                "externalcontact/batch/get_by_user",
                json={"userid_list": fake.corp.userids, "cursor": cursor, "limit": 100},
            )
            seen |= shape(page)
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert missing(shape(load("skit_externalcontact_batch_get_by_user.json")), seen) == []


async def test_cursor_pages_add_up_to_exactly_the_followers() -> None:
    async with FakeWeCom(customers=50, members=45, popular=2, page_size=7) as fake:
        async with fake.client() as client:
            ext_id = fake.corp.customer_id(1)
            pages, cursor = [], None
            while True:
                params = {"external_userid": ext_id, **({"cursor": cursor} if cursor else {})}
                page = await client.request("GET", "externalcontact/get", params=params)
                pages.append([f["userid"] for f in page["follow_user"]])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            detail = await client.external_contact.get(ext_id)
    expected = [fake.corp.userids[m] for m in fake.corp.followers(1)]
    assert len(expected) == 45
    assert [len(p) for p in pages] == [7] * 6 + [3]
    assert [u for p in pages for u in p] == expected
    assert [f.userid for f in detail.follow_user] == expected


async def test_batch_pages_add_up_to_every_member_customer_pair() -> None:
    async with FakeWeCom(customers=700, members=30, popular=3) as fake, fake.client() as client:
        userids = fake.corp.userids[:12]
        pairs: list[tuple[str, str]] = []
        cursor = ""
        while True:
            page = await client.request(
                "POST",
                "externalcontact/batch/get_by_user",
                json={"userid_list": userids, "cursor": cursor, "limit": 37},
            )
            assert len(page["external_contact_list"]) <= 37
            pairs += [
                (item["follow_info"]["userid"], item["external_contact"]["external_userid"])
                for item in page["external_contact_list"]
            ]
            cursor = page["next_cursor"]
            if not cursor:
                break
        expected = [
            (u, fake.corp.customer_id(i))
            for u in userids
            for i in fake.corp.customers_of(fake.corp.member_index(u))  # type: ignore[arg-type]
        ]
        # The same pairs as the per-member list endpoint gives.
        for u in userids[:3]:
            listed = await client.external_contact.list(u)
            assert listed == [c for m, c in expected if m == u]
    assert pairs == expected
    assert len(set(pairs)) == len(pairs)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "errcode"),
    [
        ("GET", "externalcontact/get", {}, 41035),
        ("GET", "externalcontact/get", {"external_userid": "wmNOPE"}, 40096),
        ("GET", "externalcontact/list", {}, 41009),
        ("GET", "externalcontact/list", {"userid": "nobody"}, 40003),
        ("POST", "kf/customer/batchget", {"json": {"external_userid_list": []}}, 40058),
        ("POST", "kf/customer/batchget", {"json": {"external_userid_list": ["x"] * 101}}, 40058),
        ("POST", "kf/customer/batchget", {"data": b"{not json"}, 47001),
        ("POST", "externalcontact/batch/get_by_user", {"json": {"userid_list": []}}, 41009),
        (
            "POST",
            "externalcontact/batch/get_by_user",
            {"json": {"userid_list": ["x"], "limit": 500}},
            40058,
        ),
        ("GET", "kf/customer/batchget", {}, 43002),
    ],
)
async def test_bad_parameters_get_wecom_errcodes(
    method: str, path: str, kwargs: dict[str, Any], errcode: int
) -> None:
    async with FakeWeCom(customers=10) as fake:
        token = await token_of(fake)
        params = {"access_token": token}
        if method == "GET":
            params.update(kwargs)
            kwargs = {}
        answer = await raw(fake, method, path, params=params, **kwargs)
    assert answer["errcode"] == errcode
    assert isinstance(answer["errmsg"], str)


async def test_token_errcodes() -> None:
    async with FakeWeCom(customers=10) as fake:
        path, ok = "externalcontact/get_follow_user_list", {"corpid": fake.corp_id}
        assert (await raw(fake, "GET", path))["errcode"] == 41001
        assert (await raw(fake, "GET", path, params={"access_token": "forged"}))["errcode"] == 40014
        wrong = await raw(fake, "GET", "gettoken", params={**ok, "corpsecret": "wrong"})
        assert wrong["errcode"] == 40001
        other = await raw(fake, "GET", "gettoken", params={"corpid": "ww0", "corpsecret": "x"})
        assert other["errcode"] == 40013
        token = await token_of(fake)
        assert await token_of(fake) == token  # the same token within its lifetime
        fake.expire_token()
        assert (await raw(fake, "GET", path, params={"access_token": token}))["errcode"] == 42001
        fresh = await token_of(fake)
        assert fresh != token
        fake.revoke_token()
        assert (await raw(fake, "GET", path, params={"access_token": fresh}))["errcode"] == 40014
        assert fake.stats.tokens_issued == 2


async def test_same_seed_same_corp_other_seed_other_corp() -> None:
    async with FakeWeCom(seed=5) as a, FakeWeCom(seed=5) as b, FakeWeCom(seed=6) as c:
        answers = []
        for fake in (a, b, c):
            async with fake.client() as client:
                answers.append(
                    await client.request(
                        "GET",
                        "externalcontact/get",
                        params={"external_userid": fake.corp.customer_id(42)},
                    )
                )
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]
    assert (a.corp_id, a.corp_secret) == (b.corp_id, b.corp_secret) != (c.corp_id, c.corp_secret)


def test_a_million_customers_cost_no_memory_up_front() -> None:
    tracemalloc.start()
    try:
        corp = FakeCorp(customers=1_000_000, members=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert corp.customer_index(corp.customer_id(999_999)) == 999_999
    assert peak < 2 * 1024 * 1024  # an eager corp would need hundreds of MB


async def test_a_million_customers_are_served() -> None:
    async with FakeWeCom(customers=1_000_000, members=600) as fake, fake.client() as client:
        last = fake.corp.customer_id(999_999)
        detail = await client.external_contact.get(last)
        assert detail.external_contact.external_userid == last
        # Member lists are stepped out, not scanned: each holds about its share.
        ids = await client.external_contact.list(fake.corp.userids[599])
        assert 2_000 < len(ids) < 3_000


async def test_limits_are_enforced_as_sliding_windows_and_violations_recorded() -> None:
    async with FakeWeCom(customers=10, rate_limits=[RateLimit(5, 0.3)]) as fake:
        token = await token_of(fake)
        path = "externalcontact/get_follow_user_list"
        answers = [
            (await raw(fake, "GET", path, params={"access_token": token}))["errcode"]
            for _ in range(8)
        ]
        assert answers == [0] * 5 + [45009] * 3
        assert fake.stats.violations == 3
        assert fake.stats.max_in_window[(path, 0.3)] == 8  # what was sent, rejected included
        assert fake.max_calls_in_window(0.3, path) == 8
        await asyncio.sleep(0.35)  # the block after a violation lasts the window's period
        assert (await raw(fake, "GET", path, params={"access_token": token}))["errcode"] == 0


async def test_rate_scale_scales_wecom_limits() -> None:
    async with FakeWeCom(customers=10, rate_scale=0.001) as fake:
        assert fake.limits == (RateLimit(10, 60.0), RateLimit(150, 3600.0))


async def test_faults_are_reproducible_from_the_seed() -> None:
    async def run(seed: int) -> list[tuple[str | None, int | None]]:
        faults = Faults(busy=0.1, http_502=0.1, drop=0.05, timeout=0.05, delay=2.0)
        async with FakeWeCom(customers=50, seed=seed, faults=faults) as fake:
            policy = RetryPolicy(max_attempts=8, backoff_base=0.001, backoff_max=0.005)
            # The client's timeout is far from both a normal answer and a held one,
            # so only the injected faults decide what is retried.
            async with fake.client(retry=policy, timeout=0.3) as client:
                for i in range(40):  # one at a time, so the order is fixed
                    await client.external_contact.get(fake.corp.customer_id(i))
            return [(c.fault, c.errcode) for c in fake.calls]

    first, again, other = await run(3), await run(3), await run(4)
    assert first == again
    assert first != other
    assert {f for f, _ in first} == {None, "busy", "http_502", "drop", "timeout"}


async def test_the_pytest_fixture_gives_a_started_fake(wecom_fake: FakeWeCom) -> None:
    assert wecom_fake.base_url.startswith("http://127.0.0.1:")
    assert wecom_fake.base_url.endswith("/cgi-bin/")
    async with WeComClient(
        wecom_fake.corp_id, wecom_fake.corp_secret, base_url=wecom_fake.base_url
    ) as client:
        assert len(await client.external_contact.get_follow_user_list()) == 600


@pytest.mark.wecom_fake(customers=25, members=7, seed=3)
async def test_the_fixture_takes_options_from_a_marker(wecom_fake: FakeWeCom) -> None:
    assert (wecom_fake.corp.customers, wecom_fake.corp.members) == (25, 7)
    assert wecom_fake.corp_id == FakeCorp(seed=3).corp_id


async def test_answers_can_come_as_text_plain() -> None:
    async with FakeWeCom(customers=5, content_type="text/plain") as fake:
        async with aiohttp.ClientSession() as session:
            url = fake.base_url + "gettoken"
            params = {"corpid": fake.corp_id, "corpsecret": fake.corp_secret}
            async with session.get(url, params=params) as resp:
                assert resp.content_type == "text/plain"
        async with fake.client() as client:
            assert len(await client.external_contact.get_follow_user_list()) == 600


async def test_the_fake_server_command_prints_url_and_credentials() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wecom_async", "fake-server", "--port", "0", "--customers", "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines = {}
        while len(lines) < 3:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
            assert line, "the command ended before printing its credentials"
            key, _, value = line.partition(":")
            if key in ("base URL", "corp id", "corp secret"):
                lines[key] = value.strip()
        async with WeComClient(
            lines["corp id"], lines["corp secret"], base_url=lines["base URL"]
        ) as client:
            assert (
                len(
                    await client.external_contact.list(
                        (await client.external_contact.get_follow_user_list())[0]
                    )
                )
                > 0
            )
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0


async def test_a_slow_member_list_does_not_stall_the_shared_loop() -> None:
    # 300,000 customers over 3 members: each member's list is long work. While it is
    # built, the loop (which the client under test shares) keeps ticking.
    async with FakeWeCom(customers=300_000, members=3, popular=0) as fake:
        async with fake.client() as client:
            ticks = 0
            listing = asyncio.ensure_future(client.external_contact.list(fake.corp.userids[1]))
            while not listing.done():
                await asyncio.sleep(0.001)
                ticks += 1
            ids = await listing
    assert len(ids) > 100_000
    assert ticks > 10  # the loop ran while the list was being built
