"""Phase 3: distributed ComBat (docs/methods.md 2.1) from the sites' summed sufficient statistics,
and the per-feature batch effect before and after it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fedrad.common.config import StudyConfig
from fedrad.common.harmonization import combat
from fedrad.common.messages import Kind, SiteEffectReply
from fedrad.common.pipeline import CombatFit, Partition, PipelineParams
from fedrad.common.stats.moments import Moments, group_f_statistic, pool_moments
from fedrad.common.stats.principal_axes import PrincipalAxes
from fedrad.server.federation import Federation
from fedrad.server.phases.common import training_requests


def fit_combat(
    federation: Federation,
    study: StudyConfig,
    params: PipelineParams,
    nodes: list[int],
    partitions: dict[int, Partition],
    levels: tuple[str, ...] | None = None,
) -> PipelineParams:
    """The pooled ComBat model of the training parts: OLS from summed D'D and D'Y, the
    pooled variance from summed residuals, and batches that span sites from their moments."""
    if levels is None:
        levels = tuple(sorted({batch for n in nodes for batch in federation.sites[n].batches}))
    total = federation.total(
        Kind.COMBAT_OLS,
        training_requests(params, nodes, partitions, values={"combat.levels": list(levels)}),
    )
    if not total.counts.all():  # a batch with no training case in this fit, e.g. a fold
        trained = tuple(level for level, n in zip(levels, total.counts, strict=True) if n)
        return fit_combat(federation, study, params, nodes, partitions, trained)
    ols = combat.pooled_ols(total)
    provisional = replace(params, combat=CombatFit(ols, np.ones_like(ols.alpha), levels))
    ssr = federation.total(Kind.COMBAT_SSR, training_requests(provisional, nodes, partitions))
    fit = CombatFit(ols, combat.pooled_variance(ssr), levels)
    split = _shared_batches(federation, nodes, levels)
    if split:
        shared = _split_batch_effects(
            federation, study, replace(params, combat=fit), split, nodes, partitions
        )
        fit = replace(fit, shared=shared)
    return replace(params, combat=fit)


def _shared_batches(federation: Federation, nodes: list[int], levels: tuple[str, ...]):
    """Batches that more than one of the fit's sites holds, from their census: the sites
    must then estimate them together (the aggregator sees no site's own batch counts)."""
    holders = [set(federation.sites[node].batches) for node in nodes]
    return tuple(level for level in levels if sum(level in held for held in holders) > 1)


def _split_batch_effects(federation, study, params, split, nodes, partitions):
    """Empirical Bayes for batches that span sites, from their summed moments: the sites
    holding one batch each see only part of it (docs/methods.md 2.1, round 3)."""
    total = federation.total(
        Kind.COMBAT_BATCH_MOMENTS,
        training_requests(params, nodes, partitions, values={"combat.split": list(split)}),
    )
    settings = study.harmonization
    return combat.pooled_batch_effects(
        total,
        split,
        eb=settings.empirical_bayes,
        parametric=settings.parametric,
    )


def site_effects(
    federation: Federation,
    study: StudyConfig,
    params: PipelineParams,
    nodes: list[int],
    partitions: dict[int, Partition],
    axes: PrincipalAxes | None = None,
) -> dict:
    """Per-feature batch-effect F statistic of the training cases, before and after ComBat
    (batches are sites unless the study names a batch column), and, given the selection's
    pooled principal `axes`, each batch's centroid on them before and after."""
    replies: dict[int, SiteEffectReply] = federation.ask(
        Kind.SITE_EFFECT, training_requests(params, nodes, partitions)
    )
    summary = {"method": study.harmonization.method}
    for stage, name in (("raw", "before"), ("harmonized", "after")):
        by_batch: dict[str, list[Moments]] = {}
        for reply in replies.values():
            means, m2s = getattr(reply, f"{stage}_mean"), getattr(reply, f"{stage}_m2")
            for batch, n, mean, m2 in zip(reply.batches, reply.counts, means, m2s, strict=True):
                by_batch.setdefault(str(batch), []).append(Moments(int(n), mean, m2))
        groups = [pool_moments(parts) for _, parts in sorted(by_batch.items())]
        if len(groups) < 2:
            return summary | {"note": "site effects need at least two batches"}
        if axes is not None:
            columns = [params.features.index(name) for name in axes.features]
            centroids = axes.project(np.array([group.mean[columns] for group in groups]))
            summary.setdefault("centroids", {"explained": axes.explained.tolist()})[name] = {
                batch: list(map(float, xy))
                for batch, xy in zip(sorted(by_batch), centroids, strict=True)
            }
        statistic, p_value = group_f_statistic(groups)
        summary[name] = {
            "median_f": float(np.nanmedian(statistic)),
            "share_of_features_with_site_effect_p_lt_0.05": float(np.mean(p_value < 0.05)),
        }
        summary.setdefault("per_feature_f", {})[name] = dict(
            zip(params.features, map(float, statistic), strict=True)
        )
    return summary
