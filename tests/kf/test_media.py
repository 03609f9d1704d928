"""client.media: multipart uploads and binary downloads on the one call path, over loopback."""

from __future__ import annotations

import os

import pytest
from aiohttp import web

from tests.servers import TinyServer
from wecom_async import (
    RetryPolicy,
    WeComAPIError,
    WeComClient,
    WeComInputError,
    WeComTransportError,
)
from wecom_async.testing import FakeWeCom

QUICK = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)


async def test_upload_then_download_through_the_fake() -> None:
    # A file that looks like an errcode answer is still a file: the attachment
    # header says so.
    lookalike = b'{"errcode": 40007, "errmsg": "I am a file"}'
    big = os.urandom(17 * 1024 * 1024)  # over the pool's 16 MiB default cap
    async with FakeWeCom(customers=5) as fake, fake.client() as client:
        small_id = await client.media.upload("file", "note.json", lookalike)
        big_id = await client.media.upload("file", "big.bin", big)
        assert await client.media.get(small_id) == lookalike
        assert await client.media.get(big_id) == big
        image = fake.kf.put_media("image", "a.jpg", b"\xff\xd8\xff\xe0 jpeg")
        assert await client.media.get(image) == b"\xff\xd8\xff\xe0 jpeg"
        calls = len(fake.calls_to("media/get"))
        with pytest.raises(WeComAPIError) as info:
            await client.media.get("no-such-media")
        assert info.value.errcode == 40007
        assert len(fake.calls_to("media/get")) == calls + 1  # an errcode is not retried
        with pytest.raises(WeComTransportError, match="cap") as too_big:
            await client.media.get(big_id, max_bytes=1024 * 1024)
        assert not too_big.value.retryable
        assert len(fake.calls_to("media/get")) == calls + 2
        assert client.stats.token_fetches == 1


async def test_a_binary_answer_without_headers_is_bytes_not_a_retried_error(
    server: TinyServer,
) -> None:
    payload = b"\x00\x01 not json at all \xfe"
    server.route = lambda request: web.Response(body=payload, content_type="audio/amr")
    async with WeComClient("ww", "secret-x", base_url=server.base_url, retry=QUICK) as client:
        assert await client.media.get("M") == payload
        assert client.stats.retries == 0
    assert server.hits == 1


async def test_an_errcode_body_from_media_get_raises_its_error(server: TinyServer) -> None:
    server.route = lambda request: web.json_response({"errcode": 40007, "errmsg": "invalid"})
    async with WeComClient("ww", "secret-x", base_url=server.base_url, retry=QUICK) as client:
        with pytest.raises(WeComAPIError) as info:
            await client.media.get("M")
    assert info.value.errcode == 40007 and server.hits == 1


async def test_an_upload_is_sent_whole_again_on_a_retry(server: TinyServer) -> None:
    received: list[tuple[str, bytes]] = []

    async def route(request: web.Request) -> web.Response:
        form = await request.post()
        field = form["media"]
        assert isinstance(field, web.FileField)
        received.append((field.filename, field.file.read()))
        if len(received) == 1:
            return web.json_response({"errcode": -1, "errmsg": "system busy"})
        return web.json_response({"errcode": 0, "type": "image", "media_id": "MID"})

    server.route = route
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    async with WeComClient("ww", "secret-x", base_url=server.base_url, retry=QUICK) as client:
        assert await client.media.upload("image", "pic.png", data) == "MID"
    assert received == [("pic.png", data), ("pic.png", data)]
    assert [a.query.get("type") for a in server.arrivals if a.path == "media/upload"] == [
        "image",
        "image",
    ]


@pytest.mark.parametrize(
    ("kind", "filename", "size"),
    [("doc", "a.doc", 10), ("file", "", 10), ("file", "a", 5), ("voice", "a.amr", 2 * 2**20 + 1)],
)
async def test_uploads_wecom_refuses_fail_before_sending(
    server: TinyServer, kind: str, filename: str, size: int
) -> None:
    async with WeComClient("ww", "secret-x", base_url=server.base_url) as client:
        with pytest.raises(WeComInputError):
            await client.media.upload(kind, filename, b"x" * size)
    assert server.arrivals == []
