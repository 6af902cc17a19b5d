"""Phase 4: near-constant filter and Welch screening from per-class moments, then redundancy
removal from the pooled correlation of the best candidates (docs/methods.md 3.1-3.2)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import clinical_input_names
from fedrad.common.messages import Kind, ScreenReply
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Moments, pool_moments
from fedrad.common.stats.selection import (
    drop_redundant,
    non_constant_mask,
    pool_comoments,
    welch_t,
)
from fedrad.server.federation import Federation
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

    def clinical_present(reply: ScreenReply) -> str | None:
        if inputs and reply.clinical_mean is None:
            return "its screening reply lacks the clinical input moments"
        return None

    replies = federation.ask(
        Kind.SCREEN, training_requests(params, nodes, partitions), clinical_present
    )
    positives = [Moments(r.positives_n, r.positives_mean, r.positives_m2) for r in replies.values()]
    negatives = [Moments(r.negatives_n, r.negatives_mean, r.negatives_m2) for r in replies.values()]
    pooled_pos, pooled_neg = pool_moments(positives), pool_moments(negatives)
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
    comoments = federation.ask(
        Kind.COMOMENTS,
        training_requests(
            params, nodes, partitions, arrays={"candidates": candidates.astype(np.int64)}
        ),
    )
    correlation = pool_comoments(list(comoments.values())).correlation()
    kept = drop_redundant(
        correlation,
        score[candidates],
        threshold=settings.redundancy_threshold,
        max_features=settings.max_features,
    )
    selected = np.sort(candidates[np.asarray(kept, dtype=int)])
    moments = Moments(everything.n, everything.mean[selected], everything.m2[selected])
    if inputs:
        pooled_clinical = pool_moments(
            [
                Moments(r.positives_n + r.negatives_n, r.clinical_mean, r.clinical_m2)
                for r in replies.values()
            ]
        )
        moments = Moments(
            moments.n,
            np.concatenate([moments.mean, pooled_clinical.mean]),
            np.concatenate([moments.m2, pooled_clinical.m2]),
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
    }
    return replace(params, selected=selected), selection, moments
