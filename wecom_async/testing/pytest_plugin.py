"""The ``wecom_fake`` pytest fixture, registered through the ``pytest11`` entry point.

It needs pytest-asyncio; without it the fixture is simply not defined, so that
installing wecom-async never breaks a test suite that does not use it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

from ._server import FakeWeCom

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def wecom_fake() -> AsyncIterator[FakeWeCom]:
        """A started FakeWeCom with default data (1,000 customers, seed 1)."""
        async with FakeWeCom() as fake:
            yield fake
