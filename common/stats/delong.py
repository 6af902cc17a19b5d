"""DeLong's test between two models' AUCs on the same test cases, from summed joint
histograms (docs/methods.md 4.5).

Comparing two AUCs on the same cases needs their covariance, which one histogram per model
cannot give: it needs, per class, how the two models' scores fall together. A site sends
the joint per-class histogram of the two models' scores on a public grid (`site_joint`);
their total over sites (`JointHistograms.__add__`) is the pooled joint histogram, from
which `pooled_delong` computes both AUCs and DeLong's variance of their difference, as
DeLong, DeLong and Clarke-Pearson (1988) do from the pooled scores binned to the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from fedrad.common.stats.metrics import score_edges


@dataclass(frozen=True)
class JointHistograms:
    """Per class, counts of cases by (bin of model a's score, bin of model b's score)."""

    positives: np.ndarray
    negatives: np.ndarray

    def __add__(self, other: JointHistograms) -> JointHistograms:
        return JointHistograms(self.positives + other.positives, self.negatives + other.negatives)


def site_joint(
    y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, bins: int
) -> JointHistograms:
    """A site's joint histograms of two models' scores on its test cases."""
    y = np.asarray(y_true).astype(bool)
    edges = score_edges(bins)

    def joint(mask: np.ndarray) -> np.ndarray:
        counts, _, _ = np.histogram2d(scores_a[mask], scores_b[mask], bins=[edges, edges])
        return counts

    return JointHistograms(joint(y), joint(~y))


@dataclass(frozen=True)
class DeLongComparison:
    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    standard_error: float
    p_value: float  # two-sided, of no difference

    def confidence_interval(self, level: float = 0.95) -> tuple[float, float]:
        half = ndtri(0.5 + level / 2) * self.standard_error
        return (self.difference - half, self.difference + half)


def _placements(h1: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per bin: a positive's share of negatives below it (ties half), a negative's share of
    positives above it (ties half), and the AUC."""
    n1, n0 = h1.sum(), h0.sum()
    positive = (np.cumsum(h0) - h0 + 0.5 * h0) / n0
    negative = (n1 - np.cumsum(h1) + 0.5 * h1) / n1
    return positive, negative, float(np.sum(h1 * positive) / n1)


def pooled_delong(total: JointHistograms) -> DeLongComparison:
    """Both AUCs and DeLong's test of their difference, from the summed joint histograms."""
    pos, neg = np.asarray(total.positives, float), np.asarray(total.negatives, float)
    n1, n0 = pos.sum(), neg.sum()
    if n1 < 2 or n0 < 2:
        nan = float("nan")
        return DeLongComparison(nan, nan, nan, nan, nan)
    v10_a, v01_a, auc_a = _placements(pos.sum(axis=1), neg.sum(axis=1))
    v10_b, v01_b, auc_b = _placements(pos.sum(axis=0), neg.sum(axis=0))

    def covariance(joint: np.ndarray, first: np.ndarray, second: np.ndarray, n: float):
        """2x2 covariance over a class's cases of their placements under a and b."""
        a, b = first - auc_a, second - auc_b
        cross = a @ joint @ b
        return np.array([[joint.sum(axis=1) @ a**2, cross], [cross, joint.sum(axis=0) @ b**2]]) / (
            n - 1
        )

    s10 = covariance(pos, v10_a, v10_b, n1)
    s01 = covariance(neg, v01_a, v01_b, n0)
    contrast = np.array([1.0, -1.0])
    variance = float(contrast @ s10 @ contrast / n1 + contrast @ s01 @ contrast / n0)
    difference = auc_a - auc_b
    error = float(np.sqrt(max(variance, 0.0)))
    p_value = float(2 * ndtr(-abs(difference) / error)) if error > 0 else float("nan")
    return DeLongComparison(auc_a, auc_b, difference, error, p_value)
