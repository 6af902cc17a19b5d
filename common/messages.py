"""The wire contract: every message kind, its request and its reply, one codec for both sides.

A request carries the pipeline fitted so far (`PipelineParams`) by digest: its fixed part
(features, ComBat, selection, scaler) travels once per site and is cached there (in the
node's Flower context), the per-round part (beta, network weights) every time. A reply is
a flat dataclass of arrays and plain values; `decode_reply` is the one validator every
reply passes (present, typed, finite), and the aggregator sees nothing it has not passed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedrad.common.harmonization.combat import BatchMoments, OLSSums, SSRSums
from fedrad.common.models import mlp
from fedrad.common.models.lasso import LambdaMaxSums
from fedrad.common.models.logistic import NewtonTerms
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.imputation import ImputationSums
from fedrad.common.stats.selection import CrossSums


class Kind(StrEnum):
    """Every request the aggregator may send a site."""

    CENSUS = "census"
    IMPUTATION = "imputation"
    COMBAT_OLS = "combat-ols"
    COMBAT_SSR = "combat-ssr"
    COMBAT_BATCH_MOMENTS = "combat-batch-moments"
    SCREEN = "screen"
    COMOMENTS = "comoments"
    SITE_EFFECT = "site-effect"
    NEWTON = "newton"
    LOSS = "loss"
    LAMBDA_MAX = "lambda-max"
    LASSO_ROUND = "lasso-round"
    MLP_ROUND = "mlp-round"
    SCORES = "scores"
    CALIBRATION = "calibration"
    SITE_METRICS = "site-metrics"
    JOINT_SCORES = "joint-scores"
    PERSIST = "persist"
    SECAGG_KEYS = "secagg-keys"
    SECAGG_PEERS = "secagg-peers"
    SECAGG_REVEAL = "secagg-reveal"


# Flower routes a message by its type; a strategy's training round is plain "train".
MESSAGE_TYPES: dict[Kind, str] = {
    Kind.CENSUS: "query.census",
    Kind.IMPUTATION: "query.imputation",
    Kind.COMBAT_OLS: "query.combat_ols",
    Kind.COMBAT_SSR: "query.combat_ssr",
    Kind.COMBAT_BATCH_MOMENTS: "query.combat_batch_moments",
    Kind.SCREEN: "query.screen",
    Kind.COMOMENTS: "query.comoments",
    Kind.SITE_EFFECT: "query.site_effect",
    Kind.NEWTON: "train.newton",
    Kind.LOSS: "train.loss",
    Kind.LAMBDA_MAX: "train.lambda_max",
    Kind.LASSO_ROUND: "train.lasso_round",
    Kind.MLP_ROUND: "train",
    Kind.SCORES: "evaluate.scores",
    Kind.CALIBRATION: "evaluate.calibration",
    Kind.SITE_METRICS: "evaluate.site_metrics",
    Kind.JOINT_SCORES: "evaluate.joint_scores",
    Kind.PERSIST: "query.persist",
    Kind.SECAGG_KEYS: "query.secagg_keys",
    Kind.SECAGG_PEERS: "query.secagg_peers",
    Kind.SECAGG_REVEAL: "query.secagg_reveal",
}
# Kinds whose replies the aggregator only ever needs summed over sites: under secure
# aggregation each site sends them masked, and only their total is ever unmasked.
SUMMED: frozenset[Kind] = frozenset(
    {
        Kind.IMPUTATION,
        Kind.COMBAT_OLS,
        Kind.COMBAT_SSR,
        Kind.COMBAT_BATCH_MOMENTS,
        Kind.SCREEN,
        Kind.COMOMENTS,
        Kind.NEWTON,
        Kind.LOSS,
        Kind.LAMBDA_MAX,
        Kind.LASSO_ROUND,
        Kind.MLP_ROUND,
        Kind.SCORES,
        Kind.CALIBRATION,
        Kind.JOINT_SCORES,
    }
)


class MalformedReply(ValueError):
    """A reply that lacks a field, has the wrong type, or holds a non-finite number."""


@dataclass
class Payload:
    """A message body, free of Flower types: named arrays and named plain values."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """Bytes of content (array data plus values as JSON): what crosses the wire, roughly."""
        arrays = sum(np.asarray(value).nbytes for value in self.arrays.values())
        return arrays + len(json.dumps(self.values, default=str))


# -- replies -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CensusReply:
    site: str
    extraction_hash: str
    study_hash: str
    features: list
    batches: list
    cases: list  # per study class, in its order: an exact count or "<k"
    versions: list  # "name=version" of the extractors the table was made with
    sequences_missing: list = field(default_factory=list)


@dataclass(frozen=True)
class ScreenReply:
    """Per-class `CentredSums` of the harmonized training features, and those of the
    clinical inputs (empty without any), about the centres the request names."""

    positives_n: int
    positives_s1: np.ndarray
    positives_s2: np.ndarray
    negatives_n: int
    negatives_s1: np.ndarray
    negatives_s2: np.ndarray
    clinical_s1: np.ndarray
    clinical_s2: np.ndarray


@dataclass(frozen=True)
class SiteEffectReply:
    """Per-batch moments of the training features before and after harmonization."""

    batches: list
    counts: list
    raw_mean: np.ndarray
    raw_m2: np.ndarray
    harmonized_mean: np.ndarray
    harmonized_m2: np.ndarray


@dataclass(frozen=True)
class LossReply:
    loss: float
    n: int


@dataclass(frozen=True)
class LassoRoundReply:
    """A site's answers to every part of one L1 round (docs/methods.md 3.4): each part is a
    NEWTON, LOSS or LAMBDA_MAX request (its `kind` value) and is answered with the very
    aggregate that request's reply would carry, refused as it would be (a refused part
    refuses the round). Answers follow the order of the parts of their kind; arrays are
    laid end to end, flattened, as parts may be of fits with different p = 1 + features."""

    gradient: np.ndarray  # p per Newton part
    hessian: np.ndarray  # p x p per Newton part, row-major
    deviance: np.ndarray  # one per Newton part
    terms_n: np.ndarray  # one per Newton part
    loss: np.ndarray  # one per loss part
    loss_n: np.ndarray  # one per loss part
    lambda_n: np.ndarray  # one per lambda-max part
    sum_y: np.ndarray  # one per lambda-max part
    sum_x: np.ndarray  # p - 1 per lambda-max part
    sum_xy: np.ndarray  # p - 1 per lambda-max part


@dataclass(frozen=True)
class ScoresReply:
    """A site's test sums over the fits of the request (SUMMED: only totals are read):
    per-class counts of its scores on the public grid (`histogram_bins`), confusion counts
    (rows of tp, fn, tn, fp: one per fit, or one summed over them, as the request says)
    and calibration sums (rows sum_p, sum_y, count per tenth of [0, 1])."""

    positives: np.ndarray
    negatives: np.ndarray
    confusion: np.ndarray
    calibration: np.ndarray


@dataclass(frozen=True)
class JointScoresReply:
    """A site's test counts for a comparison of two models (SUMMED: only totals are read):
    per class, its test cases of every fit of the request by (bin of model a's score, bin
    of model b's score) on the public joint grid (`config.JOINT_BINS` per score)."""

    positives: np.ndarray
    negatives: np.ndarray


@dataclass(frozen=True)
class SiteMetricsReply:
    """A site's own figures over its test cases, as it may release them alone: its AUC
    rounded, and each rate rounded to a public step wide enough to hide every count
    (`metrics.released_rate`), or absent (a cell below k, or too few cases to hide one)."""

    auc: float
    sensitivity: float | None = None
    sensitivity_step: float | None = None
    specificity: float | None = None
    specificity_step: float | None = None


@dataclass(frozen=True)
class MlpRoundReply:
    """A Flower strategy's training reply: the site's weights after its local epochs."""

    weights: dict
    num_examples: int
    train_loss: float


@dataclass(frozen=True)
class MlpRoundSums:
    """An MLP round's reply as a summed quantity (under secure aggregation): the site's
    weights after its local epochs times its number of training cases (`mlp.flat` order),
    that number, and its training loss times it. The total over sites divided by the total
    number is FedAvg's weighted average of the weights and of the loss."""

    weights: np.ndarray
    num_examples: int
    train_loss: float

    @classmethod
    def of(cls, reply: MlpRoundReply) -> MlpRoundSums:
        n = reply.num_examples
        return cls(n * mlp.flat(reply.weights), n, n * reply.train_loss)

    def mean(self, like: dict[str, np.ndarray]) -> MlpRoundReply:
        """The weighted mean these sums stand for, as one reply with the arrays of `like`."""
        n = self.num_examples
        return MlpRoundReply(mlp.shaped(self.weights / n, like), n, self.train_loss / n)


@dataclass(frozen=True)
class Empty:
    """Nothing leaves the site (it kept its local artifacts)."""


@dataclass(frozen=True)
class KeysReply:
    """A site's exchange key for this study and its census counts, each signed by its
    identity key (raw bytes): the counts let every other site check fold test parts."""

    public_key: np.ndarray  # 32 uint8
    signature: np.ndarray  # 64 uint8
    identity: np.ndarray  # 32 uint8: the identity key that signed (checked against the pin)
    cases: list  # its census counts per study class, as the census sent them
    batches: int  # its number of batches
    counts_signature: np.ndarray  # 64 uint8: the identity's signature over the two above


@dataclass(frozen=True)
class RevealReply:
    """A survivor's self seed, and its pairwise seed with each dropped peer (in `peers` order)."""

    self_seed: np.ndarray  # 32 uint8
    pairwise: np.ndarray  # (dropped, 32) uint8
    peers: list = field(default_factory=list)


@dataclass(frozen=True)
class MaskedReply:
    """A SUMMED reply under secure aggregation: fixed-point words, masked; `layout` names each
    numeric field and its shape, so the unmasked total decodes to the kind's reply."""

    words: np.ndarray  # uint64
    layout: list
    # the site's signature on the release's survivor set if every site answers: the only
    # set it will ever reveal for (a release with a site missing is abandoned unrevealed)
    survivors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    # the site's signature that its share alone meets the rules (`secagg.consent`), or empty
    consent: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    # the site's signature on these words for that survivor set (`verified_total`), so a
    # peer handed them by the aggregator knows they are this site's
    words_signature: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))


