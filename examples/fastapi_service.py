"""A FastAPI service that answers a customer's detail as WeCom's JSON.

``python examples/fastapi_service.py`` serves it on 127.0.0.1:8000 against an
embedded fake WeCom; ``GET /customers/{external_userid}`` answers the detail.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

# README {
from fastapi import FastAPI, HTTPException

from wecom_async import WeComClient, WeComNotFoundError, to_dict


def create_app(client: WeComClient) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client:  # one client, its pool and token, for the app's life
            yield

    api = FastAPI(lifespan=lifespan)

    @api.get("/customers/{external_userid}")
    async def customer(external_userid: str) -> dict[str, Any]:
        try:
            detail = await client.external_contact.get(external_userid)
        except WeComNotFoundError:
            raise HTTPException(status_code=404, detail="no such customer") from None
        return to_dict(detail)  # WeCom's wire names; absent fields left out

    return api


# README }


async def main() -> None:
    import uvicorn

    from wecom_async.testing import FakeWeCom

    async with FakeWeCom(customers=100) as fake:
        print("try: curl http://127.0.0.1:8000/customers/" + fake.corp.customer_id(0))
        config = uvicorn.Config(create_app(fake.client()), host="127.0.0.1", port=8000)
        await uvicorn.Server(config).serve()


if __name__ == "__main__":
    asyncio.run(main())
