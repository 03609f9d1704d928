"""README: Bulk: every customer of a corp."""

from __future__ import annotations

from wecom_async import WeComClient


async def to_file(corp_id: str, secret: str) -> None:
    # README {
    from wecom_async.sync import sync_customers

    async with WeComClient(corp_id, secret) as client:
        report = await sync_customers(client, "customers.jsonl", progress=print)
    print(report.customers, "customers;", report.unlicensed_userids, "had no licence")
    # README }


async def to_sqlite(corp_id: str, secret: str) -> None:
    # README {
    import sqlite3
    from wecom_async.sync import iter_customers

    db = sqlite3.connect("crm.db")
    db.execute("CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, name TEXT, followers TEXT)")
    async with WeComClient(corp_id, secret) as client:
        async with iter_customers(client, state="customers.sync-state") as customers:
            async for c in customers:
                db.execute(
                    "INSERT INTO customers VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
                    "SET name = excluded.name, followers = excluded.followers",
                    (c.external_contact.external_userid, c.external_contact.name,
                     ",".join(f.userid for f in c.follow_info)),
                )
    db.commit()
    print(customers.report)
    # README }


async def building_blocks(client: WeComClient) -> None:
    # README {
    members = await client.external_contact.get_follow_user_list()
    ids = await client.external_contact.list(members[0])

    async with client.external_contact.batch_get_by_user(members) as pairs:   # chunks of 100, concurrent,
        async for pair in pairs:                                               # each to its last cursor
            print(pair.external_contact.name, pair.follow_info.userid)
    print(pairs.unlicensed_userid_list)

    async with client.external_contact.iter_details(ids, concurrency=16) as details:
        async for detail in details:             # completion order; each follows its own cursor
            ...
    print(details.failures)                      # {external_userid: error} for ids that failed alone
    # README }
