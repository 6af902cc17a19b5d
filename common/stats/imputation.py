"""Mean imputation of missing feature values with the pooled training mean (docs/methods.md
2.6): a missing value of a feature is replaced by the mean of that feature over the fit's
training cases that have it, at every site together.

Each site sends, per feature, the count and the sum of its observed training values; the
sums add up over sites (under secure aggregation only their total is read), and their
ratio is the mean a central analysis of the pooled training cases would take. The same
means then fill the missing values of the fit's training and test cases alike, so a test
case never lends its own fold anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, eq=False)
class ImputationSums:
    """Site -> server: per feature, how many training cases have a value, and their sum."""

    observed: NDArray[np.int64]  # (G,)
    s1: NDArray[np.float64]  # (G,)

    def __add__(self, other: ImputationSums) -> ImputationSums:
        return ImputationSums(self.observed + other.observed, self.s1 + other.s1)


def site_imputation_sums(x: np.ndarray) -> ImputationSums:
    """A site's share over its training rows `x` (n x G, NaN where a value is missing)."""
    x = np.asarray(x, dtype=np.float64)
    present = ~np.isnan(x)
    # exactly rounded: radiomic values near 1e3-1e6 summed naively lose the last digits
    # of the mean, and secure aggregation adds the site sums with 2^-52 resolution
    s1 = np.array([math.fsum(column[kept]) for column, kept in zip(x.T, present.T, strict=True)])
    return ImputationSums(observed=present.sum(axis=0).astype(np.int64), s1=s1.reshape(-1))


def pooled_means(total: ImputationSums) -> tuple[np.ndarray, np.ndarray]:
    """(the mean of each feature over its observed training values, which features have
    none): a feature observed in no training case has no mean and must leave the fit."""
    unobserved = total.observed == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(unobserved, np.nan, total.s1 / np.maximum(total.observed, 1))
    return means, unobserved


def impute(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """`x` (n x G) with every missing value (NaN) replaced by its feature's mean."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isnan(x), means, x)
