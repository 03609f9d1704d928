"""The ``wecom_fake`` pytest fixtures, registered through the ``pytest11`` entry point.

    @pytest.mark.asyncio                      # not needed with asyncio_mode = "auto"
    async def test_sync(wecom_fake):
        async with wecom_fake.client() as client: ...

    @pytest.mark.asyncio
    @pytest.mark.wecom_fake(customers=50, seed=7, page_size=10)
    async def test_small_corp(wecom_fake): ...

The marker's keyword arguments go to :class:`FakeWeCom`. ``wecom_fake_session`` is
one fake for the whole session (default data, no marker), started on the session's
event loop: tests that use it run there too, with
``@pytest.mark.asyncio(loop_scope="session")``. The fixtures work in
pytest-asyncio's strict mode (its default) and in auto mode. They need
pytest-asyncio; without it, using one fails with a message saying so, and
installing wecom-async never breaks a test suite that does not use them.
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

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def wecom_fake_session() -> AsyncIterator[FakeWeCom]:
        """One started FakeWeCom (1,000 customers, seed 1) for the whole session.

        It lives on the session's event loop: mark the tests that use it with
        ``@pytest.mark.asyncio(loop_scope="session")``. Its tokens, stats and log
        are shared by every test that uses it.
        """
        async with FakeWeCom() as fake:
            yield fake

else:  # pragma: no cover - only where pytest-asyncio is absent

    def _needs_pytest_asyncio() -> None:
        raise pytest.UsageError(
            "the wecom_fake fixtures need pytest-asyncio: pip install pytest-asyncio"
        )

    @pytest.fixture
    def wecom_fake() -> None:
        """Unusable without pytest-asyncio; says so instead of "fixture not found"."""
        _needs_pytest_asyncio()

    @pytest.fixture(scope="session")
    def wecom_fake_session() -> None:
        """Unusable without pytest-asyncio; says so instead of "fixture not found"."""
        _needs_pytest_asyncio()
