"""The ``wecom_fake`` pytest fixture, registered through the ``pytest11`` entry point.

    async def test_sync(wecom_fake):
        async with wecom_fake.client() as client: ...

    @pytest.mark.wecom_fake(customers=50, seed=7, page_size=10)
    async def test_small_corp(wecom_fake): ...

The marker's keyword arguments go to :class:`FakeWeCom`. The fixture needs
pytest-asyncio; without it, using the fixture fails with a message saying so, and
installing wecom-async never breaks a test suite that does not use it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ._server import FakeWeCom


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wecom_fake(**options): FakeWeCom options for the wecom_fake fixture"
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("wecom_fake")
    return dict(marker.kwargs) if marker is not None else {}


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def wecom_fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeWeCom]:
        """A started FakeWeCom: 1,000 customers, seed 1, unless a marker says otherwise."""
        async with FakeWeCom(**_options(request)) as fake:
            yield fake

else:  # pragma: no cover - only where pytest-asyncio is absent

    @pytest.fixture
    def wecom_fake() -> None:
        """Unusable without pytest-asyncio; says so instead of "fixture not found"."""
        raise pytest.UsageError(
            "the wecom_fake fixture needs pytest-asyncio: pip install pytest-asyncio"
        )
