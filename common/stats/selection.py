"""Federated univariate screening and redundancy removal (docs/methods.md 3.1, 3.2).

Every function here takes either what one site computes from its own rows (the
`*.of` constructors and `class_moments`) or sums of those over sites. Nothing
needs a case-level row at the server, and the same code runs on pooled data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from fedrad.common.stats.moments import Moments, pool_moments


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


def class_moments(x: np.ndarray, y: np.ndarray) -> tuple[Moments, Moments]:
    """A site's per-class moments (positives, negatives); an absent class has n = 0."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    return _moments_or_empty(x[y]), _moments_or_empty(x[~y])


def _moments_or_empty(rows: np.ndarray) -> Moments:
    if len(rows) == 0:
        zeros = np.zeros(rows.shape[1])
        return Moments(n=0, mean=zeros, m2=zeros)
    return Moments.of(rows)


@dataclass(frozen=True)
class WelchT:
    """Per-feature Welch statistic t and its Welch-Satterthwaite degrees of freedom."""

    t: np.ndarray
    df: np.ndarray

    def p_value(self) -> np.ndarray:
        """Two-sided p-value, as `scipy.stats.ttest_ind(equal_var=False)`."""
        return 2.0 * student_t.sf(np.abs(self.t), self.df)


def welch_t(positives: Moments, negatives: Moments) -> WelchT:
    """Welch t of positives minus negatives from pooled per-class moments (docs/methods.md 3.2)."""
    var1 = positives.variance(ddof=1) / positives.n
    var0 = negatives.variance(ddof=1) / negatives.n
    t = (positives.mean - negatives.mean) / np.sqrt(var1 + var0)
    df = (var1 + var0) ** 2 / (var1**2 / (positives.n - 1) + var0**2 / (negatives.n - 1))
    return WelchT(t=t, df=df)


@dataclass(frozen=True)
class Comoments:
    """Count, mean and centred cross-product matrix C = sum (x - mean)(x - mean)^T."""

    n: int
    mean: np.ndarray
    cross: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Comoments:
        """A site's comoments of the rows of `x` (n x G), centred at the site mean.

        The mean gets one refinement pass: at a 1e6 offset the summation error of
        a plain mean, times the site offset delta in Chan's update, would dominate
        the pooled matrix's error.
        """
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        mean += (x - mean).mean(axis=0)
        centred = x - mean
        return cls(n=x.shape[0], mean=mean, cross=centred.T @ centred)

    def combine(self, other: Comoments) -> Comoments:
        """Chan's pairwise update, C = C_a + C_b + delta delta^T n_a n_b / n
        (docs/methods.md 3.1)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Comoments(
            n=n,
            mean=self.mean + delta * (other.n / n),
            cross=self.cross + other.cross + np.outer(delta, delta) * (self.n * other.n / n),
        )

    def covariance(self, ddof: int = 1) -> np.ndarray:
        return self.cross / (self.n - ddof)

    def correlation(self) -> np.ndarray:
        """Pearson correlation; a constant feature gets 0 off the diagonal (numpy gives NaN)."""
        scale = np.sqrt(np.diag(self.cross))
        inverse = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
        correlation = np.clip(self.cross * np.outer(inverse, inverse), -1.0, 1.0)
        np.fill_diagonal(correlation, 1.0)
        return correlation


def pool_comoments(parts: Iterable[Comoments]) -> Comoments:
    """Combine site comoments; raises if there are none."""
    return pool_moments(parts)


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
