"""Phase 2b, under `missing_values: impute-mean`: each fit's pooled training mean of every
feature, from the sites' summed counts and sums of their observed training values
(docs/methods.md 2.6), before harmonization; the sites fill missing values with it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fedrad.common.messages import Kind
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.imputation import pooled_means
from fedrad.server.federation import Federation, StudyCannotRun
from fedrad.server.phases.common import training_requests

_NAMES_SHOWN = 5


def fit_imputation(
    federation: Federation,
    params: PipelineParams,
    nodes: list[int],
    partitions: dict[int, Partition],
    tag: str,
) -> PipelineParams:
    """The pipeline with the fit's imputation means; a feature no training case of any site
    has a value of leaves the fit (said so), as it has no mean to fill it with."""
    total = federation.total(Kind.IMPUTATION, training_requests(params, nodes, partitions))
    means, unobserved = pooled_means(total)
    if unobserved.all():
        raise StudyCannotRun(
            f"{tag}: no feature has a value in any training case of "
            f"{', '.join(federation.label(n) for n in nodes)}"
        )
    if unobserved.any():
        gone = [name for name, out in zip(params.features, unobserved, strict=True) if out]
        shown = ", ".join(gone[:_NAMES_SHOWN]) + (
            f" and {len(gone) - _NAMES_SHOWN} more" if len(gone) > _NAMES_SHOWN else ""
        )
        federation.log(
            f"{tag}: {len(gone)} feature(s) have no value in any training case at any site, "
            f"so no mean to impute: left out of the fit ({shown})"
        )
    kept = np.flatnonzero(~unobserved)
    return replace(params, features=[params.features[i] for i in kept], imputation=means[kept])
