"""Every fold's test part holds at least k of each class, over all its sites together.

A fold's training totals sit beside the same totals over the cases it was cut from (the
final fit's, or the outer fold's for an inner fold): their difference is that fold's test
part summed over every site. Under secure aggregation a site cannot see that sum, only its
own share, so the aggregator checks it before any sum of the fold is asked, from what the
census told it: each site deals every stratum (site x batch x class) round-robin over the
folds (`common/stats/split.py`), so a class's count per fold follows from its count at the
site. A count the census suppressed counts as its least possible value ("<k" as none,
">=k" as k), and a site of several batches, whose per-batch counts the aggregator does not
know, as the fewest its class count allows; so the bound never exceeds the true count.
"""

from __future__ import annotations

import math

from fedrad.common.config import StudyConfig
from fedrad.common.pipeline import Partition
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
    k, validation = study.federation.min_cell_size, study.validation
    if not nodes:  # nothing is summed: other rules say why
        return
    for label in study.federation.classes:
        counts = [_least(federation.sites[node].cases.get(label, "0"), k) for node in nodes]
        strata = [max(1, len(federation.sites[node].batches)) for node in nodes]
        parts = [partitions[node] for node in nodes]
        outer = [
            (part.fold, validation.folds) if part.scheme == "kfold" else None for part in parts
        ]
        if outer[0] is not None:
            held = sum(
                _test_least(n, b, folds, fold)
                for n, b, (fold, folds) in zip(counts, strata, outer, strict=True)
            )
            if held < k:
                raise StudyCannotRun(
                    f"fold {outer[0][0] + 1}'s test part may hold as few as {held} {label} "
                    f"cases over {_sites(federation, nodes)}, fewer than {k} "
                    "(federation.min_cell_size): its training totals would differ from the "
                    f"whole's by them; {_fewer_folds(counts, strata, validation.folds, k)}"
                )
        if not inner:
            continue
        training = [
            _training_least(n, b, part, study)
            for n, b, part in zip(counts, strata, parts, strict=True)
        ]
        for fold in range(validation.inner_folds):
            held = sum(
                _test_least(m, b, validation.inner_folds, fold)
                for m, b in zip(training, strata, strict=True)
            )
            if held < k:
                raise StudyCannotRun(
                    f"inner fold {fold + 1}'s test part may hold as few as {held} {label} "
                    f"cases over {_sites(federation, nodes)}, fewer than {k} "
                    "(federation.min_cell_size): its training totals would differ from the "
                    "fit's by them; set validation.inner_folds lower, or a fixed "
                    f"{_penalty_key(study)}"
                )


def _least(count: str, k: int) -> int:
    """The fewest cases a census count may stand for."""
    if count.startswith("<"):
        return 0
    if count.startswith(">="):
        return k
    return int(count)


def _dealt(n: int, folds: int, fold: int) -> int:
    """Cases of a stratum of n that round-robin dealing puts in `fold`."""
    return n // folds + (fold < n % folds)


def _test_least(n: int, strata: int, folds: int, fold: int) -> int:
    """The fewest of n cases, dealt per stratum, that fold `fold`'s test part holds."""
    if strata == 1:
        return _dealt(n, folds, fold)
    return max(0, math.ceil((n - strata * (folds - 1)) / folds))


def _train_least(n: int, strata: int, folds: int, fold: int) -> int:
    """The fewest of n cases, dealt per stratum, that fold `fold`'s training part holds."""
    if strata == 1:
        return n - _dealt(n, folds, fold)
    return max(0, math.ceil((folds - 1) * (n - strata) / folds))


def _training_least(n: int, strata: int, partition: Partition, study: StudyConfig) -> int:
    """The fewest of n cases that a fit's training part over `partition` holds."""
    if partition.scheme == "kfold":
        return _train_least(n, strata, study.validation.folds, partition.fold)
    if partition.scheme == "holdout":  # round(fraction x stratum) of each stratum held out
        fraction = study.validation.holdout_fraction
        if strata == 1:
            return n - round(fraction * n)
        return max(0, math.ceil((1 - fraction) * n - strata / 2))
    return n if partition.scheme == "all" else 0


def _fewer_folds(counts: list[int], strata: list[int], folds: int, k: int) -> str:
    """What validation.folds would let every fold's test part hold k of this class."""
    for fewer in range(folds - 1, 1, -1):
        if all(
            sum(_test_least(n, b, fewer, fold) for n, b in zip(counts, strata, strict=True)) >= k
            for fold in range(fewer)
        ):
            return f"set validation.folds to {fewer} or fewer"
    return "no k-fold split of these sites can hold k of it in every fold (use holdout)"


def _sites(federation: Federation, nodes: list[int]) -> str:
    return ", ".join(federation.label(node) for node in nodes)


def _penalty_key(study: StudyConfig) -> str:
    """The setting that fixes the penalty the inner folds would choose."""
    return "model.lasso_lambda" if study.model.kind == "lasso-logistic" else "model.ridge_lambda"
