"""What a site agrees to compute: the plan its own study config implies, nothing else.

The aggregator chooses requests, so a curious one could ask for partitions, model kinds or
values that single out cases (a test set of every case, a fold index past the last fold, a
threshold bisecting one score). A site derives the partitions, folds, inner folds, roles
and model kind of its study itself and checks every request against them and every value
the aggregator supplies (shapes, finite, in range) before it touches its data. A refusal
carries a reason code only; the detail stays in the site's own log.
"""

from __future__ import annotations

import logging

import numpy as np

from fedrad.common.config import StudyConfig
from fedrad.common.messages import Kind, Request
from fedrad.common.pipeline import Partition, PipelineParams

SCHEMES = {  # the partitions each validation design uses (its fits and the final one)
    "holdout": {"holdout"},
    "kfold": {"kfold", "all"},
    "leave-one-site-out": {"all", "unseen"},
    "single-site": {"all", "unseen"},
}
MODEL_KINDS = {  # the message kinds only some model kinds send
    Kind.NEWTON: {"ridge-logistic"},
    Kind.LASSO_ROUND: {"ridge-logistic", "lasso-logistic"},
    Kind.LOSS: {"lasso-logistic"},
    Kind.LAMBDA_MAX: {"lasso-logistic"},
    Kind.MLP_ROUND: {"mlp"},
}
ROUND_PARTS = {  # the kinds a LASSO_ROUND's parts may be: a ridge fit asks Newton terms,
    "ridge-logistic": {Kind.NEWTON},  # and when it tunes its penalty, held-out losses
    "lasso-logistic": {Kind.NEWTON, Kind.LOSS, Kind.LAMBDA_MAX},
}
MAX_ABS_PARAMETER = 1e6  # coefficients and weights beyond this are not a fit's


class Refused(Exception):
    """A request outside this site's plan; `code` is all the aggregator is told."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


# The extras each summed kind reads (a part of a LASSO_ROUND reads those of its own kind).
# Anything else is refused: an unread extra would make a released sum look like a new one
# to the rule against releasing one quantity among other sites.
EXTRAS: dict[Kind, set[str]] = {
    Kind.IMPUTATION: set(),
    Kind.COMBAT_OLS: {"combat.levels"},
    Kind.COMBAT_SSR: set(),
    Kind.COMBAT_BATCH_MOMENTS: {"combat.split"},
    Kind.SCREEN: {"centre.positives", "centre.negatives", "centre.clinical"},
    Kind.COMOMENTS: {"candidates", "centre.candidates"},
    Kind.NEWTON: {"kind"},
    Kind.LOSS: {"kind", "role"},
    Kind.LAMBDA_MAX: {"kind"},
    Kind.LASSO_ROUND: set(),
    Kind.MLP_ROUND: {"server-round", "proximal-mu"},  # a Flower strategy's round config
    Kind.CALIBRATION: {"gamma"},
}
ALWAYS = {"pipeline.digest"}  # and the release's own `secagg.*` values


def check(kind: Kind, request: Request, study: StudyConfig) -> None:
    """Refuse `request` unless the site's own study implies it."""
    wanted = MODEL_KINDS.get(kind)
    if wanted is not None and not wanted & set(study.model_kinds):
        raise Refused("kind-outside-plan", f"{kind} asked in a {study.model.kind} study")
    if kind is Kind.JOINT_SCORES:
        _check_joint(request, study)
    if kind is Kind.IMPUTATION and study.missing_values != "impute-mean":
        raise Refused("kind-outside-plan", f"{kind} asked in a study that does not impute")
    _check_extras(kind, request)
    if kind is Kind.LASSO_ROUND:
        if study.differential_privacy is not None:  # each step is its own noised release
            raise Refused("kind-outside-plan", "a shared round in a study with noise")
        _check_round_parts(request, study)
    for part in request.parts or [request]:
        if part.partition is not None:
            _check_partition(part.partition, study)
        role = part.values.get("role", "train")
        if role not in ("train", "test"):
            raise Refused("role-outside-plan", f"role {role!r}")
        if (
            role == "test"
            and kind not in (Kind.SCORES, Kind.SITE_METRICS, Kind.JOINT_SCORES)
            and (part.partition is None or part.partition.inner is None)
        ):
            raise Refused("role-outside-plan", "held-out sums only inside an inner fold")
        if part.pipeline is not None:
            _check_pipeline(part.pipeline, study)
            _check_imputation(kind, part.pipeline, study)
        if "threshold" in part.values:
            threshold = float(part.values["threshold"])
            if not 0.0 < threshold < 1.0:
                raise Refused("value-out-of-bounds", f"threshold {threshold}")
    if request.values.get("confusion", "per-fit") not in ("per-fit", "summed"):
        raise Refused("value-out-of-bounds", f"confusion {request.values['confusion']!r}")
    if "candidates" in request.arrays:
        n_features = len(request.pipeline.features) if request.pipeline is not None else 0
        candidates = np.asarray(request.arrays["candidates"])
        _check_indices(candidates, n_features, study.selection.candidates, "candidates")


def _check_extras(kind: Kind, request: Request) -> None:
    if kind not in EXTRAS:
        return
    checks = [(request, EXTRAS[kind])]
    for part in request.parts:
        try:
            part_kind = Kind(part.values["kind"]) if kind is Kind.LASSO_ROUND else None
        except (KeyError, ValueError):
            raise Refused("kind-outside-plan", f"{kind} part of no known kind") from None
        checks.append((part, EXTRAS.get(part_kind, set())))
    for part, allowed in checks:
        names = {*part.values, *part.arrays} - allowed - ALWAYS
        unread = sorted(name for name in names if not name.startswith("secagg."))
        if unread:
            raise Refused("value-outside-plan", f"{kind} request with extras {unread}")


