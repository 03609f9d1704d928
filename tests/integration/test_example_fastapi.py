"""examples/fastapi_service.py under uvicorn on loopback: a detail as WeCom's JSON."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import uvicorn

from tests.servers import load_example
from wecom_async import from_dict, to_dict
from wecom_async.models import ExternalContactDetail
from wecom_async.testing import FakeWeCom


async def test_a_route_returns_a_detail_as_wecom_json() -> None:
    example = load_example("fastapi_service.py")
    async with FakeWeCom(customers=50) as fake:
        client = fake.client()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(example.create_app(client), log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not server.started:  # uvicorn offers no event to wait on
                assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
                await asyncio.sleep(0.01)
            ext_id = fake.corp.customer_id(3)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/customers/{ext_id}") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                async with http.get(f"http://127.0.0.1:{port}/customers/wmNOBODY") as resp:
                    assert resp.status == 404
            async with fake.client() as direct:
                detail = await direct.external_contact.get(ext_id)
            assert body == to_dict(detail)
            assert from_dict(ExternalContactDetail, body) == detail
            assert "unionid" not in body["external_contact"] or body["external_contact"]["unionid"]
        finally:
            server.should_exit = True
            await serving
            sock.close()
        assert client.closed  # the app's lifespan closed its client
