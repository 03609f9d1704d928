"""A pump in a process of its own, for the SIGKILL test: it answers each message and
says so on stdout; told to, it stops dead at one message and waits to be killed.

    python -m tests.kf.pump_worker BASE CORP SECRET OPEN_KFID STORE_DIR TOKEN HOLD_AT WHERE
"""

from __future__ import annotations

import asyncio
import sys

from wecom_async import WeComClient
from wecom_async.cursors import FileCursorStore
from wecom_async.models.kf import KfMessage
from wecom_async.pump import KfPump, reply_msgid


async def main(argv: list[str]) -> None:
    base, corp, secret, kfid, store_dir, token, hold_at, where = argv
    hold = int(hold_at)

    async def handle(message: KfMessage) -> None:
        if not message.from_customer or message.text is None:
            return
        text = message.text.content
        if text == f"m{hold}" and where == "before_send":
            print("hold", flush=True)
            await asyncio.Event().wait()
        await client.kf.send_text(
            message.external_userid, kfid, f"echo {text}", msgid=reply_msgid(message)
        )
        print(f"sent {text}", flush=True)
        if text == f"m{hold}" and where == "after_send":
            print("hold", flush=True)
            await asyncio.Event().wait()

    async with WeComClient(corp, secret, base_url=base) as client:
        pump = KfPump(client, handle, store=FileCursorStore(store_dir))
        await pump.pump(kfid, token=token)
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
