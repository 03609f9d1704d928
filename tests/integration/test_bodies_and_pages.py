"""Bodies and pagers from a hostile server: compressed, oversized, endless."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import CORP_ID, SECRET
from tests.servers import TinyServer
from wecom_async import (
    RetryPolicy,
    SessionPool,
    WeComClient,
    WeComDecodeError,
    WeComNotFoundError,
    WeComTransportError,
)
from wecom_async.sync import sync_customers

OK = {"errcode": 0, "external_userid": ["wm1", "wm2"]}


def gzipped(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def zeros_gzipped(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed a MiB at a time (about 1,000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + packer.flush()


def encoded(body: bytes, encoding: str) -> web.Response:
    return web.Response(
        body=body, headers={"Content-Encoding": encoding, "Content-Type": "application/json"}
    )


def policy(attempts: int) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, backoff_base=0.001, backoff_max=0.01)


@pytest.mark.parametrize("encoding", ["gzip", "deflate (zlib)", "deflate (raw)"])
async def test_compressed_answers_under_the_cap_decode(server: TinyServer, encoding: str) -> None:
    raw = json.dumps(OK).encode()
    if encoding == "gzip":
        body, name = gzipped(raw), "gzip"
    elif encoding == "deflate (zlib)":
        body, name = zlib.compress(raw), "deflate"
    else:
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body, name = packer.compress(raw) + packer.flush(), "deflate"
    server.route = lambda request: encoded(body, name)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        assert await client.external_contact.list("u") == ["wm1", "wm2"]


async def test_a_body_that_inflates_past_the_cap_is_refused_once(server: TinyServer) -> None:
    bomb = zeros_gzipped(8 << 20)  # 8 MiB inflated, about 8 KiB on the wire
    server.route = lambda request: encoded(bomb, "gzip")
    async with (
        SessionPool(max_body_bytes=1 << 20) as pool,
        WeComClient(
            CORP_ID, SECRET, base_url=server.base_url, pool=pool, retry=policy(4)
        ) as client,
    ):
        with pytest.raises(WeComTransportError, match="cap") as info:
            await client.external_contact.list("u")
    assert not info.value.retryable
    assert server.hits == 1  # the same request gets the same body: never retried


async def test_a_content_length_over_the_cap_is_not_retried(server: TinyServer) -> None:
    server.route = lambda request: web.Response(body=b"x" * 10_000)
    async with (
        SessionPool(max_body_bytes=4096) as pool,
        WeComClient(
            CORP_ID, SECRET, base_url=server.base_url, pool=pool, retry=policy(4)
        ) as client,
    ):
        with pytest.raises(WeComTransportError, match="cap"):
            await client.external_contact.list("u")
    assert server.hits == 1


async def test_an_encoding_that_was_not_asked_for_is_refused(server: TinyServer) -> None:
    server.route = lambda request: encoded(b"\x00\x01\x02", "br")
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy(4)) as client:
        with pytest.raises(WeComTransportError, match="Content-Encoding"):
            await client.external_contact.list("u")
    assert server.hits == 1


async def test_a_gzip_body_with_an_endless_tail_is_refused_without_reading_on(
    server: TinyServer,
) -> None:
    # A small, valid gzip member, then garbage without end (chunked, so no length
    # stops aiohttp): zlib keeps whatever follows the member in unused_data, so a
    # reader that goes on after the member's end holds the whole tail in memory.
    written = 0

    async def tail(request: web.Request) -> web.StreamResponse:
        nonlocal written
        resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        await resp.prepare(request)
        await resp.write(gzipped(json.dumps(OK).encode()))
        block = b"\x00" * 65536
        with contextlib.suppress(ConnectionError):
            while written < 256 << 20:  # ends the test if the client never stops
                await resp.write(block)
                written += len(block)
        return resp

    server.route = tail
    async with (
        SessionPool(max_body_bytes=1 << 20) as pool,
        WeComClient(
            CORP_ID, SECRET, base_url=server.base_url, pool=pool, retry=policy(4), timeout=60
        ) as client,
    ):
        with pytest.raises(WeComTransportError, match="after its end") as info:
            await asyncio.wait_for(client.external_contact.list("u"), 30)
    assert not info.value.retryable  # the same request gets the same tail
    assert server.hits == 1
    # The client stopped reading at the member's end: what the server got rid of is
    # what the socket buffers took, far short of the 256 MiB it had to send.
    assert written < 32 << 20, written


async def test_a_multi_member_gzip_body_is_read_whole(server: TinyServer) -> None:
    # RFC 1952: a gzip file may be several members, one after the other.
    raw = json.dumps(OK).encode()
    body = gzipped(raw[:10]) + gzipped(b"") + gzipped(raw[10:])
    server.route = lambda request: encoded(body, "gzip")
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy(1)) as c:
        assert await c.external_contact.list("u") == ["wm1", "wm2"]


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from wecom_async import WeComClient, WeComTransportError, RetryPolicy

    async def main():
        async with WeComClient("ww", "s", base_url=sys.argv[1],
                               retry=RetryPolicy(max_attempts=1)) as client:
            try:
                await client.external_contact.list("u")
                print("no error")
            except WeComTransportError as exc:
                print("refused:", exc)

    asyncio.run(main())
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("hwm_kib", line.split()[1])
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
async def test_a_gzip_bomb_keeps_memory_bounded(server: TinyServer, tmp_path: Path) -> None:
    bomb = zeros_gzipped(512 << 20)  # 512 MiB inflated, about half a MiB on the wire
    server.route = lambda request: encoded(bomb, "gzip")
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        server.base_url,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    text = out.decode()
    assert "refused:" in text and "cap" in text, text
    hwm_mib = int(text.split("hwm_kib")[1]) / 1024
    # The default cap is 16 MiB; the interpreter and libraries take about 40.
    assert hwm_mib < 120, f"peak RSS {hwm_mib:.0f} MiB for a 512 MiB bomb"


# -- pagers that never end --


def endless(items_key: str, item: Any, *, empty: bool = False) -> Any:
    served = 0

    def page(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        items = [] if empty else [item]
        return web.json_response(
            {"errcode": 0, items_key: items, "next_cursor": f"CURSOR-{served}"}
        )

    return page


async def test_get_stops_a_pager_that_never_ends(server: TinyServer) -> None:
    server.route = endless("follow_user", {"userid": "u"})
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, max_pages=20) as client:
        with pytest.raises(WeComDecodeError, match="pager did not end"):
            await client.external_contact.get("wm1")
    assert server.hits == 20


async def test_the_default_page_cap_is_a_thousand(server: TinyServer) -> None:
    server.route = endless("follow_user", {"userid": "u"})
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        with pytest.raises(WeComDecodeError, match="pager did not end"):
            await client.external_contact.get("wm1")
    assert server.hits == 1000


async def test_empty_pages_that_still_carry_a_cursor_are_tolerated_only_briefly(
    server: TinyServer,
) -> None:
    server.route = endless("external_contact_list", None, empty=True)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        with pytest.raises(WeComDecodeError, match="empty pages in a row"):
            async for _ in client.external_contact.batch_get_by_user(["u1"]):
                pass
    assert server.hits == 3


async def test_batch_get_by_user_stops_a_pager_that_never_ends(server: TinyServer) -> None:
    pair = {"external_contact": {"external_userid": "wm1"}, "follow_info": {"userid": "u1"}}
    server.route = endless("external_contact_list", pair)
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, max_pages=30) as client:
        seen = 0
        with pytest.raises(WeComDecodeError, match="pager did not end"):
            async with client.external_contact.batch_get_by_user(["u1"]) as pairs:
                async for _ in pairs:
                    seen += 1
    assert seen == 30
    assert server.hits == 30


async def test_the_sync_stops_a_pager_that_never_ends(server: TinyServer, tmp_path: Path) -> None:
    pair = {"external_contact": {"external_userid": "wm1"}, "follow_info": {"userid": "u1"}}
    batch = endless("external_contact_list", pair)

    def route(request: web.Request) -> web.Response:
        if request.path.endswith("get_follow_user_list"):
            return web.json_response({"errcode": 0, "follow_user": ["u1"]})
        return batch(request)  # type: ignore[no-any-return]

    server.route = route
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, max_pages=25) as client:
        with pytest.raises(WeComDecodeError, match="pager did not end"):
            await sync_customers(client, tmp_path / "out.jsonl")
    assert server.hits == 1 + 25
    assert not (tmp_path / "out.jsonl").exists()


# -- iter_details when every id fails alike --


async def test_iter_details_breaks_the_circuit_when_every_id_fails_alike(
    server: TinyServer,
) -> None:
    server.route = lambda request: web.Response(text="<html>gateway says hi</html>")
    ids = [f"wm{i}" for i in range(2000)]
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, retry=policy(2)) as client:
        stream = client.external_contact.iter_details(ids, max_consecutive_failures=10)
        with pytest.raises(WeComDecodeError, match="not JSON"):
            async with stream:
                async for _ in stream:
                    pass
    # 10 in a row trip it; the workers in flight then are cancelled. Without the
    # breaker: 2,000 ids x 2 attempts.
    assert server.hits <= (10 + 16) * 2
    assert 10 <= len(stream.failures) <= 26
    for error in stream.failures.values():
        assert error.__traceback__ is None  # no frames kept per failed id


async def test_not_found_never_trips_the_breaker(server: TinyServer) -> None:
    server.route = lambda request: web.json_response(
        {"errcode": 40096, "errmsg": "invalid external userid"}
    )
    ids = [f"wm{i}" for i in range(60)]
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        stream = client.external_contact.iter_details(ids, max_consecutive_failures=5)
        got = [d async for d in stream]
    assert got == []
    assert len(stream.failures) == 60
    assert all(isinstance(e, WeComNotFoundError) for e in stream.failures.values())


async def test_a_pager_with_huge_cursors_keeps_memory_bounded(server: TinyServer) -> None:
    # Every cursor is a fresh 900 KB: the pager must remember that it saw them without
    # keeping them (40 pages would otherwise hold 36 MB).
    served = 0

    def page(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        cursor = f"{served:08d}" + "c" * 900_000  # under aiohttp's 1 MiB request-body warning
        pair = {"external_contact": {"external_userid": "wm1"}, "follow_info": {"userid": "u1"}}
        body = json.dumps({"errcode": 0, "external_contact_list": [pair], "next_cursor": cursor})
        # A BytesIO: aiohttp warns about large raw bodies, and warnings are errors here.
        return web.Response(body=io.BytesIO(body.encode()), content_type="application/json")

    server.route = page
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url, max_pages=40) as client:
        pages = client.external_contact.batch_get_by_user_pages(["u1"])
        tracemalloc.start()
        try:
            with pytest.raises(WeComDecodeError, match="pager did not end"):
                async for _ in pages:
                    pass
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert served == 40
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB"


async def test_a_cursor_with_a_lone_surrogate_is_followed_not_crashed_on(
    server: TinyServer,
) -> None:
    served = 0

    def page(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        cursor = "\\ud83d" if served == 1 else ""
        # Raw JSON text: the escape must reach the client as a lone surrogate.
        body = (
            '{"errcode": 0, "external_contact": {"external_userid": "wm1"}, '
            '"follow_user": [], "next_cursor": "' + cursor + '"}'
        )
        return web.Response(text=body, content_type="application/json")

    server.route = page
    async with WeComClient(CORP_ID, SECRET, base_url=server.base_url) as client:
        detail = await client.external_contact.get("wm1")
    assert detail.follow_user == ()
    assert served == 2
