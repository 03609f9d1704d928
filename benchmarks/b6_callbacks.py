"""B6: the callback receiver, against floors measured in the same run.

- HTTP: POSTs/s of real signed callbacks into ``CallbackReceiver`` (memory queue,
  then a Redis stream) against a bare aiohttp handler that reads the body and
  answers 200. Each server runs in a fresh process of its own; the load comes from
  ``wrk`` (or, without it, from a small asyncio generator in another process),
  64 keep-alive connections. The variants alternate; each ratio is taken within
  its round. Beside it: how many POSTs were fresh or duplicates (the receiver's
  stats), and whether the workers kept up (handled / accepted 2 s after the load).
- CPU: one event's verify + decrypt + typed parse, in-process, against the floor
  (SHA-1 + compare_digest, base64, AES-CBC with ``cryptography``, unpadding: no
  XML at all) and against wechatpy, when installed.

Only the public API of ``wecom_async.callback`` is used (plus ``event_xml`` to
write plaintexts), so that the figures can be taken again after the receiver
changes. The child processes are this module: ``serve``, ``load`` and ``cpu``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wecom_async.callback import (
    CallbackCrypto,
    CallbackReceiver,
    MemoryQueue,
    RedisStreamQueue,
    parse_event,
)
from wecom_async.testing._callbacks import event_xml

from ._common import median

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "b6-bench-callback-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "ww0b6bench0corp0id"
AGENT_ID = "1000002"
PATH = "/wecom/callback"
CONNECTIONS = 64
WRK_THREADS = 1
#: Seconds after the load stops at which the workers' progress is read.
DRAIN_WAIT = 2.0
#: Distinct signed requests per second of load, so that nearly every POST is fresh.
DISTINCT_PER_SECOND = 8000
WARM_REQUESTS = 200
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
STATS = ("received", "duplicates", "handled", "rejected", "unavailable")
KINDS = ("change_external_contact", "change_external_chat", "kf_msg_or_event")


# -- the callbacks ------------------------------------------------------------


def crypto() -> CallbackCrypto:
    return CallbackCrypto(TOKEN, AES_KEY, CORP_ID)


def plaintext(i: int, tag: str, now: int) -> str:
    """Callback ``i`` of a mix of the three kinds; each has its own dedup key."""
    kind = KINDS[i % len(KINDS)]
    ident = hashlib.sha256(f"{tag}:{i}".encode()).hexdigest()
    base: dict[str, str | int] = {
        "FromUserName": "sys",
        "CreateTime": now,
        "MsgType": "event",
        "Event": kind,
    }
    if kind == "change_external_contact":
        return event_xml(
            CORP_ID,
            {
                **base,
                "ChangeType": "add_external_contact",
                "UserID": f"member{i % 600:04d}",
                "ExternalUserID": "wm" + ident[:30],
                "State": f"campaign-{i % 17}",
                "WelcomeCode": base64.urlsafe_b64encode(bytes.fromhex(ident)).decode()[:43],
            },
        )
    if kind == "change_external_chat":
        xml = event_xml(
            CORP_ID,
            {
                **base,
                "ChatId": "wr" + ident[:30],
                "ChangeType": "update",
                "UpdateDetail": "add_member",
                "JoinScene": 1,
                "MemChangeCnt": 1,
            },
        )
        # event_xml writes flat elements; the member list is one level down.
        item = f"<MemChangeList><Item><![CDATA[wm{ident[30:60]}]]></Item></MemChangeList>"
        return xml.removesuffix("</xml>") + item + "</xml>"
    return event_xml(
        CORP_ID,
        {**base, "Token": "ENC" + ident[:40], "OpenKfId": "wk" + ident[40:62]},
    )


@attrs.frozen
class Signed:
    """One POST as WeCom sends it: the query's three parameters and the body."""

    msg_signature: str
    timestamp: str
    nonce: str
    encrypted: str
    body: bytes

    @property
    def target(self) -> str:
        query = {"msg_signature": self.msg_signature, "timestamp": self.timestamp}
        return f"{PATH}?{urlencode({**query, 'nonce': self.nonce})}"


def sign(box: CallbackCrypto, xml: str, now: int) -> Signed:
    """Encrypt and sign ``xml`` with the public ``encrypt`` (whose envelope carries the
    same signature WeCom puts in the query), then wrap it as WeCom's POST body."""
    nonce = str(secrets.randbelow(10**10))
    envelope = ET.fromstring(box.encrypt(xml, nonce=nonce, timestamp=now))
    encrypted = envelope.findtext("Encrypt") or ""
    body = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>"
    )
    signature = envelope.findtext("MsgSignature") or ""
    return Signed(signature, str(now), nonce, encrypted, body.encode())


