"""What every endpoint namespace holds: the client whose call path it uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._call_options import CallOptions


class Caller(Protocol):
    """The part of WeComClient that namespaces use: its one call path."""

    @property
    def max_pages(self) -> int: ...

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        options: CallOptions | None = None,
    ) -> dict[str, Any]: ...


class Namespace:
    __slots__ = ("_client",)

    def __init__(self, client: Caller) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"
