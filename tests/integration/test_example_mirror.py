"""End to end: examples/mirror.py keeps its SQLite mirror current as FakeWeCom's corp
changes, through real callbacks (encrypted, signed, POSTed with WeCom's retries)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.servers import load_example
from wecom_async.callback import CallbackCrypto
from wecom_async.testing import FakeCallbacks, FakeWeCom

TOKEN = "mirror-token"
KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    example = load_example("mirror.py")
    async with FakeWeCom(customers=40, members=4, popular=1) as fake, fake.client() as client:
        crypto = CallbackCrypto(TOKEN, KEY, fake.corp_id)
        app, mirror, receiver = example.build_app(client, crypto, tmp_path / "mirror.db")
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/wecom/callback"
        fake.callbacks = FakeCallbacks(url=url, token=TOKEN, aes_key=KEY)

        async def settled() -> None:
            await fake.callbacks_idle()
            await receiver.queue.join()

        try:
            yield {"fake": fake, "mirror": mirror, "receiver": receiver, "settled": settled}
        finally:
            await runner.cleanup()


async def test_the_mirror_follows_the_fake(world: dict[str, Any]) -> None:
    fake: FakeWeCom = world["fake"]
    mirror = world["mirror"]
    settled = world["settled"]
    corp = fake.corp

    # A customer added: one add event per member who follows it; the mirror fetches it.
    new = fake.add_customer()
    i = corp.customer_index(new)
    assert i is not None
    await settled()
    assert mirror.customers() == {new: corp.contact(i)["name"]}
    followers = [corp.userids[m] for m in corp.followers(i)]
    assert sorted(mirror.follows(new)) == sorted(followers)

    # A remark edited: the mirror re-fetches and sees the fake's new state.
    fake.edit_remark(new, followers[0], "VIP 客户")
    await settled()
    assert mirror.follows(new)[followers[0]] == "VIP 客户"

    # The popular customer (every member follows it) enters the mirror on an edit.
    popular = corp.customer_id(0)
    fake.edit_remark(popular, corp.userids[1], "老朋友")
    await settled()
    assert (
        len(mirror.follows(popular)) == 4 and mirror.follows(popular)[corp.userids[1]] == "老朋友"
    )

    # A follower removed: that pair goes; the customer stays with its other followers.
    fake.remove_follower(popular, corp.userids[2])
    await settled()
    assert corp.userids[2] not in mirror.follows(popular) and popular in mirror.customers()

    # A customer deleted: every member's del_external_contact; the row goes.
    fake.delete_customer(popular)
    await settled()
    assert popular not in mirror.customers() and mirror.follows(popular) == {}
    assert new in mirror.customers()

    # Every callback was answered 200 at the first try, each handled exactly once.
    assert fake.pusher is not None
    assert [a.status for a in fake.pusher.attempts] == [200] * len(fake.pusher.attempts)
    expected = len(followers) + 1 + 1 + 1 + 3  # adds, two edits, a removal, 3 left deleting
    assert len(fake.pusher.attempts) == expected
    receiver = world["receiver"]
    assert receiver.stats.handled == expected and receiver.stats.failed == 0


async def test_the_fake_endpoints_reflect_its_changes() -> None:
    async with FakeWeCom(customers=20, members=3, popular=1) as fake, fake.client() as client:
        corp = fake.corp
        c = corp.customer_id(5)
        m = corp.followers(5)[0]
        fake.edit_remark(c, corp.userids[m], "edited")
        detail = await client.external_contact.get(c)
        assert {f.userid: f.remark for f in detail.follow_user}[corp.userids[m]] == "edited"
        assert c in await client.external_contact.list(corp.userids[m])
        for follower in corp.followers(5):
            fake.remove_follower(c, corp.userids[follower])
        assert c not in await client.external_contact.list(corp.userids[m])
        from wecom_async import WeComNotFoundError

        with pytest.raises(WeComNotFoundError) as info:
            await client.external_contact.get(c)
        assert info.value.errcode == 84061  # no relationship left
        fake.delete_customer(corp.customer_id(6))
        with pytest.raises(WeComNotFoundError):
            await client.external_contact.get(corp.customer_id(6))
        added = fake.add_customer()
        assert (await client.external_contact.get(added)).external_contact.external_userid == added
        assert fake.pusher is None  # no callbacks configured: nothing was pushed