def signed_set(count: int, tag: str) -> list[Signed]:
    """``count`` distinct callbacks, signed with the current time."""
    box, now = crypto(), int(time.time())
    return [sign(box, plaintext(i, tag, now), now) for i in range(count)]


def write_requests(path: Path, requests: list[Signed]) -> None:
    """One request a line, ``target<TAB>body``, for the Lua script and the fallback."""
    with path.open("w", encoding="ascii") as out:
        for r in requests:
            out.write(f"{r.target}\t{r.body.decode()}\n")


def read_requests(path: str) -> list[tuple[str, bytes]]:
    with open(path, encoding="ascii") as lines:
        return [(t, b.encode()) for t, b in (line.rstrip("\n").split("\t", 1) for line in lines)]


# -- the server process ---------------------------------------------------------


async def _nothing(event: object) -> None:
    pass


async def serve(variant: str, prefix: str) -> None:
    """A child: the bare handler or a receiver on 127.0.0.1, stats on GET /stats."""
    from aiohttp import web

    app = web.Application()
    receiver: CallbackReceiver | None = None
    client: Any = None
    if variant == "bare":

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response()

        app.router.add_post(PATH, bare)
    else:
        queue: MemoryQueue | RedisStreamQueue = MemoryQueue()
        if variant == "redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(REDIS_URL)
            queue = RedisStreamQueue(client, prefix=prefix)
        receiver = CallbackReceiver(crypto(), _nothing, queue=queue)
        receiver.attach(app, PATH)

    async def stats(request: web.Request) -> web.Response:
        counts = {} if receiver is None else {k: getattr(receiver.stats, k) for k in STATS}
        return web.json_response(counts)

    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"port: {runner.addresses[0][1]}", flush=True)
    await stop.wait()
    await runner.cleanup()
    if client is not None:
        await client.aclose()


@attrs.define
class Server:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def cpu_seconds(self) -> float:
        """The process's user + system CPU so far, from /proc (Linux)."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_process(variant: str, prefix: str) -> Iterator[Server]:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.b6_callbacks", "serve", variant, prefix],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("port:"):
                proc.wait(timeout=30)
                errors.seek(0)
                raise RuntimeError(f"the {variant} server did not start: {errors.read()[-2000:]}")
            yield Server(proc, int(line.split(":")[1]))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


# The parent talks to the servers with urllib, never through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def server_stats(server: Server) -> dict[str, int]:
    with _HTTP.open(f"http://127.0.0.1:{server.port}/stats", timeout=10) as answer:
        counts: dict[str, int] = json.loads(answer.read())
    return counts


def warm_up(server: Server, requests: list[Signed]) -> None:
    """A few POSTs (their own events) before the timed load; then let the workers drain."""
    for r in requests:
        post = urllib.request.Request(
            server.url.removesuffix(PATH) + r.target,
            data=r.body,
            headers={"Content-Type": "text/xml"},
            method="POST",
        )
        with _HTTP.open(post, timeout=10) as answer:
            answer.read()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        counts = server_stats(server)
        if counts.get("handled", 0) >= counts.get("received", 0):
            return
        time.sleep(0.05)


# -- load generators -------------------------------------------------------------

# Each thread takes every n-th request of the file, from its own offset, and cycles.
WRK_SCRIPT = r"""
local requests, n, i = {}, 0, 0

function setup(thread)
  _threads = (_threads or 0) + 1
  thread:set("offset", _threads - 1)
end

function init(args)
  local stride, line_no = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    if line_no % stride == offset then
      local target, body = line:match("^([^\t]*)\t(.*)$")
      n = n + 1
      requests[n] = wrk.format("POST", target, {["Content-Type"] = "text/xml"}, body)
    end
    line_no = line_no + 1
  end
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'B6 {"requests": %.0f, "seconds": %.6f, "non_2xx": %.0f, "socket_errors": %.0f, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def generate_load(server: Server, data: Path, seconds: int, scratch: Path) -> dict[str, float]:
    """Drive the server for ``seconds``; the result, with the generator's own CPU."""
    wrk = shutil.which("wrk")
    if wrk is not None:
        script = scratch / "b6.lua"
        script.write_text(WRK_SCRIPT, encoding="ascii")
        command = [
            wrk,
            f"-t{WRK_THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            server.url,
            "--",
            str(data),
            str(WRK_THREADS),
        ]
    else:
        command = [sys.executable, "-m", "benchmarks.b6_callbacks", "load"]
        command += [str(server.port), str(data), str(seconds), str(CONNECTIONS)]
    cpu = _children_cpu()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    cpu = _children_cpu() - cpu  # only this child was reaped in between
    lines = [line for line in done.stdout.splitlines() if line.startswith("B6 ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the load generator failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    result: dict[str, float] = json.loads(lines[-1][3:])
    result["generator_cpu"] = cpu
    return result


_LENGTH = re.compile(rb"(?i)\r\ncontent-length:[ \t]*(\d+)")


class _Load:
    """The fallback generator's shared state: requests to cycle, counts, latencies."""

    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.next = 0
        self.stopped = False
        self.responses = 0
        self.non_2xx = 0
        self.errors = 0
        self.latencies: list[float] = []


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request, its whole response, the next request."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.end = -1  # where the response in the buffer ends, once its head is read
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self) -> None:
        load = self.load
        assert self.transport is not None
        if load.stopped:
            self.transport.close()
            return
        load.next = (load.next + 1) % len(load.requests)
        self.sent = time.perf_counter()
        self.transport.write(load.requests[load.next])

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.end < 0:
            head = buffer.find(b"\r\n\r\n")
            if head < 0:
                return
            length = _LENGTH.search(buffer, 0, head + 2)
            self.end = head + 4 + (int(length[1]) if length else 0)
        if len(buffer) < self.end:
            return
        load = self.load
        if not load.stopped:
            load.responses += 1
            load.latencies.append(time.perf_counter() - self.sent)
            if buffer[9:10] != b"2":
                load.non_2xx += 1
        del buffer[: self.end]
        self.end = -1
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.load.stopped:
            self.load.errors += 1


async def fallback_load(port: int, data: str, seconds: float, connections: int) -> dict[str, float]:
    """The generator used without wrk: asyncio protocols, one request in flight each."""
    head = "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: text/xml\r\n"
    requests = [
        (head.format(t, port) + f"Content-Length: {len(b)}\r\n\r\n").encode() + b
        for t, b in read_requests(data)
    ]
    load = _Load(requests)
    loop = asyncio.get_running_loop()
    opened = [
        await loop.create_connection(lambda: _Connection(load), "127.0.0.1", port)
        for _ in range(connections)
    ]
    started = time.perf_counter()
    for _, connection in opened:
        connection.send()
    await asyncio.sleep(seconds)
    load.stopped = True
    elapsed = time.perf_counter() - started
    for transport, _ in opened:
        transport.close()
    latencies = sorted(load.latencies) or [0.0]
    return {
        "requests": load.responses,
        "seconds": elapsed,
        "non_2xx": load.non_2xx,
        "socket_errors": load.errors,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


# -- Redis -----------------------------------------------------------------------


def redis_client() -> Any:
    """A sync client on REDIS_URL, or None when the package or the server is missing."""
    try:
        import redis
    except ImportError:
        return None
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        client.close()
        return None
    return client


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def drop_keys(client: Any, prefix: str) -> int:
    """Delete every key naming the run's prefix (unique, so nothing else matches)."""
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    return len(keys)


# -- the HTTP benchmark ------------------------------------------------------------


def one_run(
    variant: str,
    data: Path,
    warm: list[Signed],
    seconds: int,
    scratch: Path,
    redis: Any,
) -> dict[str, float]:
    prefix = f"wecom-b6-{uuid.uuid4().hex[:12]}"
    try:
        with server_process(variant, prefix) as server:
            warm_up(server, warm)
            before = server_stats(server)
            cpu, store_cpu = server.cpu_seconds(), redis_cpu(redis) if redis else 0.0
            load = generate_load(server, data, seconds, scratch)
            cpu, store_cpu = (
                server.cpu_seconds() - cpu,
                (redis_cpu(redis) if redis else 0.0) - store_cpu,
            )
            after = server_stats(server)
            time.sleep(DRAIN_WAIT)
            later = server_stats(server)
    finally:
        if variant == "redis":
            drop_keys(redis, prefix)
    wall = load["seconds"]
    result = {
        "rps": load["requests"] / wall,
        **load,
        "server_busy": cpu / wall,
        "generator_busy": load["generator_cpu"] / wall,
        "redis_busy": store_cpu / wall,
    }
    if variant != "bare":
        result.update({k: after[k] - before[k] for k in STATS})
        accepted = result["received"]
        result["handled_at_stop"] = (after["handled"] - before["handled"]) / max(accepted, 1)
        result["handled_ratio"] = (later["handled"] - before["handled"]) / max(accepted, 1)
    return result


def http_runs(rounds: int, seconds: int, notes: list[str]) -> dict[str, Any]:
    redis = redis_client()
    variants = ["bare", "memory"]
    if redis is not None:
        variants.append("redis")
    else:
        notes.append(f"Redis variant skipped: no Redis answers at {REDIS_URL}.")
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    distinct = DISTINCT_PER_SECOND * seconds
    try:
        with tempfile.TemporaryDirectory(prefix="wecom-b6-") as tmp:
            scratch = Path(tmp)
            for n in range(rounds):
                # Signed afresh each round: the timestamps stay close to now.
                tag = f"{uuid.uuid4().hex[:8]}-{n}"
                requests = signed_set(distinct + WARM_REQUESTS, tag)
                data = scratch / "requests.txt"
                write_requests(data, requests[WARM_REQUESTS:])
                for variant in variants:
                    warm = requests[:WARM_REQUESTS]
                    runs[variant].append(one_run(variant, data, warm, seconds, scratch, redis))
    finally:
        if redis is not None:
            redis.close()
    return {"runs": runs, "distinct": distinct}


# -- CPU per event ------------------------------------------------------------------


class Floor:
    """What any receiver must do per event: verify, base64, AES-CBC, unpad. No XML.

    The app's key and IV are fixed, so the ``Cipher`` is made once; ``per_event``
    makes one for every event instead (as the library did when B6 was written), to
    show what that alone costs.
    """

    def __init__(self, *, per_event: bool = False) -> None:
        self.key = base64.b64decode(AES_KEY + "=")
        self.token = TOKEN
        self.per_event = per_event
        self.cipher = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def __call__(self, m: Signed) -> bytes:
        parts = sorted((self.token, m.timestamp, m.nonce, m.encrypted))
        expected = hashlib.sha1("".join(parts).encode()).hexdigest()
        if not hmac.compare_digest(expected, m.msg_signature):
            raise ValueError("signature")
        cipher = self.cipher
        if self.per_event:
            cipher = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))
        decryptor = cipher.decryptor()
        plain = decryptor.update(base64.b64decode(m.encrypted)) + decryptor.finalize()
        content = plain[16 : -plain[-1]]
        return content[4 : 4 + int.from_bytes(content[:4], "big")]


def wechatpy_api() -> tuple[Any, Any, str] | None:
    """wechatpy's WeCom crypto and parser: ``wechatpy.work`` (2.x) or ``.enterprise`` (1.x)."""
    for name in ("wechatpy.work", "wechatpy.enterprise"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        version = getattr(importlib.import_module("wechatpy"), "__version__", "?")
        return module.WeChatCrypto, module.parse_message, f"wechatpy {version} ({name})"
    return None


def cpu_variants(messages: list[Signed]) -> tuple[dict[str, Callable[[Signed], object]], str]:
    """The three paths over one message each, checked to agree on the plaintext."""
    box, floor = crypto(), Floor()
    variants: dict[str, Callable[[Signed], object]] = {
        "floor": floor,
        "floor_cipher_per_event": Floor(per_event=True),
        "library": lambda m: parse_event(
            box.decrypt(m.msg_signature, m.timestamp, m.nonce, m.body)
        ),
    }
    for m in messages:
        xml = box.decrypt(m.msg_signature, m.timestamp, m.nonce, m.body)
        if floor(m).decode() != xml:
            raise AssertionError("the floor and the library disagree on a plaintext")
    api = wechatpy_api()
    if api is None:
        return variants, ""
    make, parse, name = api
    theirs = make(TOKEN, AES_KEY, CORP_ID)
    for m in messages:
        xml = theirs.decrypt_message(m.body, m.msg_signature, m.timestamp, m.nonce)
        if xml != floor(m).decode():
            raise AssertionError("wechatpy and the floor disagree on a plaintext")
    variants["wechatpy"] = lambda m: parse(
        theirs.decrypt_message(m.body, m.msg_signature, m.timestamp, m.nonce)
    )
    return variants, name


def _one_pass(fn: Callable[[Signed], object], messages: list[Signed]) -> float:
    """Seconds per event over one pass of ``messages``."""
    started = time.perf_counter()
    for m in messages:
        fn(m)
    return (time.perf_counter() - started) / len(messages)


def _ratio(values: list[float], bases: list[float]) -> dict[str, float]:
    ratios = [v / b for v, b in zip(values, bases, strict=True)]
    return {"ratio": median(ratios), "low": min(ratios), "high": max(ratios)}


CPU_MESSAGES = 300
#: Passes per round; each pass times every variant in turn, the fastest pass is kept.
CPU_PASSES = 5


def cpu_per_event(rounds: int, notes: list[str]) -> dict[str, Any]:
    messages = signed_set(CPU_MESSAGES, "cpu")
    variants, wechatpy = cpu_variants(messages)
    if not wechatpy:
        notes.append("wechatpy not installed: no comparison with it (`pip install -e '.[bench]'`).")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm: imports, caches
        _one_pass(fn, messages)
    # The variants alternate pass by pass, so that a spell of contention on the shared
    # core falls on all of them alike; ratios are taken within a round.
    for _ in range(rounds):
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(CPU_PASSES):
            for name, fn in variants.items():
                best[name] = min(best[name], _one_pass(fn, messages))
        for name, value in best.items():
            times[name].append(value)
    out: dict[str, Any] = {"rounds": rounds, "messages": len(messages), "wechatpy_name": wechatpy}
    for name, values in times.items():
        out[name] = {"us": median(values) * 1e6, **_ratio(values, times["floor"])}
    if "wechatpy" in times:
        out["vs_wechatpy"] = _ratio(times["library"], times["wechatpy"])
    return out


#: Events per variant in the instruction count (the count is taken with and without them).
COUNTED_EVENTS = 600


def cpu_child(variant: str, events: int) -> None:
    """A child under callgrind: build and warm every variant, then ``events`` of one."""
    messages = signed_set(60, "cpu")  # fewer than timed: valgrind is slow, the mix the same
    variants, _ = cpu_variants(messages)
    fn = variants[variant]
    for m in messages:
        fn(m)
    for i in range(events):
        fn(messages[i % len(messages)])


def _callgrind_total(path: Path) -> int:
    with path.open(encoding="ascii", errors="replace") as out:
        for line in out:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


def count_instructions(names: list[str]) -> dict[str, float] | None:
    """Instructions per event of each variant under callgrind (load-proof), as B2 does."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    per_event: dict[str, float] = {}
    child = [sys.executable, "-m", "benchmarks.b6_callbacks", "cpu"]
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            outs = {n: Path(scratch) / f"{name}-{n}.out" for n in (0, COUNTED_EVENTS)}
            procs = [
                subprocess.Popen(
                    [
                        valgrind,
                        "--tool=callgrind",
                        f"--callgrind-out-file={out}",
                        *child,
                        name,
                        str(n),
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for n, out in outs.items()
            ]
            if [proc.wait() for proc in procs] != [0, 0]:
                raise RuntimeError(f"callgrind run of {name} failed")
            without, with_ = (_callgrind_total(outs[n]) for n in (0, COUNTED_EVENTS))
            per_event[name] = (with_ - without) / COUNTED_EVENTS
    return per_event


# -- entry points -------------------------------------------------------------------


def run(quick: bool) -> dict[str, object]:
    rounds, seconds, cpu_rounds = (2, 1, 7) if quick else (3, 8, 21)
    notes: list[str] = []
    generator = "wrk" if shutil.which("wrk") else "python"
    if generator == "python":
        notes.append("wrk not on PATH: the load came from the asyncio fallback generator.")
    http = http_runs(rounds, seconds, notes)
    cpu = cpu_per_event(cpu_rounds, notes)
    names: list[str] = [n for n in ("floor", "library", "wechatpy") if n in cpu]
    instructions = None if quick else count_instructions(names)
    if instructions is None:
        notes.append("Instructions not counted (quick mode, or no valgrind).")
    return {
        "rounds": rounds,
        "seconds": seconds,
        "connections": CONNECTIONS,
        "generator": generator,
        "http": http,
        "cpu": cpu,
        "instructions": instructions,
        "counted_events": COUNTED_EVENTS,
        "notes": notes,
    }


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "serve":  # serve VARIANT PREFIX
        asyncio.run(serve(args[0], args[1]))
    elif command == "load":  # load PORT DATA SECONDS CONNECTIONS
        port, data, seconds, connections = int(args[0]), args[1], float(args[2]), int(args[3])
        result = asyncio.run(fallback_load(port, data, seconds, connections))
        print("B6 " + json.dumps(result), flush=True)
    elif command == "cpu":  # cpu VARIANT EVENTS (under callgrind)
        cpu_child(args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
