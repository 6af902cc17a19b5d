"""The wire contract is complete and the one codec round-trips on both sides: every message
kind has a site handler, a reply codec, a Flower message type and a server caller."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from flwr.app import RecordDict

from fedrad.client.app import PipelineCache
from fedrad.client.handlers import HANDLERS
from fedrad.client.secure_aggregation import SECAGG_HANDLERS
from fedrad.common.messages import (
    MESSAGE_TYPES,
    PIPELINES_KEPT,
    REPLIES,
    SUMMED,
    TOTALS,
    Empty,
    Kind,
    MalformedReply,
    MaskedReply,
    MlpRoundReply,
    Payload,
    PipelineUnknown,
    Request,
    decode_masked,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    flatten,
    summed,
    unflatten,
)
from fedrad.common.models.logistic import NewtonTerms
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Standardizer

SERVER = Path(__file__).resolve().parents[2] / "server"


def _server_callers() -> set[str]:
    source = "\n".join(path.read_text(encoding="utf-8") for path in SERVER.rglob("*.py"))
    return set(re.findall(r"Kind\.([A-Z_]+)", source))


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_has_a_handler_a_codec_a_message_type_and_a_server_caller(kind):
    assert kind in HANDLERS or kind in SECAGG_HANDLERS, f"no site handler for {kind}"
    assert kind in REPLIES, f"no reply codec for {kind}"
    assert kind in MESSAGE_TYPES, f"no Flower message type for {kind}"
    assert kind.name in _server_callers(), f"nothing in server/ asks for {kind}"


def test_message_types_are_distinct():
    assert len(set(MESSAGE_TYPES.values())) == len(MESSAGE_TYPES)


def _sample(kind: Kind, cls: type | None = None):
    """A reply of `kind` (or of its `cls`) with every field filled."""
    cls = cls or REPLIES[kind]
    if cls is MlpRoundReply:
        return cls({"hidden.weight": np.ones((2, 3))}, 12, 0.5)
    values = {}
    for item in fields(cls):
        text = str(item.type)
        if "list" in text:
            values[item.name] = ["a", "b"]
        elif text.startswith("int"):
            values[item.name] = 7
        elif text.startswith("float"):
            values[item.name] = 0.25
        elif text.startswith("str"):
            values[item.name] = "x"
        else:
            values[item.name] = np.arange(6, dtype=np.float64).reshape(2, 3)
    return cls(**values)


@pytest.mark.parametrize("kind", [k for k in Kind if REPLIES[k] is not Empty])
def test_a_reply_survives_encoding_and_a_missing_field_is_named(kind):
    reply = _sample(kind)
    payload = encode_reply(kind, reply)
    decoded = decode_reply(kind, payload)
    for item in fields(reply):
        left, right = getattr(reply, item.name), getattr(decoded, item.name)
        if isinstance(left, dict):
            assert left.keys() == right.keys()
        else:
            assert np.array_equal(np.asarray(left), np.asarray(right))
    first = next(iter(payload.arrays or payload.values))
    broken = Payload(
        {k: v for k, v in payload.arrays.items() if k != first},
        {k: v for k, v in payload.values.items() if k != first},
    )
    if kind is not Kind.MLP_ROUND:
        with pytest.raises(MalformedReply, match=first):
            decode_reply(kind, broken)


@pytest.mark.parametrize("kind", sorted(SUMMED))
def test_a_summed_reply_flattens_to_words_whose_total_reads_back_as_the_sum(kind):
    left, right = _sample(kind, TOTALS[kind]), _sample(kind, TOTALS[kind])
    (a, layout), (b, _) = flatten(left), flatten(right)
    total = unflatten(kind, a + b, layout)
    expected = summed([left, right])
    for item in fields(expected):
        assert np.array_equal(np.asarray(getattr(total, item.name)), getattr(expected, item.name))
    with pytest.raises(MalformedReply, match="values for a layout"):
        unflatten(kind, np.append(a + b, 1.0), layout)


def test_a_masked_reply_is_uint64_words_and_a_readable_layout():
    payload = encode_reply(
        Kind.NEWTON, MaskedReply(np.arange(3, dtype=np.uint64), [["n", [], "int"]])
    )
    assert decode_masked(Kind.NEWTON, payload).layout == [["n", [], "int"]]
    with pytest.raises(MalformedReply, match="words"):
        decode_masked(Kind.NEWTON, Payload({"words": np.ones(3)}, payload.values))
    with pytest.raises(MalformedReply, match="layout"):
        decode_masked(Kind.NEWTON, Payload(payload.arrays, {"layout": "{not json"}))


def test_non_finite_numbers_and_wrong_types_are_malformed():
    terms = encode_reply(Kind.NEWTON, NewtonTerms(np.ones(3), np.eye(3), 1.0, 10))
    with pytest.raises(MalformedReply, match="non-finite"):
        decode_reply(
            Kind.NEWTON, Payload(terms.arrays | {"gradient": np.full(3, np.inf)}, terms.values)
        )
    with pytest.raises(MalformedReply, match="non-finite"):
        decode_reply(Kind.NEWTON, Payload(terms.arrays, terms.values | {"deviance": float("nan")}))
    with pytest.raises(MalformedReply, match="n"):
        decode_reply(Kind.NEWTON, Payload(terms.arrays, terms.values | {"n": "many"}))
    with pytest.raises(MalformedReply, match="should be a value"):
        decode_reply(Kind.NEWTON, Payload(terms.arrays | {"n": np.ones(2)}, terms.values))


def _pipeline(beta: float) -> PipelineParams:
    return PipelineParams(
        features=["a", "b"],
        selected=np.array([0, 1]),
        standardizer=Standardizer(mean=np.zeros(2), scale=np.ones(2)),
        beta=np.full(3, beta),
    )


def test_the_pipeline_goes_to_a_site_once_and_only_beta_travels_after():
    request = Request(_pipeline(0.0), Partition("kfold", 2))
    first, known = encode_request(request, ())
    second, _ = encode_request(Request(_pipeline(1.0), Partition("kfold", 2)), known)
    assert any(name.startswith("pipeline/") for name in first.arrays)
    assert not any(name.startswith("pipeline/") for name in second.arrays)
    assert second.size_bytes < first.size_bytes
    cache: dict = {}
    decode_request(first, cache)
    again = decode_request(second, cache)
    assert again.partition == Partition("kfold", 2)
    assert np.array_equal(again.pipeline.beta, np.ones(3))
    assert again.pipeline.features == ["a", "b"]
    assert np.array_equal(again.pipeline.standardizer.scale, np.ones(2))


def test_a_site_that_lost_its_cache_asks_for_the_pipeline_again():
    _, known = encode_request(Request(_pipeline(0.0), Partition("all")), ())
    second, _ = encode_request(Request(_pipeline(1.0), Partition("all")), known)
    with pytest.raises(PipelineUnknown):
        decode_request(second, {})


def test_a_bundle_carries_each_fit_with_its_own_pipeline_and_partition():
    parts = [
        Request(_pipeline(float(i)), Partition("kfold", i), values={"threshold": 0.1 * i})
        for i in range(3)
    ]
    payload, _ = encode_request(Request(parts=parts, arrays={"gamma": np.ones(2)}), ())
    decoded = decode_request(payload, {})
    assert [p.partition.fold for p in decoded.parts] == [0, 1, 2]
    assert [p.values["threshold"] for p in decoded.parts] == [0.0, 0.1, 0.2]
    assert np.array_equal(decoded.arrays["gamma"], np.ones(2))
    assert [float(p.pipeline.beta[0]) for p in decoded.parts] == [0.0, 1.0, 2.0]


def test_the_aggregator_mirrors_what_a_site_keeps_and_resends_what_it_dropped():
    state = RecordDict()
    cache, known = PipelineCache(state), ()
    pipelines = [_pipeline(0.0) for _ in range(PIPELINES_KEPT + 2)]
    for index, pipeline in enumerate(pipelines):
        pipelines[index] = PipelineParams(
            features=[f"f{index}", "b"], selected=pipeline.selected, beta=pipeline.beta
        )
        payload, known = encode_request(Request(pipelines[index], Partition("all")), known)
        decode_request(payload, cache)
    assert len(known) == PIPELINES_KEPT
    assert tuple(cache._order()) == known
    again, _ = encode_request(Request(pipelines[0], Partition("all")), known)
    assert any(name.startswith("pipeline/") for name in again.values)  # sent in full again
    assert decode_request(again, cache).pipeline.features == ["f0", "b"]
    recent, _ = encode_request(Request(pipelines[-1], Partition("all")), known)
    assert not any(name.startswith("pipeline/") for name in recent.values)
    assert decode_request(recent, cache).pipeline.features == [f"f{PIPELINES_KEPT + 1}", "b"]
