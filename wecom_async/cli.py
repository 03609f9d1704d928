"""The ``wecom-async`` command.

Every failure a user can cause ends in one line on stderr and a non-zero exit
status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fake_server_args(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fake-server",
        help="run a fake WeCom server on loopback",
        description="Serve a seeded fake WeCom corp on 127.0.0.1 until interrupted.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks one)")
    p.add_argument("--customers", type=int, default=5000, help="customers (default 5000)")
    p.add_argument("--members", type=int, default=600, help="members (default 600)")
    p.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="latency per request (ms)")
    p.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        help="scale WeCom's per-API limits (10,000/min, 150,000/h) by this factor",
    )
    p.add_argument("--token-ttl", type=float, default=7200.0, help="token lifetime in seconds")
    p.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests given an injected fault"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wecom-async", description="Tools around the WeCom customer API."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _fake_server_args(sub)
    return parser


async def _serve_fake(args: argparse.Namespace) -> int:
    from .testing import FakeWeCom, Faults

    fake = FakeWeCom(
        customers=args.customers,
        members=args.members,
        seed=args.seed,
        latency=args.latency_ms / 1000,
        rate_scale=args.rate_scale,
        token_ttl=args.token_ttl,
        faults=Faults.mixed(args.fault_rate, delay=30.0) if args.fault_rate else None,
        host=args.host,
        port=args.port,
    )
    async with fake:
        print(f"base URL:    {fake.base_url}")
        print(f"corp id:     {fake.corp_id}")
        print(f"corp secret: {fake.corp_secret}")
        print(f"customers:   {args.customers} (seed {args.seed}), members: {args.members}")
        print("Press Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "fake-server":
            return asyncio.run(_serve_fake(args))
    except KeyboardInterrupt:
        print("wecom-async: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError) as exc:
        print(f"wecom-async {args.command}: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE
