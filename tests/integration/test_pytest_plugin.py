"""The pytest plugin as a user's suite meets it: a separate pytest run per case."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import pytest
from wecom_async.testing import FakeWeCom

@pytest.mark.asyncio
async def test_function_fixture(wecom_fake: FakeWeCom) -> None:
    async with wecom_fake.client() as client:
        assert await client.external_contact.get_follow_user_list()

@pytest.mark.asyncio
@pytest.mark.wecom_fake(customers=20, members=3, seed=5)
async def test_marker(wecom_fake: FakeWeCom) -> None:
    assert wecom_fake.corp.members == 3

@pytest.mark.asyncio(loop_scope="session")
async def test_session_fixture_first(wecom_fake_session: FakeWeCom) -> None:
    async with wecom_fake_session.client() as client:
        await client.external_contact.get_follow_user_list()

@pytest.mark.asyncio(loop_scope="session")
async def test_session_fixture_is_the_same_fake(wecom_fake_session: FakeWeCom) -> None:
    assert wecom_fake_session.stats.gettoken_calls == 1   # the first test's call, same fake
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_fixtures_work_in_each_asyncio_mode(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(test_user=SUITE)
    result = pytester.runpytest_subprocess(
        "-p",
        "pytest_asyncio",
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
        "-q",
    )
    result.assert_outcomes(passed=4)
