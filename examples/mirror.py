"""Keep a SQLite mirror of a corp's customers current from WeCom's callbacks.

An aiohttp app: WeCom POSTs ``change_external_contact`` events to ``/wecom/callback``;
on an add or an edit the mirror fetches the customer (``externalcontact/get``) and
stores it with its followers; when a member and a customer part
(``del_external_contact``, ``del_follow_user``) it deletes that relationship, and
the customer with its last one.

    python examples/mirror.py     # a demo against FakeWeCom, on loopback only

Needs ``pip install 'wecom-async[callback]'``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from aiohttp import web

from wecom_async import WeComClient, WeComNotFoundError
from wecom_async.callback import (
    CallbackCrypto,
    CallbackEvent,
    CallbackQueue,
    CallbackReceiver,
    ExternalContactEvent,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    external_userid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type INTEGER NOT NULL,
    corp_name TEXT
);
CREATE TABLE IF NOT EXISTS follows (
    external_userid TEXT NOT NULL,
    userid TEXT NOT NULL,
    remark TEXT NOT NULL,
    PRIMARY KEY (external_userid, userid)
);
"""

FETCH = {"add_external_contact", "add_half_external_contact", "edit_external_contact"}
PART = {"del_external_contact", "del_follow_user"}


class Mirror:
    """The customers table and the handler that keeps it current.

    SQLite calls are a few milliseconds on a local file, so they run on the loop;
    a busier mirror would move them to a thread.
    """

    def __init__(self, client: WeComClient, db_path: str | Path) -> None:
        self.client = client
        self.db = sqlite3.connect(db_path)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    async def handle(self, event: CallbackEvent) -> None:
        """The receiver's handler: one event, applied to the mirror."""
        if not isinstance(event, ExternalContactEvent) or not event.external_user_id:
            return
        if event.change_type in FETCH:
            await self.refresh(event.external_user_id)
        elif event.change_type in PART:
            self.part(event.external_user_id, event.user_id)

    async def refresh(self, external_userid: str) -> None:
        """Store what WeCom says now; events may arrive late or out of order."""
        try:
            detail = await self.client.external_contact.get(external_userid)
        except WeComNotFoundError:  # gone again before we asked
            self.forget(external_userid)
            return
        contact = detail.external_contact
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO customers VALUES (?, ?, ?, ?)",
                (external_userid, contact.name, contact.type, contact.corp_name),
            )
            self.db.execute("DELETE FROM follows WHERE external_userid = ?", (external_userid,))
            self.db.executemany(
                "INSERT INTO follows VALUES (?, ?, ?)",
                [(external_userid, f.userid, f.remark or "") for f in detail.follow_user],
            )

    def part(self, external_userid: str, userid: str) -> None:
        """A member and a customer parted: drop that pair, and a customer left alone."""
        with self.db:
            self.db.execute(
                "DELETE FROM follows WHERE external_userid = ? AND userid = ?",
                (external_userid, userid),
            )
            self.db.execute(
                "DELETE FROM customers WHERE external_userid = ? AND NOT EXISTS "
                "(SELECT 1 FROM follows WHERE external_userid = ?)",
                (external_userid, external_userid),
            )

    def forget(self, external_userid: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM follows WHERE external_userid = ?", (external_userid,))
            self.db.execute("DELETE FROM customers WHERE external_userid = ?", (external_userid,))

    def customers(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT external_userid, name FROM customers"))

    def follows(self, external_userid: str) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT userid, remark FROM follows WHERE external_userid = ?", (external_userid,)
        )
        return dict(rows)


def build_app(
    client: WeComClient,
    crypto: CallbackCrypto,
    db_path: str | Path,
    *,
    queue: CallbackQueue | None = None,
) -> tuple[web.Application, Mirror, CallbackReceiver]:
    """The app, its mirror and its receiver (on ``/wecom/callback``)."""
    mirror = Mirror(client, db_path)
    receiver = CallbackReceiver(crypto, mirror.handle, queue=queue)
    app = web.Application()
    receiver.attach(app, "/wecom/callback")

    async def close(_: web.Application) -> None:
        mirror.close()

    app.on_cleanup.append(close)  # after the receiver's own cleanup: handlers are done
    return app, mirror, receiver


async def demo() -> None:
    """Watch the mirror follow a FakeWeCom as its corp changes."""
    import tempfile

    from wecom_async.testing import FakeCallbacks, FakeWeCom

    token, key = "demo-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    async with FakeWeCom(customers=50, members=5) as fake, fake.client() as client:
        crypto = CallbackCrypto(token, key, fake.corp_id)
        with tempfile.TemporaryDirectory() as tmp:
            app, mirror, receiver = build_app(client, crypto, Path(tmp) / "mirror.db")
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/wecom/callback"
            fake.callbacks = FakeCallbacks(url=url, token=token, aes_key=key)

            async def settled(what: str) -> None:
                await fake.callbacks_idle()
                await receiver.queue.join()
                print(f"{what}: {len(mirror.customers())} customers", mirror.customers())

            new = fake.add_customer()
            await settled("a customer added")
            userid = next(iter(mirror.follows(new)))
            fake.edit_remark(new, userid, "VIP")
            await settled("a remark edited")
            print("  follows:", mirror.follows(new))
            fake.remove_follower(new, userid)
            await settled("a follower removed")
            fake.delete_customer(new)
            await settled("a customer deleted")
            assert fake.pusher is not None
            print("pushes:", [(a.attempt, a.status) for a in fake.pusher.attempts])
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(demo())
