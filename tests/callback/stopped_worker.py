"""A worker for the stopped-worker tests: a CallbackReceiver on a RedisStreamQueue
(consumer ``first``) whose handler holds each event until told to finish.

Run as ``python -m tests.callback.stopped_worker --redis URL --prefix P
--claim-idle S``. It prints ``ready`` once reading; ``handling <external_user_id>``
when a handler starts; ``acked <id>`` or ``ack-failed <id> <error>`` once the
acknowledgement was applied or not. Standard input drives it: ``finish`` lets the
running handlers return; ``quit`` (or the end of input) stops the receiver, which
then prints ``stats handled=<n> failed=<n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import redis.asyncio as aioredis

from tests.callback.conftest import make_crypto
from wecom_async.callback import (
    CallbackEvent,
    CallbackReceiver,
    Delivery,
    ExternalContactEvent,
    RedisStreamQueue,
)


class ReportingQueue(RedisStreamQueue):
    """Says on stdout how each acknowledgement went."""

    async def ack(self, delivery: Delivery) -> None:
        try:
            await super().ack(delivery)
        except Exception as exc:
            print("ack-failed", delivery.id, type(exc).__name__, flush=True)
            raise
        print("acked", delivery.id, flush=True)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    finish = asyncio.Event()
    quit_ = asyncio.Event()

    def read_commands() -> None:  # in a thread: stdin is a pipe the test writes
        for line in sys.stdin:
            command = line.strip()
            if command == "finish":
                loop.call_soon_threadsafe(finish.set)
            elif command == "quit":
                break
        loop.call_soon_threadsafe(quit_.set)

    async def handler(event: CallbackEvent) -> None:
        assert isinstance(event, ExternalContactEvent)
        print("handling", event.external_user_id, flush=True)
        await finish.wait()

    r = aioredis.Redis.from_url(args.redis)
    queue = ReportingQueue(
        r, prefix=args.prefix, consumer="first", claim_idle=args.claim_idle, block=0.1
    )
    receiver = CallbackReceiver(make_crypto(), handler, queue=queue, concurrency=1)
    reader = loop.run_in_executor(None, read_commands)
    async with receiver:
        print("ready", flush=True)
        await quit_.wait()
    await reader
    print(f"stats handled={receiver.stats.handled} failed={receiver.stats.failed}", flush=True)
    await r.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--claim-idle", type=float, default=1.0)
    asyncio.run(main(p.parse_args()))
