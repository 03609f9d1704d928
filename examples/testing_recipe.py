"""Testing your own code against the fake: a pytest module to copy into your tests.

The code under test is ``tag_names``, a function of your service; the test runs it
against :class:`~wecom_async.testing.FakeWeCom` on loopback, with an endpoint the
fake does not serve added through ``fake.route``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from wecom_async import WeComClient
from wecom_async.testing import FakeWeCom


async def tag_names(client: WeComClient) -> list[str]:
    """Your code: the corp's customer tag names (an endpoint the library does not wrap)."""
    answer = await client.request("POST", "externalcontact/get_corp_tag_list", json={})
    return [tag["name"] for group in answer["tag_group"] for tag in group["tag"]]


def corp_tags(query: Mapping[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
    """What the fake answers for the endpoint it lacks."""
    return {"tag_group": [{"group_name": "level", "tag": [{"id": "et1", "name": "VIP"}]}]}


@pytest.mark.asyncio  # not needed with asyncio_mode = "auto"
@pytest.mark.wecom_fake(customers=50, seed=7)
async def test_tag_names(wecom_fake: FakeWeCom) -> None:
    wecom_fake.route("POST", "externalcontact/get_corp_tag_list", corp_tags)
    async with wecom_fake.client() as client:  # keeps to the fake's limits
        assert await tag_names(client) == ["VIP"]
    assert [c.errcode for c in wecom_fake.calls_to("externalcontact/get_corp_tag_list")] == [0]