def _check_joint(request: Request, study: StudyConfig) -> None:
    """A comparison's joint scores: fits in pairs (model a, model b) tested on the same
    partition, each naming a model kind of this site's own study, the two kinds distinct;
    nothing else asked."""
    parts = request.parts

    def extras(part: Request) -> set[str]:
        names = {*part.values, *part.arrays} - ALWAYS
        return {name for name in names if not name.startswith("secagg.")}

    if extras(request) or not parts or len(parts) % 2:
        raise Refused("value-outside-plan", "joint scores asked other than as pairs of fits")
    kinds = set()
    for first, second in zip(parts[::2], parts[1::2], strict=True):
        pair = [part.values.get("model") for part in (first, second)]
        outside = [kind for kind in pair if kind not in study.compared_models]
        if outside:
            raise Refused(
                "kind-outside-plan",
                f"joint scores of {outside} in a study of {list(study.compared_models)}",
            )
        if pair[0] == pair[1] or first.partition != second.partition:
            raise Refused("value-outside-plan", "a joint-scores pair of one kind or two partitions")
        if any(extras(part) != {"model"} for part in (first, second)):
            raise Refused("value-outside-plan", "a joint-scores part with extras")
        kinds.add(tuple(pair))
    if len(kinds) != 1:
        raise Refused("value-outside-plan", "joint scores of more than one pair of kinds")


def _check_round_parts(request: Request, study: StudyConfig) -> None:
    kinds = [kind for kind in study.model_kinds if kind in ROUND_PARTS]
    allowed = set().union(*(ROUND_PARTS[kind] for kind in kinds))
    held_out = "ridge-logistic" in kinds and study.tunes_penalty_of("ridge-logistic")
    for part in request.parts or [request]:
        if held_out and part.values.get("kind") == Kind.LOSS and part.values.get("role") == "test":
            continue
        if part.values.get("kind") not in allowed:
            raise Refused(
                "kind-outside-plan",
                f"a {part.values.get('kind')} part in a {'/'.join(kinds)} study's round",
            )


def _check_partition(partition: Partition, study: StudyConfig) -> None:
    validation = study.validation
    if partition.scheme not in SCHEMES[validation.scheme]:
        raise Refused(
            "partition-outside-plan",
            f"partition {partition.scheme!r} in a {validation.scheme} study",
        )
    folds = validation.folds if partition.scheme == "kfold" else 1
    if not 0 <= partition.fold < folds:
        raise Refused("partition-outside-plan", f"fold {partition.fold} of {folds}")
    if partition.inner is not None and (
        not study.tunes_any_penalty or not 0 <= partition.inner < validation.inner_folds
    ):
        raise Refused("partition-outside-plan", f"inner fold {partition.inner}")


def _check_pipeline(params: PipelineParams, study: StudyConfig) -> None:
    if params.selected is not None:
        _check_indices(
            np.asarray(params.selected),
            len(params.features),
            study.selection.max_features,
            "selected",
        )
    n_inputs = len(params.model_features)
    if params.standardizer is not None:
        scaler = params.standardizer
        if scaler.mean.shape != (n_inputs,) or scaler.scale.shape != (n_inputs,):
            raise Refused("value-out-of-bounds", "scaler shape differs from the model inputs")
        finite = np.all(np.isfinite(scaler.mean)) and np.all(np.isfinite(scaler.scale))
        if not finite or not np.all(scaler.scale > 0):  # radiomic means may be any size
            raise Refused("value-out-of-bounds", "scaler not finite or not positive")
    if params.beta is not None and np.shape(params.beta) != (n_inputs + 1,):
        raise Refused("value-out-of-bounds", f"beta of shape {np.shape(params.beta)}")
    # coefficients and weights act on standardized inputs: beyond the bound no fit made them
    for name, value in {"beta": params.beta, **(params.network or {})}.items():
        if value is None:
            continue
        array = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(array)) or np.any(np.abs(array) > MAX_ABS_PARAMETER):
            raise Refused("value-out-of-bounds", f"{name} not finite or beyond bounds")


def _check_imputation(kind: Kind, params: PipelineParams, study: StudyConfig) -> None:
    """Means to fill missing values with only in a study that imputes, where every pipeline
    past the imputation step carries them: one finite mean per feature."""
    means = params.imputation
    if study.missing_values != "impute-mean" or kind is Kind.IMPUTATION:
        if means is not None:
            raise Refused("value-outside-plan", f"imputation means in a {kind} request")
        return
    if means is None:
        raise Refused("value-outside-plan", f"a {kind} pipeline without imputation means")
    if np.shape(means) != (len(params.features),) or not np.all(np.isfinite(means)):
        raise Refused("value-out-of-bounds", f"imputation means of shape {np.shape(means)}")


def _check_indices(indices: np.ndarray, n_features: int, most: int, name: str) -> None:
    if (
        indices.ndim != 1
        or len(indices) > most
        or len(set(indices.tolist())) != len(indices)
        or np.any(indices < 0)
        or np.any(indices >= n_features)
    ):
        raise Refused("value-out-of-bounds", f"{name}: {len(indices)} indices")


def refusal(kind: Kind, log: logging.Logger, refused: Refused) -> str:
    """Log the detail here, at the site; return the code the aggregator may see."""
    log.warning("refused %s (%s): %s", kind, refused.code, refused)
    return refused.code
