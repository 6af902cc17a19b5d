"""A later MLP round's weights, checked against the total they were averaged from.

The step bound (`mlp_plan`) only slows trap weights: an aggregator may steer the global
weights toward them a bounded step per round. Under secure aggregation with an averaging
strategy a site leaves it no choice at all: with round r it is relayed round r-1's
release (every survivor's signed masked words and the reveals), recomputes the total from
them, derives the global weights as the server's FedAvg does, and serves the round only if
its weights are exactly those. The release must be the one this site itself masked for
that fit's round r-1 (its tag and its own words, remembered in its Flower context state).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from fedrad.client.mlp_plan import FITS_KEPT, fit_of
from fedrad.client.secure_aggregation import SecAggRefused, release_tag
from fedrad.common import relayed_release
from fedrad.common.config import StudyConfig
from fedrad.common.messages import (
    Kind,
    MalformedReply,
    MaskedReply,
    MlpRoundSums,
    Request,
    flatten,
    unflatten,
)
from fedrad.common.models import mlp
from fedrad.common.secagg import EncodingError, FixedPoint, Reveal, SecAggError
from fedrad.common.secagg.verified_total import verified_total

_SENT = "mlp:sent"  # fit -> [round, release tag fields, SHA-256 of this site's masked words]
UNVERIFIED = "weights-unverified"  # the round cannot be checked against a release
NOT_THE_TOTAL = "weights-not-the-total"  # it can, and its weights are not that release's


def applies(study: StudyConfig) -> bool:
    """Whether this study's rounds are verified: masked, and averaged as FedAvg does."""
    return (
        study.federation.secure_aggregation
        and study.model.strategy in relayed_release.VERIFIED_STRATEGIES
    )


def remember(state: RecordDict, request: Request, masked: MaskedReply) -> None:
    """What this site masked for a fit's round: the release's tag and its words' digest."""
    sent = _sent(state)
    fit = fit_of(request)
    sent.pop(fit, None)
    sent[fit] = [
        int(request.values["server-round"]),
        json.loads(str(request.values["secagg.tag"])),
        _digest(masked.words),
    ]
    state[_SENT] = ConfigRecord({"fits": json.dumps(dict(list(sent.items())[-FITS_KEPT:]))})


def check(
    request: Request,
    study: StudyConfig,
    state: RecordDict,
    site: str,
    identities: dict[str, Ed25519PublicKey],
) -> None:
    """Refuse a round past the first whose weights are not FedAvg's mean of the total of the
    release relayed with it (which must be this site's own previous round of the fit)."""
    try:
        server_round = int(request.values["server-round"])
    except (KeyError, TypeError, ValueError):
        return  # `mlp_plan` refuses a round without its number
    if server_round < 2:
        return  # round 1's weights are the study's own (`mlp_plan`)
    try:
        relayed = relayed_release.read(request)
    except ValueError as exc:
        raise SecAggRefused(UNVERIFIED, str(exc)) from None
    if relayed is None:
        raise SecAggRefused(
            UNVERIFIED, f"round {server_round} came without the release it was averaged from"
        )
    _check_own(relayed, _sent(state).get(fit_of(request)), server_round, site)
    weights = (request.pipeline.network if request.pipeline is not None else None) or {}
    derived = _derived(relayed, study, identities, weights)
    if set(derived) != set(weights) or not all(
        np.array_equal(derived[name], weights[name]) for name in derived
    ):
        gap = max(
            (float(np.max(np.abs(derived[n] - weights[n]))) for n in derived if n in weights),
            default=float("inf"),
        )
        raise SecAggRefused(
            NOT_THE_TOTAL,
            f"round {server_round} weights differ (by up to {gap:.6g}) from FedAvg's mean of "
            f"round {server_round - 1}'s total, recomputed from its relayed release",
        )


def _check_own(relayed, sent: list | None, server_round: int, site: str) -> None:
    """The relayed release is the one this site masked its previous round of the fit for."""
    if sent is None or sent[0] != server_round - 1:
        raise SecAggRefused(
            UNVERIFIED,
            f"round {server_round} of a fit whose round {server_round - 1} this site did not mask",
        )
    own = relayed.words.get(site)
    if relayed.tag != sent[1] or own is None or _digest(own) != sent[2]:
        raise SecAggRefused(
            UNVERIFIED,
            f"the release relayed with round {server_round} is not the one this site masked "
            f"round {server_round - 1} for (tag {relayed.tag}, its own words "
            f"{'absent' if own is None else 'altered'} or of another release)",
        )


def _derived(
    relayed, study: StudyConfig, identities: dict[str, Ed25519PublicKey], like: dict
) -> dict[str, np.ndarray]:
    """The global weights the server's FedAvg derives from the relayed release's total."""
    tag = release_tag(study, {"secagg.tag": json.dumps(relayed.tag)})
    reveals = [
        Reveal(s, tag, relayed.self_seeds[s], relayed.pairwise[s]) for s in relayed.survivors
    ]
    size = mlp.flat(like).size if like else 0
    _, layout = flatten(MlpRoundSums(np.zeros(size), 0, 0.0))
    try:
        words = verified_total(
            tag,
            relayed.survivors,
            relayed.dropped,
            relayed.words,
            relayed.signatures,
            identities,
            reveals,
        )
        total = unflatten(Kind.MLP_ROUND, FixedPoint(len(relayed.survivors)).decode(words), layout)
    except (SecAggError, EncodingError, MalformedReply) as exc:
        raise SecAggRefused(UNVERIFIED, str(exc)) from None
    if total.num_examples <= 0:
        raise SecAggRefused(UNVERIFIED, "the relayed release's total holds no training cases")
    mean = total.mean(like)
    # the server hands FedAvg this mean as one reply; FedAvg's own aggregation of it
    reply = RecordDict(
        {
            "arrays": ArrayRecord({name: Array(value) for name, value in mean.weights.items()}),
            "metrics": MetricRecord({"num-examples": mean.num_examples}),
        }
    )
    aggregated = aggregate_arrayrecords([reply], "num-examples")
    return {name: array.numpy() for name, array in aggregated.items()}


def _sent(state: RecordDict) -> dict[str, list]:
    if _SENT not in state:
        return {}
    return json.loads(str(state[_SENT]["fits"]))


def _digest(words: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(words, dtype="<u8").tobytes()).hexdigest()
