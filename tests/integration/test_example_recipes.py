"""The cookbook's examples, run against the fake on loopback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.servers import load_example
from wecom_async.testing import FakeWeCom


async def test_the_nightly_sync_fills_sqlite_and_drops_the_departed(tmp_path: Path) -> None:
    example = load_example("nightly_sqlite.py")
    db = sqlite3.connect(tmp_path / "crm.db")
    state = str(tmp_path / "crm.db.sync-state")
    async with FakeWeCom(customers=120, members=6) as fake, fake.client() as client:
        report = await example.sync_into(client, db, state)
        assert report.customers == 120
        db.execute(
            "INSERT INTO customers VALUES ('wmGONE', 'gone', 1, '', datetime('now', '-1 day'))"
        )
        db.commit()
        await example.sync_into(client, db, state)
    rows = dict(db.execute("SELECT external_userid, name FROM customers").fetchall())
    assert set(rows) == {fake.corp.customer_id(i) for i in range(120)}  # wmGONE dropped
    db.close()


@pytest.mark.wecom_fake(customers=50, seed=7)
async def test_the_testing_recipe_passes(wecom_fake: FakeWeCom) -> None:
    example = load_example("testing_recipe.py")
    await example.test_tag_names(wecom_fake)
