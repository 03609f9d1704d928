"""A web worker for the Redis callback tests: a CallbackReceiver on aiohttp whose
handler announces each event on stdout and then hangs (until the process is killed).

Run as ``python -m tests.callback.callback_worker --redis URL --prefix P``; it prints
``port N`` once listening and ``handling <external_user_id> <attempt>`` per event.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import redis.asyncio as aioredis
from aiohttp import web

from tests.callback.conftest import make_crypto
from wecom_async.callback import (
    CallbackEvent,
    CallbackReceiver,
    ExternalContactEvent,
    RedisStreamQueue,
)


async def main(args: argparse.Namespace) -> None:
    r = aioredis.Redis.from_url(args.redis)

    async def handler(event: CallbackEvent) -> None:
        assert isinstance(event, ExternalContactEvent)
        print("handling", event.external_user_id, flush=True)
        await asyncio.Event().wait()  # never finishes: the test kills this process

    queue = RedisStreamQueue(r, prefix=args.prefix, consumer="doomed", claim_idle=args.claim_idle)
    receiver = CallbackReceiver(make_crypto(), handler, queue=queue, concurrency=2)
    app = web.Application()
    receiver.attach(app, "/cb")
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print("port", runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--claim-idle", type=float, default=1.0)
    asyncio.run(main(p.parse_args()))
    sys.exit(0)
