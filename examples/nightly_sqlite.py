"""A nightly job: every customer of a corp into a SQLite table, resumable.

Run it from cron with WECOM_CORP_ID and WECOM_CORP_SECRET set:
``python examples/nightly_sqlite.py crm.db``. Killed half way (a deploy, a reboot),
the next run resumes from its state file; a second copy started while one runs
fails at once instead of doubling the work.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

from wecom_async import WeComClient, WeComSyncError
from wecom_async.sync import SyncReport, iter_customers

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    external_userid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type INTEGER NOT NULL,
    followers TEXT NOT NULL,
    seen_at TEXT NOT NULL
)
"""


async def sync_into(client: WeComClient, db: sqlite3.Connection, state: str) -> SyncReport:
    """Upsert every customer; drop the ones not seen in this run. Returns the report."""
    db.execute(SCHEMA)
    run_started = db.execute("SELECT datetime('now')").fetchone()[0]
    async with iter_customers(client, state=state) as customers:
        async for c in customers:
            db.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?, datetime('now')) "
                "ON CONFLICT (external_userid) DO UPDATE SET name = excluded.name, "
                "type = excluded.type, followers = excluded.followers, seen_at = excluded.seen_at",
                (
                    c.external_contact.external_userid,
                    c.external_contact.name,
                    int(c.external_contact.type),  # ContactType, or a value newer than it
                    ",".join(f.userid for f in c.follow_info),
                ),
            )
    # Only a finished run may delete: a partial one has not seen everyone yet.
    db.execute("DELETE FROM customers WHERE seen_at < ?", (run_started,))
    db.commit()
    report = customers.report
    assert report is not None  # set once the stream ran to its end
    return report


async def main(path: str) -> int:
    """Run one sync into ``path``; the exit status for cron."""
    db = sqlite3.connect(path)
    try:
        async with WeComClient(os.environ["WECOM_CORP_ID"], os.environ["WECOM_CORP_SECRET"]) as c:
            report = await sync_into(c, db, state=path + ".sync-state")
    except WeComSyncError as exc:  # another copy is running, or the state is not ours
        print(f"not synced: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"{report.customers} customers; {len(report.failed_userids)} members refused")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "crm.db")))
