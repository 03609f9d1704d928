"""A faithful WeCom server on loopback, for tests, benchmarks and demos.

``FakeWeCom`` serves ``gettoken`` and the customer endpoints this library covers,
from a seeded corp that is generated lazily (10 to 1,000,000 customers start alike).
Install the package and pytest gets a ``wecom_fake`` fixture too.

    async with FakeWeCom(customers=5000, seed=1) as fake:
        async with fake.client() as client:
            ids = await client.external_contact.list(fake.corp.userids[0])
"""

from ._callbacks import CallbackPusher, FakeCallbacks, PushAttempt
from ._data import FakeCorp
from ._pipeline import FakeCall, FakeStats, Faults
from ._server import WECOM_LIMITS, FakeWeCom
from ._window import SlidingWindow, most_in_any_window

__all__ = [
    "WECOM_LIMITS",
    "CallbackPusher",
    "FakeCall",
    "FakeCallbacks",
    "FakeCorp",
    "FakeStats",
    "FakeWeCom",
    "Faults",
    "PushAttempt",
    "SlidingWindow",
    "most_in_any_window",
]
