"""Phase 4: near-constant filter and Welch screening from per-class moments, then redundancy
removal from the pooled correlation of the best candidates (docs/methods.md 3.1-3.2)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import clinical_input_names
from fedrad.common.messages import Kind, summed
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import CentredSums, Moments
from fedrad.common.stats.principal_axes import PrincipalAxes
from fedrad.common.stats.selection import (
    drop_redundant,
    non_constant_mask,
    welch_t,
)
from fedrad.server.federation import Federation, StudyCannotRun
from fedrad.server.phases.common import training_requests


def select(
    federation: Federation,
    study: StudyConfig,
    params: PipelineParams,
    nodes: list[int],
    partitions: dict[int, Partition],
) -> tuple[PipelineParams, dict, Moments]:
    """(pipeline with the selected features, the selection's summary, the pooled moments
    of the model inputs for scaling)."""
    settings, inputs = study.selection, study.model.clinical_inputs
    (pooled_pos, pooled_neg, clinical), smallest = _class_moments(
        federation, study, params, nodes, partitions
    )
    everything = pooled_pos.combine(pooled_neg)
    keep = non_constant_mask(everything, min_cv=settings.min_coefficient_of_variation)
    if settings.screen == "welch":
        score = np.abs(welch_t(pooled_pos, pooled_neg).t)
    else:
        score = np.zeros(len(params.features))
    # Rounded so that features equal up to float noise (e.g. GLCM SumAverage is twice
    # JointAverage) rank by name order whatever order the sites' sums were added in.
    score = np.where(keep, np.round(np.nan_to_num(score, nan=0.0), 9), -np.inf)
    order = np.argsort(-score, kind="stable")
    candidates = order[: min(settings.candidates, int(keep.sum()))]
    centre = everything.mean[candidates]
    cross = federation.total(
        Kind.COMOMENTS,
        training_requests(
            params,
            nodes,
            partitions,
            arrays={"candidates": candidates.astype(np.int64), "centre.candidates": centre},
        ),
    )
    comoments = cross.comoments(centre)
    correlation = comoments.correlation()
    kept = drop_redundant(
        correlation,
        score[candidates],
        threshold=settings.redundancy_threshold,
        max_features=_most_features(federation, study, smallest, nodes, len(candidates)),
    )
    selected = np.sort(candidates[np.asarray(kept, dtype=int)])
    moments = Moments(everything.n, everything.mean[selected], everything.m2[selected])
    if inputs:
        moments = Moments(
            moments.n,
            np.concatenate([moments.mean, clinical.mean]),
            np.concatenate([moments.m2, clinical.m2]),
        )
        params = replace(
            params, clinical_inputs=tuple(clinical_input_names(inputs, study.clinical))
        )
    selection = {
        "training_prevalence": pooled_pos.n / everything.n,
        "n_features": len(params.features),
        "non_constant": int(keep.sum()),
        "kept": [params.features[i] for i in selected],
        "welch_t": {params.features[i]: float(score[i]) for i in selected},
        "principal_axes": PrincipalAxes.of(
            correlation,
            comoments.mean,
            np.sqrt(np.diag(comoments.covariance())),
            [params.features[i] for i in candidates],
        ).as_json(),
    }
    return replace(params, selected=selected), selection, moments


def _class_moments(
    federation, study, params, nodes, partitions
) -> tuple[tuple[Moments, Moments, Moments], int]:
    """Pooled moments of the positives, the negatives and the clinical inputs, in two
    totals: about zero (which gives the pooled means), then about those means. The class
    rule holds for the total: fewer than k training cases of a class stop the study."""
    requests = training_requests(params, nodes, partitions)
    if federation.secure is not None:
        first = federation.total(Kind.SCREEN, requests)
        smallest = first.positives_n + first.negatives_n  # the model's sums leave as a total
    else:  # each site's model sums leave alone, held to the rule on its own cases
        replies = federation.ask(Kind.SCREEN, requests)
        first = summed(replies.values())
        smallest = min(r.positives_n + r.negatives_n for r in replies.values())
    k = max(2, study.federation.min_cell_size)
    if min(first.positives_n, first.negatives_n) < k:
        raise StudyCannotRun(
            f"the training cases of {', '.join(federation.label(n) for n in nodes)} hold "
            f"fewer than {k} cases of a class (federation.min_cell_size)"
        )
    n = first.positives_n + first.negatives_n
    centres = {
        "centre.positives": first.positives_s1 / first.positives_n,
        "centre.negatives": first.negatives_s1 / first.negatives_n,
        "centre.clinical": first.clinical_s1 / n,
    }
    second = federation.total(
        Kind.SCREEN, training_requests(params, nodes, partitions, arrays=centres)
    )
    parts = [
        CentredSums(second.positives_n, second.positives_s1, second.positives_s2),
        CentredSums(second.negatives_n, second.negatives_s1, second.negatives_s2),
        CentredSums(n, second.clinical_s1, second.clinical_s2),
    ]
    moments = tuple(
        part.moments(centre) for part, centre in zip(parts, centres.values(), strict=True)
    )
    return moments, smallest


def _most_features(federation, study, n_training: int, nodes, candidates: int) -> int:
    """The study's feature limit, lowered so the model's parameters (intercept, features,
    clinical inputs) stay within federation.max_parameter_ratio of the training cases whose
    sums leave together: the total under secure aggregation, else the smallest site's."""
    clinical = len(clinical_input_names(study.model.clinical_inputs, study.clinical))
    allowed = math.floor(study.federation.max_parameter_ratio * n_training) - 1 - clinical
    if allowed < 1:
        raise StudyCannotRun(
            f"the training cases of {', '.join(federation.label(n) for n in nodes)} "
            f"({n_training}) allow no feature within federation.max_parameter_ratio "
            f"({study.federation.max_parameter_ratio:g} parameters per case)"
        )
    if allowed < min(study.selection.max_features, candidates):
        federation.log(
            f"selection: at most {allowed} features for {n_training} training cases "
            f"(federation.max_parameter_ratio {study.federation.max_parameter_ratio:g})"
        )
    return min(study.selection.max_features, allowed)
