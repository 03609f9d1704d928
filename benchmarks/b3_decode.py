"""B3: what decoding into models costs, against json.loads of the same bytes.

Each figure is (json.loads + structure) / json.loads, medians of repeated timings:
so 2.0 means decoding into models costs as much again as parsing the JSON.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from typing import Any

from wecom_async._converter import decode
from wecom_async.models import ExternalContactDetail, KfCustomerBatch
from wecom_async.testing import FakeCorp

from ._common import median


def samples() -> dict[str, tuple[bytes, type]]:
    corp = FakeCorp(customers=1000, members=600, popular=1)
    detail = {
        "errcode": 0,
        "errmsg": "ok",
        "external_contact": corp.contact(0),
        "follow_user": [corp.follow_user(0, m) for m in corp.followers(0)[:500]],
    }
    ids = [corp.customer_id(i) for i in range(1000) if corp.kf_customer(corp.customer_id(i), True)]
    kf = {
        "errcode": 0,
        "errmsg": "ok",
        "customer_list": [corp.kf_customer(i, True) for i in ids[:100]],
        "invalid_external_userid": [],
    }
    return {
        "detail, 500 followers": (
            json.dumps(detail, ensure_ascii=False).encode(),
            ExternalContactDetail,
        ),
        "kf batch, 100 customers": (json.dumps(kf, ensure_ascii=False).encode(), KfCustomerBatch),
    }


def _time(fn: Callable[[], Any], repeats: int, number: int) -> float:
    return median(timeit.repeat(fn, number=number, repeat=repeats)) / number


def _pydantic_models() -> dict[str, Any] | None:
    try:
        from . import _pydantic_models as models
    except ImportError:
        return None
    return {
        "detail, 500 followers": models.ExternalContactDetail,
        "kf batch, 100 customers": models.KfCustomerBatch,
    }


def run(quick: bool) -> dict[str, object]:
    repeats, number = (5, 20) if quick else (15, 100)
    pyd = _pydantic_models()
    out: dict[str, object] = {}
    for name, (raw, model) in samples().items():
        base = _time(lambda raw=raw: json.loads(raw), repeats, number)
        cattrs_t = _time(
            lambda raw=raw, model=model: decode(json.loads(raw), model), repeats, number
        )
        entry: dict[str, float | None] = {
            "bytes": len(raw),
            "json_us": base * 1e6,
            "cattrs_us": cattrs_t * 1e6,
            "cattrs_ratio": cattrs_t / base,
            "pydantic_us": None,
            "pydantic_ratio": None,
        }
        if pyd is not None:
            pmodel = pyd[name]
            p_t = _time(lambda raw=raw, m=pmodel: m.model_validate_json(raw), repeats, number)
            entry["pydantic_us"] = p_t * 1e6
            entry["pydantic_ratio"] = p_t / base
        out[name] = entry
    return out
