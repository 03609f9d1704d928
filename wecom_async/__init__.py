"""wecom_async: an asyncio client for the WeCom (企业微信) server API.

Start with :class:`WeComClient`; share a :class:`SessionPool` between the clients
of many corps; tune :class:`RateLimit` and :class:`RetryPolicy` where WeCom's
defaults do not fit.
"""

from ._ratelimit import LocalRateLimiter, RateLimit, RateLimiter, RateSlot
from ._retry import RetryPolicy
from ._token import AccessToken, LockingTokenStore, MemoryTokenStore, TokenStore
from ._wire import from_dict, to_dict
from .client import ClientStats, WeComClient
from .errors import (
    WeComAPIError,
    WeComBusyError,
    WeComCallbackError,
    WeComClosedError,
    WeComDecodeError,
    WeComError,
    WeComInputError,
    WeComNotFoundError,
    WeComPausedError,
    WeComPermissionError,
    WeComRateLimitError,
    WeComSignatureError,
    WeComStoreError,
    WeComSyncError,
    WeComTokenError,
    WeComTransportError,
    WeComUsageError,
)
from .pool import SessionPool

__version__ = "0.1.0.dev0"

__all__ = [
    "AccessToken",
    "ClientStats",
    "LocalRateLimiter",
    "LockingTokenStore",
    "MemoryTokenStore",
    "RateLimit",
    "RateLimiter",
    "RateSlot",
    "RetryPolicy",
    "SessionPool",
    "TokenStore",
    "WeComAPIError",
    "WeComBusyError",
    "WeComCallbackError",
    "WeComClient",
    "WeComClosedError",
    "WeComDecodeError",
    "WeComError",
    "WeComInputError",
    "WeComNotFoundError",
    "WeComPausedError",
    "WeComPermissionError",
    "WeComRateLimitError",
    "WeComSignatureError",
    "WeComStoreError",
    "WeComSyncError",
    "WeComTokenError",
    "WeComTransportError",
    "WeComUsageError",
    "__version__",
    "from_dict",
    "to_dict",
]
