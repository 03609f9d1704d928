"""The ``wecom-async`` command (also ``python -m wecom_async``).

Commands: ``sync``, ``customer get``, ``kf customers``, ``fake-server`` and ``demo``.
Credentials come from ``WECOM_CORP_ID`` and ``WECOM_CORP_SECRET``. Every failure a
user can cause ends in one line on stderr and a non-zero exit status, never a
traceback: 1 for a failure, 2 for bad usage, 130 for Ctrl-C, 143 for SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from . import __version__
from ._wire import to_dict
from .client import DEFAULT_BASE_URL, ClientStats, WeComClient
from .errors import WeComError, WeComInputError, WeComPermissionError
from .sync import (
    DEFAULT_MAX_STATE_AGE,
    IN_REPORT_KEY,
    SyncProgress,
    SyncReport,
    sync_customers,
)

__all__ = ["main"]

T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
#: The state of ``sync --out -`` when --state is not given: in the current directory.
STDOUT_STATE = "wecom-async-stdout.sync-state"


class UsageError(Exception):
    """Bad command-line input, reported as one line with exit status 2."""


# -- argument parsing -------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wecom-async",
        description="Sync and query WeCom customers. Credentials come from the "
        "WECOM_CORP_ID and WECOM_CORP_SECRET environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"wecom-async {__version__}")
    _verbose_arg(parser, default=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # The options several commands share, defined once and inherited (parents=).
    verbose = _Parser(add_help=False)
    _verbose_arg(verbose)
    timeout = _Parser(add_help=False)
    _timeout_arg(timeout)
    wecom = _Parser(add_help=False, parents=[timeout, verbose])
    wecom.add_argument(
        "--base-url",
        default=os.environ.get("WECOM_BASE_URL", DEFAULT_BASE_URL),
        help="WeCom API root (default: the real WeCom, or $WECOM_BASE_URL)",
    )

    p = sub.add_parser("sync", parents=[wecom], help="export every customer to JSON Lines")
    p.set_defaults(run=_sync)
    p.add_argument(
        "--out", required=True, type=_path, help="the JSON Lines file to write, or - for stdout"
    )
    p.add_argument(
        "--state",
        type=_path,
        help=f"checkpoint file (default: OUT.sync-state; {STDOUT_STATE} for --out -)",
    )
    p.add_argument("--restart", action="store_true", help="ignore an earlier checkpoint")
    p.add_argument(
        "--max-state-age",
        type=_float_in(0.001, 1e6),
        default=DEFAULT_MAX_STATE_AGE / 3600,
        metavar="HOURS",
        help="start over instead of resuming a checkpoint begun longer ago (24)",
    )
    p.add_argument(
        "--concurrency", type=_int_in(1, 1000), default=4, help="member chunks at once (4)"
    )
    p.add_argument(
        "--members-per-call",
        type=_int_in(1, 100),
        default=100,
        help="members per batch call, 1 to 100 (100); fewer make finer checkpoints",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    customer = sub.add_parser("customer", help="customer contact")
    customer_sub = customer.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = customer_sub.add_parser("get", parents=[wecom], help="a customer's detail as JSON")
    p.set_defaults(run=_customer_get)
    p.add_argument("external_userid")

    kf = sub.add_parser("kf", help="WeChat customer service")
    kf_sub = kf.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = kf_sub.add_parser("customers", parents=[wecom], help="kf customers' basic info as JSON")
    p.set_defaults(run=_kf_customers)
    p.add_argument("external_userid", nargs="+")
    p.add_argument("--context", action="store_true", help="include enter_session_context")

    p = sub.add_parser(
        "fake-server",
        parents=[verbose],
        help="run a fake WeCom server on loopback",
        description="Serve a seeded fake WeCom corp on 127.0.0.1 until interrupted.",
    )
    p.set_defaults(run=_serve_fake)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_int_in(0, 65535), default=8080, help="port (default 8080; 0 picks one)"
    )
    _fake_data_args(p, customers=5000)
    p.add_argument(
        "--latency-ms", type=_float_in(0, 600_000), default=0.0, help="latency per request (ms)"
    )
    p.add_argument(
        "--rate-scale",
        type=_float_in(1e-9, 1e9),
        default=1.0,
        help="scale WeCom's per-API limits (10,000/min, 150,000/h) by this factor",
    )
    p.add_argument(
        "--token-ttl", type=_float_in(1, 1e9), default=7200.0, help="token lifetime in seconds"
    )
    p.add_argument(
        "--fault-rate",
        type=_float_in(0, 1),
        default=0.0,
        help="share of requests given an injected fault",
    )

    p = sub.add_parser(
        "demo",
        parents=[timeout, verbose],
        help="sync a fake corp end to end and show the figures",
        description="Start an embedded fake WeCom with realistic latency and scaled-down "
        "limits, sync it with a progress bar, and print a summary.",
    )
    _fake_data_args(p, customers=5000)
    p.add_argument(
        "--latency-ms", type=_float_in(0, 60_000), default=40.0, help="mean latency (40 ms)"
    )
    p.add_argument(
        "--limit-per-second",
        type=_int_in(1, 1_000_000),
        default=20,
        help="the per-API limit, scaled down from 10,000/min so that it binds (20/s)",
    )
    p.set_defaults(run=_demo)
    p.add_argument(
        "--out", type=_path, help="where to write the JSON Lines (default: a temporary file)"
    )
    return parser


def _path(text: str) -> str:
    """An argparse type: a file path, or a usage error for an empty one."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file")
    return text