REPLIES: dict[Kind, type] = {
    Kind.CENSUS: CensusReply,
    Kind.IMPUTATION: ImputationSums,
    Kind.COMBAT_OLS: OLSSums,
    Kind.COMBAT_SSR: SSRSums,
    Kind.COMBAT_BATCH_MOMENTS: BatchMoments,
    Kind.SCREEN: ScreenReply,
    Kind.COMOMENTS: CrossSums,
    Kind.SITE_EFFECT: SiteEffectReply,
    Kind.NEWTON: NewtonTerms,
    Kind.LOSS: LossReply,
    Kind.LAMBDA_MAX: LambdaMaxSums,
    Kind.LASSO_ROUND: LassoRoundReply,
    Kind.MLP_ROUND: MlpRoundReply,
    Kind.SCORES: ScoresReply,
    Kind.CALIBRATION: NewtonTerms,
    Kind.SITE_METRICS: SiteMetricsReply,
    Kind.JOINT_SCORES: JointScoresReply,
    Kind.PERSIST: Empty,
    Kind.SECAGG_KEYS: KeysReply,
    Kind.SECAGG_PEERS: Empty,
    Kind.SECAGG_REVEAL: RevealReply,
}
# The reply of each SUMMED kind as its total reads: the kind's reply, but for an MLP round,
# whose per-site reply is the form Flower strategies read (a dict of arrays).
TOTALS: dict[Kind, type] = {kind: REPLIES[kind] for kind in SUMMED} | {Kind.MLP_ROUND: MlpRoundSums}
SKIPPED = "skipped"  # a reply value: the site sits this request out, and says why
REFUSED = "refused"  # a reply value: the request is outside the site's plan (a reason code)
SITE_ERROR = "error"  # a reply value: the site failed; what happened is in its own log
PIPELINE_UNKNOWN = "pipeline-unknown"  # a reply value: send me the pipeline in full
# Fixed pipelines a site keeps, newest last; the aggregator mirrors the same list per site,
# so it knows what each holds (the site's state travels with every message: keep it small).
PIPELINES_KEPT = 8


