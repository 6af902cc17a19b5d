"""The aggregator's bound on a fold's test part (and on the training part an inner fold is
cut from) never exceeds the true count: checked against the sites' own split (`fold_ids`,
`holdout_mask`) over random strata, with one batch a site (the bound is then exact) and
with several (the aggregator knows only the class total)."""

from __future__ import annotations

import numpy as np
import pytest

from fedrad.common.config import StudyConfig
from fedrad.common.pipeline import Partition
from fedrad.common.stats.fold_bounds import held_least, train_least, training_least
from fedrad.common.stats.split import fold_ids, holdout_mask


def _split(sizes: list[int], folds: int, seed: int) -> np.ndarray:
    """Fold of each case of one class at a site, its batches of `sizes` cases."""
    strata = [f"site|batch{b}|HGG" for b, n in enumerate(sizes) for _ in range(n)]
    return fold_ids([f"case{i}" for i in range(len(strata))], strata, folds, seed)


@pytest.mark.parametrize("batches", [1, 2, 4])
def test_the_bound_on_a_folds_test_and_training_part_never_exceeds_the_count(batches):
    rng = np.random.default_rng(batches)
    for trial in range(200):
        sizes = list(rng.integers(0, 15, size=batches))
        folds = int(rng.integers(2, 7))
        fold_of = _split(sizes, folds, seed=trial)
        n = sum(sizes)
        for fold in range(folds):
            held = int(np.sum(fold_of == fold))
            least = held_least(n, batches, folds, fold)
            assert least <= held
            assert train_least(n, batches, folds, fold) <= n - held
            if batches == 1:  # one stratum: the bound is the count
                assert least == held


@pytest.mark.parametrize("batches", [1, 3])
def test_the_bound_on_an_inner_folds_test_part_never_exceeds_the_count(batches):
    rng = np.random.default_rng(10 + batches)
    for trial in range(100):
        sizes = list(rng.integers(0, 20, size=batches))
        folds, inner_folds = int(rng.integers(2, 6)), int(rng.integers(2, 5))
        strata = np.array([f"site|batch{b}|HGG" for b, n in enumerate(sizes) for _ in range(n)])
        ids = np.array([f"case{i}" for i in range(len(strata))])
        fold_of = fold_ids(list(ids), list(strata), folds, trial)
        n = sum(sizes)
        for fold in range(folds):
            members = fold_of != fold  # the outer fold's training part, as a site splits it
            inner = fold_ids(list(ids[members]), list(strata[members]), inner_folds, trial + 1)
            training = train_least(n, batches, folds, fold)
            for part in range(inner_folds):
                least = held_least(training, batches, inner_folds, part)
                assert least <= np.sum(inner == part)
                if batches == 1:
                    assert least == np.sum(inner == part)


@pytest.mark.parametrize("batches", [1, 3])
def test_the_bound_on_a_holdout_fits_training_part_never_exceeds_the_count(batches):
    rng = np.random.default_rng(20 + batches)
    for trial in range(100):
        fraction = float(rng.uniform(0.1, 0.5))
        study = StudyConfig(validation={"scheme": "holdout", "holdout_fraction": fraction})
        sizes = list(rng.integers(0, 20, size=batches))
        strata = [f"site|batch{b}|HGG" for b, n in enumerate(sizes) for _ in range(n)]
        ids = [f"case{i}" for i in range(len(strata))]
        training = int(np.sum(~holdout_mask(ids, strata, fraction, trial)))
        least = training_least(sum(sizes), batches, Partition("holdout"), study)
        assert least <= training
        if batches == 1:
            assert least == training
