"""Every fold's test part holds at least k of each class, over all its sites together.

Under secure aggregation a site cannot see a fold's test part summed over every site, only
its own share, so the aggregator checks the bound (`common/stats/fold_bounds.py`) from
what the census told it before any sum of the fold is asked; each site checks it again
from the signed census counts relayed to it (`client/fold_check.py`), so an aggregator
that skips this rule gets no total of the fold.
"""

from __future__ import annotations

from fedrad.common.config import StudyConfig
from fedrad.common.pipeline import Partition
from fedrad.common.stats.fold_bounds import SiteCounts, held_least, least, short_fold
from fedrad.server.federation import Federation, StudyCannotRun


def check_test_parts(
    federation: Federation,
    study: StudyConfig,
    nodes: list[int],
    partitions: dict[int, Partition],
    inner: bool,
) -> None:
    """Stop the study, with one sentence, if a k-fold test part of this fit (its outer fold
    and, when the model tunes on `inner` folds, each inner fold of its training part) might
    hold fewer than k cases of a class over `nodes`."""
    if not nodes:  # nothing is summed: other rules say why
        return
    sites = [census_counts(federation, node) for node in nodes]
    short = short_fold(study, sites, [partitions[node] for node in nodes], inner)
    if short is None:
        return
    k, names = study.federation.min_cell_size, ", ".join(map(federation.label, nodes))
    which = f"inner fold {short.fold + 1}" if short.inner else f"fold {short.fold + 1}"
    cut_from = "fit's" if short.inner else "whole's"
    fix = (
        f"set validation.inner_folds lower, or a fixed {_penalty_key(study)}"
        if short.inner
        else _fewer_folds(sites, short.label, study)
    )
    raise StudyCannotRun(
        f"{which}'s test part may hold as few as {short.held} {short.label} cases over "
        f"{names}, fewer than {k} (federation.min_cell_size): its training totals would "
        f"differ from the {cut_from} by them; {fix}"
    )


def census_counts(federation: Federation, node: int) -> SiteCounts:
    """What a site's census told the aggregator of its classes and batches."""
    site = federation.sites[node]
    return SiteCounts(dict(site.cases), len(site.batches))


def _fewer_folds(sites: list[SiteCounts], label: str, study: StudyConfig) -> str:
    """What validation.folds would let every fold's test part hold k of this class."""
    k = study.federation.min_cell_size
    counts = [least(site.cases.get(label, "0"), k) for site in sites]
    strata = [max(1, site.batches) for site in sites]
    for fewer in range(study.validation.folds - 1, 1, -1):
        if all(
            sum(held_least(n, b, fewer, fold) for n, b in zip(counts, strata, strict=True)) >= k
            for fold in range(fewer)
        ):
            return f"set validation.folds to {fewer} or fewer"
    return "no k-fold split of these sites can hold k of it in every fold (use holdout)"


def _penalty_key(study: StudyConfig) -> str:
    """The setting that fixes the penalty the inner folds would choose."""
    return "model.lasso_lambda" if study.model.kind == "lasso-logistic" else "model.ridge_lambda"