def _verbose_arg(p: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    # Accepted before and after the command; a subcommand's SUPPRESS default keeps
    # the count given before it.
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="log more on stderr: -v retries, pauses and refreshes; -vv every request",
    )


def _timeout_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        type=_float_in(0.001, 3600),
        default=10.0,
        help="seconds one HTTP attempt may take, connecting included (10)",
    )


def _configure_logging(verbosity: int) -> None:
    """The package's log lines on stderr: warnings, then INFO with -v, DEBUG with -vv."""
    level = (logging.WARNING, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package_logger = logging.getLogger("wecom_async")
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False


def _number_in(kind: Callable[[str], T], low: T, high: T) -> Callable[[str], T]:
    """An argparse type: a number of ``kind`` from ``low`` to ``high``, else a usage error."""

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _int_in(low: int, high: int) -> Callable[[str], int]:
    return _number_in(int, low, high)


def _float_in(low: float, high: float) -> Callable[[str], float]:
    return _number_in(float, low, high)


def _fake_data_args(p: argparse.ArgumentParser, *, customers: int) -> None:
    p.add_argument(
        "--customers",
        type=_int_in(0, 999_999_999),
        default=customers,
        help=f"customers ({customers})",
    )
    p.add_argument("--members", type=_int_in(1, 1_000_000), default=600, help="members (600)")
    p.add_argument("--seed", type=int, default=1, help="data seed (1)")


# -- shared plumbing --------------------------------------------------------


def _credentials() -> tuple[str, str]:
    corp_id = os.environ.get("WECOM_CORP_ID", "").strip()
    secret = os.environ.get("WECOM_CORP_SECRET", "").strip()
    missing = [n for n, v in (("WECOM_CORP_ID", corp_id), ("WECOM_CORP_SECRET", secret)) if not v]
    if missing:
        raise UsageError(f"set {' and '.join(missing)} in the environment")
    return corp_id, secret


def _client(args: argparse.Namespace) -> WeComClient:
    corp_id, secret = _credentials()
    return WeComClient(corp_id, secret, base_url=args.base_url, timeout=args.timeout)


def _say(*lines: str) -> None:
    """Write to stderr; a broken stderr (piped into ``head -1``) must not stop the work."""
    try:
        for line in lines:
            print(line, file=sys.stderr)
    except OSError:
        _silence_stderr()


def _silence_stderr() -> None:
    # Point fd 2 at /dev/null: what is still buffered would fail again at exit,
    # and Python would then exit with status 120 instead of the command's own.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())
        os.close(devnull)


class _StderrHandler(logging.Handler):
    """The library's warnings (a state started over, members refused) as lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        _say(f"warning: {record.getMessage()}")


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


class _Progress:
    """Sync progress on stderr: a rich bar on a terminal, otherwise one line per phase.

    Without a terminal (a log file, a CI job) each phase gets one line, printed when
    it ends with its figures: nothing is printed before anything happened.
    """

    def __init__(self, *, quiet: bool = False, force_bar: bool = False) -> None:
        self._quiet = quiet
        self._bar: Any = None
        self._task: Any = None
        self._last: SyncProgress | None = None
        if quiet or not (force_bar or sys.stderr.isatty()):
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:  # rich is the optional [cli] extra
            return
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            transient=False,
            console=Console(stderr=True),
        )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("members", total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._last is not None and self._last.phase != "done":
            self._line(self._last, None)  # interrupted or failed: where it stopped

    @staticmethod
    def _line(p: SyncProgress, following: SyncProgress | None) -> None:
        if p.phase == "members":  # its count is known when the next phase starts
            text = "not finished" if following is None else f"{following.members_total}"
            text += " members to fetch"
        elif p.phase == "fetch":
            text = f"{p.members_done}/{p.members_total} members, {p.pairs} pairs"
        else:
            text = f"{p.customers_written} customers written"
        print(f"{p.phase}: {text}", file=sys.stderr, flush=True)

    def __call__(self, p: SyncProgress) -> None:
        if self._quiet:
            return
        try:
            self._show(p)
        except OSError:  # stderr is gone: the sync goes on without progress
            self._quiet = True
            _silence_stderr()

    def _show(self, p: SyncProgress) -> None:
        if self._bar is not None:
            if p.phase == "export":
                detail = f"{p.customers_written} customers written"
            else:
                detail = f"{p.pairs} pairs"
            self._bar.update(
                self._task,
                description=p.phase,
                total=p.members_total or None,
                completed=p.members_done,
                detail=detail,
            )
            return
        last, self._last = self._last, p
        if last is not None and last.phase != p.phase:
            self._line(last, p)


# -- commands ---------------------------------------------------------------


async def _sync(args: argparse.Namespace) -> int:
    out: Any = args.out
    state = args.state
    if out == "-":
        out = sys.stdout.buffer
        state = STDOUT_STATE if state is None else state
    client = _client(args)
    handler = _StderrHandler(logging.WARNING)
    if not args.verbose:
        # The summary names the refused members and counts the skipped pairs once.
        handler.addFilter(lambda record: not hasattr(record, IN_REPORT_KEY))
    sync_logger = logging.getLogger("wecom_async.sync")
    sync_logger.addHandler(handler)
    # Printed by this handler alone: the package's handler would print each again.
    sync_logger.propagate = False
    try:
        async with client:
            with _Progress(quiet=args.quiet) as progress:
                report = await sync_customers(
                    client,
                    out,
                    state=state,
                    restart=args.restart,
                    concurrency=args.concurrency,
                    members_per_call=args.members_per_call,
                    max_state_age=args.max_state_age * 3600,
                    progress=progress,
                )
    finally:
        sync_logger.removeHandler(handler)
        sync_logger.propagate = True
    _print_report(report, client.stats)
    return 0


def _print_report(report: SyncReport, stats: ClientStats) -> None:
    where = report.out if report.out is not None else "stdout"
    lines = [
        f"wrote {report.customers} customers from {report.members} members to {where} "
        f"in {report.elapsed:.1f}s"
        + (f" (resumed after {report.resumed_members} members)" if report.resumed_members else "")
        + f": {stats.requests} requests, {stats.retries} retries, {stats.rate_limited} 45009s"
    ]
    if report.unlicensed_userids:
        lines.append(
            f"warning: {len(report.unlicensed_userids)} members have no interop licence; "
            f"their customers are missing: {', '.join(report.unlicensed_userids[:10])}"
        )
    if report.failed_userids:
        lines.append(
            f"warning: WeCom refused {len(report.failed_userids)} members; their customers "
            f"are missing: {', '.join(report.failed_userids[:10])}"
        )
    if report.skipped_pairs:
        lines.append(
            f"warning: {report.skipped_pairs} pairs were skipped: no customer in them, "
            "or no member to file them under"
        )
    _say(*lines)


async def _customer_get(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        detail = await client.external_contact.get(args.external_userid)
    _print_json(to_dict(detail))
    return 0


async def _kf_customers(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        batch = await client.kf.batchget_customers(
            args.external_userid, need_enter_session_context=args.context
        )
    _print_json(to_dict(batch))
    return 0


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


async def _demo(args: argparse.Namespace) -> int:
    from ._ratelimit import RateLimit
    from .testing import FakeWeCom

    rate = args.limit_per_second
    if rate < 1:
        raise UsageError("--limit-per-second must be at least 1")
    mean = args.latency_ms / 1000
    fake = FakeWeCom(
        customers=args.customers,
        members=args.members,
        seed=args.seed,
        latency=(mean * 0.5, mean * 1.5),
        rate_limits=[RateLimit(rate, 1.0)],
    )
    with contextlib.ExitStack() as stack:
        out = args.out
        if out is None:
            out = os.path.join(
                stack.enter_context(tempfile.TemporaryDirectory()), "customers.jsonl"
            )
        async with (
            fake,
            fake.client(rate_limit=RateLimit(rate, 1.0), timeout=args.timeout) as client,
        ):
            print(
                f"fake WeCom at {fake.base_url}: {args.customers} customers, {args.members} "
                f"members, {args.latency_ms:.0f} ms latency, {rate} calls/s per API",
                file=sys.stderr,
            )
            with _Progress(force_bar=True) as progress:
                report = await sync_customers(client, out, progress=progress)
        batch_calls = len(fake.calls_to("externalcontact/batch/get_by_user"))
        _print_report(report, client.stats)
        rows = [
            ("customers", f"{report.customers:,}"),
            ("requests", f"{client.stats.requests:,}"),
            ("retries", f"{client.stats.retries:,}"),
            ("token refreshes", f"{client.stats.token_fetches:,}"),
            ("45009 answers", f"{fake.stats.violations:,}"),
            ("wall time", f"{report.elapsed:.2f} s"),
            ("customers/s", f"{report.customers / report.elapsed:,.0f}"),
            (
                "batch calls/s vs limit",
                f"{batch_calls / report.elapsed:.1f} / {rate} = "
                f"{batch_calls / report.elapsed / rate:.2f}",
            ),
        ]
        _print_table("demo summary", rows)
    return 0


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"  {key:<{width}}  {value}")
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def _explain(exc: BaseException) -> str:
    if isinstance(exc, WeComPermissionError) and exc.errcode in (40001, 40013):
        return f"WeCom refused the corp id or secret (errcode {exc.errcode}): check the credentials"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose)
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.run
    name = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    hint = "; run the same command again to resume" if args.command == "sync" else ""
    terminated = False

    async def run() -> int:
        # SIGTERM (docker stop, systemd, a cron timeout) ends the run as Ctrl-C does:
        # the task is cancelled, so every finally runs and the state is kept.
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
        return await command(args)

    try:
        return asyncio.run(run())
    except asyncio.CancelledError:
        if not terminated:
            raise
        _say(f"wecom-async {name}: terminated{hint}")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        _say(f"wecom-async {name}: interrupted{hint}")
        return EXIT_INTERRUPTED
    except (UsageError, WeComInputError) as exc:
        _say(f"wecom-async {name}: {exc}")
        return EXIT_USAGE
    except (WeComError, OSError) as exc:
        _say(f"wecom-async {name}: {_explain(exc)}")
        return EXIT_FAILURE
    except sqlite3.Error as exc:
        _say(f"wecom-async {name}: the sync state cannot be used: {exc}")
        return EXIT_FAILURE
    except Exception as exc:  # the last line of defence: one line, never a traceback
        _say(f"wecom-async {name}: unexpected {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