def encode_reply(kind: Kind, reply: Any) -> Payload:
    if isinstance(reply, MaskedReply) and kind in SUMMED:
        return Payload(
            arrays={
                "words": reply.words,
                "survivors": reply.survivors,
                "consent": reply.consent,
                "words-signature": reply.words_signature,
            },
            values={"layout": json.dumps(reply.layout)},
        )
    if kind is Kind.MLP_ROUND:
        return Payload(
            arrays=dict(reply.weights),
            values={"num-examples": reply.num_examples, "train-loss": reply.train_loss},
        )
    if type(reply) is not REPLIES[kind]:
        raise TypeError(f"a {kind} reply is a {REPLIES[kind].__name__}, not {type(reply)}")
    payload = Payload()
    for item in fields(reply):
        value = getattr(reply, item.name)
        if isinstance(value, np.ndarray):
            payload.arrays[item.name] = value
        elif value is not None:
            payload.values[item.name] = value
    return payload


def decode_reply(kind: Kind, payload: Payload) -> Any:
    """The reply of `kind`, checked: every field present with its type, every number finite."""
    if kind is Kind.MLP_ROUND:
        _require_finite("weights", *payload.arrays.values())
        try:
            examples = int(payload.values["num-examples"])
            loss = float(payload.values["train-loss"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedReply(f"{kind} reply lacks its example count or loss") from exc
        _require_finite("train-loss", np.array(loss))
        return MlpRoundReply(dict(payload.arrays), examples, loss)
    return _decoded(kind, REPLIES[kind], payload)


def _decoded(kind: Kind, cls: type, payload: Payload) -> Any:
    """A `cls` from the payload's fields, each present (or defaulted), typed and finite."""
    values = {}
    for item in fields(cls):
        name, expected = item.name, str(item.type)
        if name in payload.arrays:
            array = payload.arrays[name]
            if "ndarray" not in expected and "Array" not in expected:
                raise MalformedReply(f"{kind} reply: {name} should be a value, not an array")
            _require_finite(name, array)
            values[name] = array
        elif name in payload.values:
            values[name] = _coerce(kind, name, expected, payload.values[name])
        elif _has_default(item):
            continue
        else:
            raise MalformedReply(f"{kind} reply lacks {name}")
    return cls(**values)


def _is_array(declared: str) -> bool:
    return "ndarray" in declared or "Array" in declared


def _has_default(item) -> bool:
    return item.default is not MISSING or item.default_factory is not MISSING


def _coerce(kind: Kind, name: str, expected: str, value):
    if "ndarray" in expected or "Array" in expected:
        raise MalformedReply(f"{kind} reply: {name} should be an array")
    converters = {"int": int, "float": float, "list": list, "str": str}
    convert = next((f for prefix, f in converters.items() if expected.startswith(prefix)), None)
    if convert is None:
        return value
    try:
        converted = convert(value)
    except (TypeError, ValueError) as exc:
        raise MalformedReply(f"{kind} reply: {name} is not a {expected}") from exc
    if convert is float and not math.isfinite(converted):
        raise MalformedReply(f"{kind} reply: non-finite values in {name}")
    return converted


def _require_finite(name: str, *arrays: np.ndarray) -> None:
    for array in arrays:
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            raise MalformedReply(f"non-finite values in {name}")
        if array.dtype.kind not in "fciub":
            raise MalformedReply(f"{name} is not numeric")


# -- totals ------------------------------------------------------------------------------------
def summed(replies: Iterable[Any]) -> Any:
    """The field-wise sum of replies of one SUMMED kind: what the aggregator may know of them."""
    total = None
    for reply in replies:
        if total is None:
            total = reply
            continue
        total = type(reply)(
            **{
                item.name: getattr(total, item.name) + getattr(reply, item.name)
                for item in fields(reply)
            }
        )
    if total is None:
        raise ValueError("no site replied")
    return total


def flatten(reply: Any) -> tuple[np.ndarray, list]:
    """A SUMMED reply as one float vector and its layout ([field, shape, "int"|"float"]...),
    the form secure aggregation masks; `unflatten` reads the total back."""
    parts, layout = [], []
    for item in fields(reply):
        value = np.asarray(getattr(reply, item.name))
        integral = value.dtype.kind in "iub"
        parts.append(value.astype(np.float64).ravel())
        layout.append([item.name, list(value.shape), "int" if integral else "float"])
    return np.concatenate(parts) if parts else np.zeros(0), layout


def unflatten(kind: Kind, vector: np.ndarray, layout: list) -> Any:
    """The total of `kind` (`TOTALS`) whose flattened form is `vector`: checked like any reply."""
    cls = TOTALS[kind]
    names = [item.name for item in fields(cls)]
    try:
        declared = [
            (str(name), tuple(int(n) for n in shape), str(dtype)) for name, shape, dtype in layout
        ]
    except (TypeError, ValueError) as exc:
        raise MalformedReply(f"{kind} total: unreadable layout") from exc
    if [name for name, _, _ in declared] != names:
        raise MalformedReply(
            f"{kind} total: layout names {[n for n, _, _ in declared]}, not {names}"
        )
    sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape, _ in declared]
    if sum(sizes) != vector.size:
        raise MalformedReply(f"{kind} total: {vector.size} values for a layout of {sum(sizes)}")
    arrays = {item.name for item in fields(cls) if _is_array(str(item.type))}
    payload, offset = Payload(), 0
    for (name, shape, dtype), size in zip(declared, sizes, strict=True):
        value = vector[offset : offset + size].reshape(shape)
        offset += size
        if dtype == "int":
            value = np.rint(value).astype(np.int64)
        if name in arrays:
            payload.arrays[name] = value
        else:
            payload.values[name] = value.item()
    return _decoded(kind, cls, payload)


def decode_masked(kind: Kind, payload: Payload) -> MaskedReply:
    """A masked reply, checked: uint64 words and a layout (the total is checked once unmasked)."""
    words, layout = payload.arrays.get("words"), payload.values.get("layout")
    if words is None or layout is None:
        raise MalformedReply(f"masked {kind} reply lacks its words or layout")
    if words.dtype != np.uint64 or words.ndim != 1:
        raise MalformedReply(f"masked {kind} reply: words are {words.dtype} {words.shape}")
    try:
        empty = np.zeros(0, dtype=np.uint8)
        survivors = payload.arrays.get("survivors", empty).astype(np.uint8)
        consent = payload.arrays.get("consent", empty).astype(np.uint8)
        signed = payload.arrays.get("words-signature", empty).astype(np.uint8)
        return MaskedReply(words, list(json.loads(str(layout))), survivors, consent, signed)
    except (TypeError, ValueError) as exc:
        raise MalformedReply(f"masked {kind} reply: unreadable layout") from exc


# -- requests ----------------------------------------------------------------------------------
@dataclass
class Request:
    """What the aggregator asks of one site: a pipeline over a partition, plus extras."""

    pipeline: PipelineParams | None = None
    partition: Partition | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    parts: list[Request] = field(default_factory=list)  # several fits in one message


def pipeline_digest(stage: Payload) -> str:
    """Content hash of a pipeline's fixed part: equal digests, equal pipelines."""
    digest = hashlib.sha256(json.dumps(stage.values, sort_keys=True).encode())
    for name in sorted(stage.arrays):
        array = np.ascontiguousarray(stage.arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


def split_pipeline(params: PipelineParams) -> tuple[Payload, Payload]:
    """(fixed part, per-round part) of a pipeline's payload: beta and weights change every
    Newton iteration or strategy round, the rest once per phase."""
    full = Payload(*params.to_fields())
    moving = {
        name: value
        for name, value in full.arrays.items()
        if name == "beta" or name.startswith("network.")
    }
    fixed = {name: value for name, value in full.arrays.items() if name not in moving}
    return Payload(fixed, full.values), Payload(moving)


def encode_request(request: Request, known: tuple[str, ...]) -> tuple[Payload, tuple[str, ...]]:
    """The request's payload, with the fixed pipeline only where its digest is not in
    `known` (what this site holds, oldest first); returns it and what the site will hold."""
    payload, held = Payload(dict(request.arrays), dict(request.values)), tuple(known)
    if request.parts:
        payload.values["bundle.size"] = len(request.parts)
        for index, part in enumerate(request.parts):
            encoded, held = encode_request(part, held)
            payload.arrays |= {f"{index}/{k}": v for k, v in encoded.arrays.items()}
            payload.values |= {f"{index}/{k}": v for k, v in encoded.values.items()}
        return payload, held
    if request.partition is not None:
        payload.values |= request.partition.to_values()
    if request.pipeline is not None:
        fixed, moving = split_pipeline(request.pipeline)
        digest = pipeline_digest(fixed)
        payload.values["pipeline.digest"] = digest
        payload.arrays |= moving.arrays
        if digest not in held:
            payload.arrays |= {f"pipeline/{k}": v for k, v in fixed.arrays.items()}
            payload.values |= {f"pipeline/{k}": v for k, v in fixed.values.items()}
            held = kept(held, digest)
    return payload, held


def quantity_digests(kind: Kind, request: Request) -> list[str]:
    """Each quantity `request` asks a site to compute, as a digest that is the same on both
    sides of the wire whatever release or bundle carries it: its pipeline in full, its
    partition and extras, without the release's own `secagg.*` values."""
    digests = []
    for part in request.parts or [request]:
        values = {
            key: value
            for key, value in part.values.items()
            if not key.startswith("secagg.") and key != "pipeline.digest"
        }
        arrays = {key: value for key, value in part.arrays.items() if not key.startswith("secagg.")}
        payload, _ = encode_request(Request(part.pipeline, part.partition, arrays, values), ())
        digests.append(f"{kind}/{pipeline_digest(payload)}")
    return digests


def kept(held: tuple[str, ...], digest: str) -> tuple[str, ...]:
    """What a site holds after it is sent `digest` in full: the newest PIPELINES_KEPT."""
    return (*(d for d in held if d != digest), digest)[-PIPELINES_KEPT:]


class PipelineUnknown(LookupError):
    """The site holds no pipeline of this digest (a restarted process): resend in full."""


def decode_request(payload: Payload, cache: dict[str, Payload]) -> Request:
    """A site's view of a request; fixed pipeline parts are looked up in (and added to)
    `cache`, keyed by digest."""
    values = payload.values
    if "bundle.size" in values:
        parts = [Payload() for _ in range(int(values["bundle.size"]))]
        rest = Payload()
        for source, target in ((payload.arrays, "arrays"), (values, "values")):
            for key, value in source.items():
                index, _, name = key.partition("/")
                if name and index.isdigit():
                    getattr(parts[int(index)], target)[name] = value
                elif key != "bundle.size":
                    getattr(rest, target)[key] = value
        return Request(
            arrays=rest.arrays,
            values=rest.values,
            parts=[decode_request(part, cache) for part in parts],
        )
    own = Payload(
        {k: v for k, v in payload.arrays.items() if not k.startswith("pipeline/")},
        {k: v for k, v in values.items() if not k.startswith("pipeline")},
    )
    request = Request(arrays=own.arrays, values=own.values)
    if "partition.scheme" in values:
        request.partition = Partition.from_values(values)
        for key in ("partition.scheme", "partition.fold", "partition.inner"):
            request.values.pop(key, None)
    if "pipeline.digest" in values:
        digest = str(values["pipeline.digest"])
        if any(key.startswith("pipeline/") for key in values):
            cache[digest] = Payload(
                {
                    k.removeprefix("pipeline/"): v
                    for k, v in payload.arrays.items()
                    if k.startswith("pipeline/")
                },
                {
                    k.removeprefix("pipeline/"): v
                    for k, v in values.items()
                    if k.startswith("pipeline/")
                },
            )
        if digest not in cache:
            raise PipelineUnknown(digest)
        fixed = cache[digest]
        moving = {
            k: request.arrays.pop(k)
            for k in list(request.arrays)
            if k == "beta" or k.startswith("network.")
        }
        request.pipeline = PipelineParams.from_fields(fixed.arrays | moving, fixed.values)
        request.values["pipeline.digest"] = digest
    return request


# -- Flower records ----------------------------------------------------------------------------
def to_record(payload: Payload, kind: Kind | None = None) -> RecordDict:
    """A payload as Flower records; an MLP round reply in the shape Flower strategies read
    (`arrays` + `metrics` with `num-examples`)."""
    arrays = {name: Array(np.ascontiguousarray(value)) for name, value in payload.arrays.items()}
    if kind is Kind.MLP_ROUND and "num-examples" in payload.values:
        return RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(payload.values)})
    return RecordDict({"arrays": ArrayRecord(arrays), "values": ConfigRecord(dict(payload.values))})


def from_record(content: RecordDict) -> Payload:
    arrays = content["arrays"] if "arrays" in content else ArrayRecord()
    values: dict = {}
    for name in ("values", "metrics", "config"):  # ours; a strategy's reply; its request
        if name in content:
            values |= {key: _plain(value) for key, value in content[name].items()}
    return Payload(arrays={name: array.numpy() for name, array in arrays.items()}, values=values)


def _plain(value):
    return list(value) if isinstance(value, list | tuple) else value


def payload_to_bytes(payload: Payload) -> bytes:
    """A payload as one bytes value, for a ConfigRecord (Flower strategies carry a single
    ArrayRecord of weights, so the pipeline travels in their config)."""
    buffer = io.BytesIO()
    values = np.frombuffer(json.dumps(payload.values).encode(), dtype=np.uint8)
    np.savez(buffer, **payload.arrays, __values__=values)
    return buffer.getvalue()


def payload_from_bytes(blob: bytes) -> Payload:
    with np.load(io.BytesIO(blob), allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files if name != "__values__"}
        values = json.loads(stored["__values__"].tobytes().decode())
    return Payload(arrays=arrays, values=values)
