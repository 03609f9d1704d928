"""Retries: what is retried, how often, and how long the client waits."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.conftest import BASE, CORP_ID, SECRET, Call, MockWeCom, Reply, SleepLog
from wecom_async import (
    RetryPolicy,
    WeComAPIError,
    WeComBusyError,
    WeComClient,
    WeComDecodeError,
    WeComInputError,
    WeComNotFoundError,
    WeComPermissionError,
    WeComRateLimitError,
    WeComTransportError,
)

PATH = "externalcontact/list"


def scripted(*answers: Any) -> Any:
    """A handler that gives these answers in turn, then keeps giving the last."""
    queue = list(answers)

    def handler(call: Call) -> Any:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


OK = {"errcode": 0, "errmsg": "ok", "external_userid": ["wm1"]}


@pytest.mark.parametrize(
    "failure",
    [
        {"errcode": -1, "errmsg": "system busy"},
        {"errcode": 6000, "errmsg": "data version conflict"},
        {"errcode": 45033, "errmsg": "api concurrent out of limit"},
        Reply(502, "<html><body>502 Bad Gateway</body></html>"),
        Reply(503, ""),
        Reply(200, "<html>gateway error page</html>"),  # 200 but not JSON
        Reply(200, '{"errcode": 0, "external_us'),  # truncated
        Reply(200, ""),  # empty
    ],
    ids=["-1", "6000", "45033", "http502", "http503", "html200", "truncated", "empty"],
)
async def test_transient_failures_are_retried(
    wecom: MockWeCom, client: WeComClient, sleeps: SleepLog, failure: Any
) -> None:
    wecom.on("GET", PATH, scripted(failure, OK))
    assert await client.external_contact.list("u1") == ["wm1"]
    assert len(wecom.calls_to(PATH)) == 2
    assert sleeps.waits == [0.375]  # 0.5 * 2**0, times the fixed jitter factor 0.75


@pytest.mark.parametrize(
    ("errcode", "family"),
    [
        (84061, WeComNotFoundError),
        (40003, WeComNotFoundError),
        (40096, WeComNotFoundError),
        (48002, WeComPermissionError),
        (60011, WeComPermissionError),
        (60020, WeComPermissionError),
        (701008, WeComPermissionError),
        (99999, WeComAPIError),
    ],
)
async def test_permanent_errcodes_are_never_retried(
    wecom: MockWeCom, client: WeComClient, sleeps: SleepLog, errcode: int, family: type
) -> None:
    # externalcontact/get, not list: list answers [] for 84061 (a member without customers).
    path = "externalcontact/get"
    wecom.on("GET", path, scripted({"errcode": errcode, "errmsg": "nope hint: [x]"}, OK))
    with pytest.raises(family) as info:
        await client.external_contact.get("wm1")
    assert type(info.value) is family
    assert (info.value.errcode, info.value.path) == (errcode, path)
    assert info.value.errmsg == "nope hint: [x]"
    assert len(wecom.calls_to(path)) == 1
    assert sleeps.waits == []


async def test_retries_stop_after_max_attempts_with_growing_waits(
    wecom: MockWeCom, client: WeComClient, sleeps: SleepLog
) -> None:
    wecom.on("GET", PATH, scripted({"errcode": -1, "errmsg": "busy"}))
    with pytest.raises(WeComBusyError):
        await client.external_contact.list("u1")
    assert len(wecom.calls_to(PATH)) == 4
    assert sleeps.waits == [0.375, 0.75, 1.5]


async def test_each_45009_pauses_the_api_for_backoff_max(wecom: MockWeCom) -> None:
    wecom.on("GET", PATH, scripted(*[{"errcode": 45009, "errmsg": "freq out of limit"}] * 3, OK))
    policy = RetryPolicy(backoff_max=0.1, jitter=lambda: 0.0)
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, retry=policy) as client:
        assert await client.external_contact.list("u1") == ["wm1"]
        assert client.stats.rate_limited == 3
    calls = wecom.calls_to(PATH)
    gaps = [b.arrived - a.answered for a, b in itertools.pairwise(calls)]
    assert len(gaps) == 3
    assert all(gap >= 0.1 for gap in gaps), gaps


async def test_45009_exhausted_raises_rate_limit_error(wecom: MockWeCom, sleeps: SleepLog) -> None:
    wecom.on("GET", PATH, scripted({"errcode": 45009, "errmsg": "freq out of limit"}))
    policy = RetryPolicy(max_attempts=2, backoff_max=0.05, sleep=sleeps)
    async with WeComClient(CORP_ID, SECRET, base_url=BASE, retry=policy) as client:
        with pytest.raises(WeComRateLimitError) as info:
            await client.external_contact.list("u1")
    assert info.value.retry_after == 60.0
    assert len(wecom.calls_to(PATH)) == 2
    assert sleeps.waits == [0.0]  # the wait was the pause's, not the policy's sleep


async def test_http_error_after_retries_is_a_transport_error(
    wecom: MockWeCom, client: WeComClient
) -> None:
    wecom.on("GET", PATH, scripted(Reply(502, "<html>bad gateway</html>")))
    with pytest.raises(WeComTransportError) as info:
        await client.external_contact.list("u1")
    assert info.value.status == 502


async def test_json_of_the_wrong_shape_is_not_retried(
    wecom: MockWeCom, client: WeComClient
) -> None:
    wecom.on("GET", PATH, scripted(Reply(200, "[1, 2, 3]", "application/json")))
    with pytest.raises(WeComDecodeError, match="not an object"):
        await client.external_contact.list("u1")
    assert len(wecom.calls_to(PATH)) == 1


async def test_string_errcode_is_a_decode_error(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on("GET", PATH, scripted({"errcode": "0", "errmsg": "ok"}))
    with pytest.raises(WeComDecodeError, match="errcode"):
        await client.external_contact.list("u1")
    assert len(wecom.calls_to(PATH)) == 1


async def test_missing_errcode_counts_as_success(wecom: MockWeCom, client: WeComClient) -> None:
    wecom.on("GET", PATH, scripted({"external_userid": ["wm9"]}))
    assert await client.external_contact.list("u1") == ["wm9"]


async def test_the_error_answer_with_an_empty_list_field_still_raises(
    wecom: MockWeCom, client: WeComClient
) -> None:
    wecom.on("GET", PATH, scripted({"errcode": 40003, "errmsg": "x", "external_userid": []}))
    with pytest.raises(WeComNotFoundError):
        await client.external_contact.list("u1")


def test_policy_delays_are_capped_and_jittered() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_base=1.0, backoff_max=5.0, jitter=lambda: 0.9)
    assert [round(policy.delay(n, None), 2) for n in range(1, 6)] == [0.95, 1.9, 3.8, 4.75, 4.75]
    low = RetryPolicy(backoff_base=1.0, jitter=lambda: 0.0)
    assert low.delay(3, None) == 2.0  # half the ceiling at the bottom of the jitter


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(WeComInputError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_base=-1)


async def _no_sleep(seconds: float) -> None:
    return None


async def _run(policy: RetryPolicy, outcomes: list[BaseException | None]) -> list[object]:
    """One call under ``policy``: each try takes the next outcome; returns what happened."""
    seen: list[object] = []

    def on_retry(wait: float, error: BaseException, attempt: int) -> None:
        seen.append(("retry after", attempt))

    async def attempt(tag: str) -> list[object]:
        seen.append(tag)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return seen

    return await policy.run(on_retry, attempt, "try")


async def test_tenacity_decides_from_the_first_failure_on() -> None:
    # The first try runs before tenacity is entered; its failure must count as
    # tenacity's first attempt, and pooled controllers must not leak state.
    policy = RetryPolicy(max_attempts=3, backoff_base=0, sleep=_no_sleep)
    busy = WeComBusyError(-1, "system busy", "p")
    assert await _run(policy, [None]) == ["try"]
    assert await _run(policy, [busy, busy, None]) == [
        "try",
        ("retry after", 1),
        "try",
        ("retry after", 2),
        "try",
    ]
    outcomes: list[BaseException | None] = [busy, busy, busy, None]
    with pytest.raises(WeComBusyError) as raised:
        await _run(policy, outcomes)
    assert raised.value is busy and outcomes == [None]  # exactly max_attempts tries
    assert len(policy._idle) == 1  # one controller served both failing calls, in turn
    not_retried = WeComNotFoundError(84061, "not external contact", "p")
    outcomes = [not_retried, None]
    with pytest.raises(WeComNotFoundError):
        await _run(policy, outcomes)
    assert outcomes == [None]  # a permanent error is tried once


async def test_a_call_that_succeeds_at_once_never_enters_tenacity() -> None:
    policy = RetryPolicy(sleep=_no_sleep)
    assert await _run(policy, [None]) == ["try"]
    assert policy._idle == []  # no controller was made
