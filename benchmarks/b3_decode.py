"""B3: what decoding into models costs, against json.loads of the same bytes.

Each figure is (bytes → model) / json.loads of the same bytes, the median of the
ratios of several rounds (each round times every variant in turn), with their range:
so 2.0 means decoding into models costs as much again as parsing the JSON.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from wecom_async._converter import decode
from wecom_async._fast_decode import FastDecoder, MergedPages
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


def _time(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number


def _pydantic_models() -> dict[str, Any] | None:
    try:
        from . import _pydantic_models as models
    except ImportError:
        return None
    return {
        "detail, 500 followers": models.ExternalContactDetail,
        "kf batch, 100 customers": models.KfCustomerBatch,
    }


ARRAYS = {
    ExternalContactDetail: ("follow_user",),
    KfCustomerBatch: ("customer_list", "invalid_external_userid"),
}


def library(raw: bytes, model: type, decoder: FastDecoder[Any]) -> Any:
    """What the client does with one answer's bytes: the fast path, as the endpoints use it."""
    merged = MergedPages(model, ARRAYS[model], path="")
    merged.add(decoder.answer(200, raw, lambda: json.loads(raw)))
    return merged.result()


def run(quick: bool) -> dict[str, object]:
    rounds, number = (5, 10) if quick else (15, 40)
    pyd = _pydantic_models()
    out: dict[str, object] = {}
    for name, (raw, model) in samples().items():
        decoder = FastDecoder(model)
        bare_msgspec = msgspec.json.Decoder(model)
        expected = decode(json.loads(raw), model)
        if library(raw, model, decoder) != expected or bare_msgspec.decode(raw) != expected:
            raise AssertionError(f"{name}: the paths disagree")
        variants: dict[str, Callable[[], Any]] = {
            "json": lambda raw=raw: json.loads(raw),
            "library": lambda raw=raw, model=model, d=decoder: library(raw, model, d),
            "cattrs": lambda raw=raw, model=model: decode(json.loads(raw), model),
            "msgspec": lambda raw=raw, d=bare_msgspec: d.decode(raw),
        }
        if pyd is not None:
            variants["pydantic"] = lambda raw=raw, m=pyd[name]: m.model_validate_json(raw)
        times: dict[str, list[float]] = {key: [] for key in variants}
        # Rounds alternate the variants, and each ratio is taken within its round, so
        # that the machine's load drifting between rounds moves both sides alike.
        for _ in range(rounds):
            for key, fn in variants.items():
                times[key].append(_time(fn, number))
        entry: dict[str, object] = {"bytes": len(raw), "rounds": rounds}
        for key, values in times.items():
            ratios = [t / base for t, base in zip(values, times["json"], strict=True)]
            entry[key] = {
                "us": median(values) * 1e6,
                "ratio": median(ratios),
                "low": min(ratios),
                "high": max(ratios),
            }
        out[name] = entry
    return out
