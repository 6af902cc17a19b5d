"""Federated univariate screening and redundancy removal (docs/methods.md 3.1, 3.2).

Every function here takes either what one site computes from its own rows (the
`*.of` constructors and `class_sums`) or sums of those over sites. Nothing
needs a case-level row at the server, and the same code runs on pooled data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import stdtr

from fedrad.common.stats.moments import CentredSums, Moments


def non_constant_mask(
    moments: Moments, min_cv: float = 1e-6, min_variance: float = 0.0
) -> np.ndarray:
    """True for features to keep: pooled sd > min_cv * |pooled mean| and variance > min_variance.

    The relative rule drops features whose spread is round-off relative to their
    magnitude (a constant 1e6 stored with float32 noise), which ComBat and the
    standardizer cannot use (docs/methods.md 1.4, 5). It is the coefficient of variation
    sd/|mean| written without the division, so zero-mean features are kept whenever
    their variance is positive, and a zero variance is always dropped. Variances are
    ddof=0, as in `Standardizer`.
    """
    variance = moments.variance(ddof=0)
    return (np.sqrt(variance) > min_cv * np.abs(moments.mean)) & (variance > min_variance)


def class_sums(
    x: np.ndarray, y: np.ndarray, centres: tuple[np.ndarray, np.ndarray]
) -> tuple[CentredSums, CentredSums]:
    """A site's per-class sums (positives, negatives) about each class's centre; an absent
    class has n = 0 and zero sums."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    return CentredSums.of(x[y], centres[0]), CentredSums.of(x[~y], centres[1])


@dataclass(frozen=True)
class WelchT:
    """Per-feature Welch statistic t and its Welch-Satterthwaite degrees of freedom."""

    t: np.ndarray
    df: np.ndarray

    def p_value(self) -> np.ndarray:
        """Two-sided p-value, as `scipy.stats.ttest_ind(equal_var=False)`."""
        return 2.0 * stdtr(self.df, -np.abs(self.t))


def welch_t(positives: Moments, negatives: Moments) -> WelchT:
    """Welch t of positives minus negatives from pooled per-class moments (docs/methods.md 3.2)."""
    var1 = positives.variance(ddof=1) / positives.n
    var0 = negatives.variance(ddof=1) / negatives.n
    t = (positives.mean - negatives.mean) / np.sqrt(var1 + var0)
    df = (var1 + var0) ** 2 / (var1**2 / (positives.n - 1) + var0**2 / (negatives.n - 1))
    return WelchT(t=t, df=df)


@dataclass(frozen=True)
class CrossSums:
    """n, S1 = sum(x - c) and the cross-products S2 = sum (x - c)(x - c)^T about a centre c
    every site is told (the pooled mean, from screening): summable, so sites may send them
    masked, and exact since nothing large cancels."""

    n: int
    s1: np.ndarray
    s2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, centre: np.ndarray) -> CrossSums:
        """A site's sums over the rows of `x` (n x G)."""
        centred = np.asarray(x, dtype=np.float64) - centre
        return cls(n=centred.shape[0], s1=centred.sum(axis=0), s2=centred.T @ centred)

    def __add__(self, other: CrossSums) -> CrossSums:
        return CrossSums(self.n + other.n, self.s1 + other.s1, self.s2 + other.s2)

    def comoments(self, centre: np.ndarray) -> Comoments:
        offset = self.s1 / self.n
        return Comoments(self.n, centre + offset, self.s2 - np.outer(self.s1, offset))


@dataclass(frozen=True)
class Comoments:
    """Count, mean and centred cross-product matrix C = sum (x - mean)(x - mean)^T."""

    n: int
    mean: np.ndarray
    cross: np.ndarray

    def covariance(self, ddof: int = 1) -> np.ndarray:
        return self.cross / (self.n - ddof)

    def correlation(self) -> np.ndarray:
        """Pearson correlation; a constant feature gets 0 off the diagonal (numpy gives NaN)."""
        scale = np.sqrt(np.clip(np.diag(self.cross), 0.0, None))
        inverse = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
        correlation = np.clip(self.cross * np.outer(inverse, inverse), -1.0, 1.0)
        np.fill_diagonal(correlation, 1.0)
        return correlation


def drop_redundant(
    correlation: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.9,
    max_features: int | None = None,
) -> np.ndarray:
    """Indices of kept features, best score first: greedy redundancy removal.

    Features are visited by decreasing score (ties: lower index first, so pass
    features in a fixed name order; NaN scores last) and one is kept unless its
    |correlation| with an already kept feature exceeds `threshold`. Of a group of
    near-duplicates this keeps the best screened one, whatever the input order.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    absolute = np.abs(correlation)
    kept: list[int] = []
    for j in order:
        if max_features is not None and len(kept) == max_features:
            break
        if not kept or absolute[j, kept].max() <= threshold:
            kept.append(int(j))
    return np.array(kept, dtype=np.intp)
