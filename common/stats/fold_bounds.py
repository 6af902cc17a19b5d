"""The fewest cases of a class that a fold's test part can hold over several sites, from
what each site's census says: the rule the aggregator applies before a fit, and each site
again before its share enters a total (docs/privacy.md 3).

A fold's training totals sit beside the same totals over the cases it was cut from (the
final fit's, or the outer fold's for an inner fold): their difference is that fold's test
part summed over every site. Each site deals every stratum (site x batch x class)
round-robin over the folds (`split.py`), so a class's count per fold follows from its
count at the site. A count the census suppressed counts as its least possible value ("<k"
as none, ">=k" as k), and a site of several batches, whose per-batch counts are not told,
as the fewest its class count allows; so the bound never exceeds the true count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedrad.common.config import StudyConfig
from fedrad.common.pipeline import Partition


@dataclass(frozen=True)
class SiteCounts:
    """What a site's census tells of its cases: counts per class as sent, and batches."""

    cases: dict[str, str]
    batches: int


@dataclass(frozen=True)
class ShortFold:
    """A test part that may hold fewer than k of a class: which, how few, outer or inner."""

    label: str
    held: int
    fold: int
    inner: bool


def short_fold(
    study: StudyConfig, sites: list[SiteCounts], parts: list[Partition], inner: bool
) -> ShortFold | None:
    """The first k-fold test part of a fit over `sites` (each with its partition in
    `parts`) that may hold fewer than k cases of a class: its outer fold and, when the
    model tunes on `inner` folds, each inner fold of its training part."""
    k, validation = study.federation.min_cell_size, study.validation
    if not sites:
        return None
    strata = [max(1, site.batches) for site in sites]
    for label in study.federation.classes:
        counts = [least(site.cases.get(label, "0"), k) for site in sites]
        if parts[0].scheme == "kfold":
            held = sum(
                held_least(n, b, validation.folds, part.fold)
                for n, b, part in zip(counts, strata, parts, strict=True)
            )
            if held < k:
                return ShortFold(label, held, parts[0].fold, inner=False)
        if not inner:
            continue
        training = [
            training_least(n, b, part, study)
            for n, b, part in zip(counts, strata, parts, strict=True)
        ]
        for fold in range(validation.inner_folds):
            held = sum(
                held_least(m, b, validation.inner_folds, fold)
                for m, b in zip(training, strata, strict=True)
            )
            if held < k:
                return ShortFold(label, held, fold, inner=True)
    return None


def least(count: str, k: int) -> int:
    """The fewest cases a census count may stand for."""
    if count.startswith("<"):
        return 0
    if count.startswith(">="):
        return k
    return int(count)


def _dealt(n: int, folds: int, fold: int) -> int:
    """Cases of a stratum of n that round-robin dealing puts in `fold`."""
    return n // folds + (fold < n % folds)


def held_least(n: int, strata: int, folds: int, fold: int) -> int:
    """The fewest of n cases, dealt per stratum, that fold `fold`'s test part holds."""
    if strata == 1:
        return _dealt(n, folds, fold)
    return max(0, math.ceil((n - strata * (folds - 1)) / folds))


def train_least(n: int, strata: int, folds: int, fold: int) -> int:
    """The fewest of n cases, dealt per stratum, that fold `fold`'s training part holds."""
    if strata == 1:
        return n - _dealt(n, folds, fold)
    return max(0, math.ceil((folds - 1) * (n - strata) / folds))


def training_least(n: int, strata: int, partition: Partition, study: StudyConfig) -> int:
    """The fewest of n cases that a fit's training part over `partition` holds."""
    if partition.scheme == "kfold":
        return train_least(n, strata, study.validation.folds, partition.fold)
    if partition.scheme == "holdout":  # round(fraction x stratum) of each stratum held out
        fraction = study.validation.holdout_fraction
        if strata == 1:
            return n - round(fraction * n)
        return max(0, math.ceil((1 - fraction) * n - strata / 2))
    return n if partition.scheme == "all" else 0
