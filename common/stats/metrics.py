"""Pooled evaluation from aggregates a site may share (docs/methods.md 4).

Sites send confusion counts at a fixed threshold and per-class score histograms on
a fixed grid; no per-case prediction leaves a site. Summed histograms give the ROC
at every grid edge, an AUC with a certified error bound and DeLong's variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri


@dataclass(frozen=True)
class ConfusionCounts:
    tp: int
    fn: int
    tn: int
    fp: int

    @classmethod
    def of(cls, y_true: np.ndarray, scores: np.ndarray, threshold: float) -> ConfusionCounts:
        y = np.asarray(y_true).astype(bool)
        predicted = np.asarray(scores) >= threshold
        return cls(
            tp=int(np.sum(predicted & y)),
            fn=int(np.sum(~predicted & y)),
            tn=int(np.sum(~predicted & ~y)),
            fp=int(np.sum(predicted & ~y)),
        )

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(
            self.tp + other.tp, self.fn + other.fn, self.tn + other.tn, self.fp + other.fp
        )

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def balanced_accuracy(self) -> float:
        return (self.sensitivity + self.specificity) / 2


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def wilson_interval(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if total == 0:
        return (float("nan"), float("nan"))
    z = ndtri(0.5 + level / 2)
    p = successes / total
    centre = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / (1 + z**2 / total)
    return (float(centre - half), float(centre + half))


def score_edges(bins: int) -> np.ndarray:
    """The fixed probability grid every site bins its scores on."""
    return np.linspace(0.0, 1.0, bins + 1)


def score_histograms(
    y_true: np.ndarray, scores: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class counts of scores on the fixed grid: (positives, negatives)."""
    y = np.asarray(y_true).astype(bool)
    edges = score_edges(bins)
    positives, _ = np.histogram(scores[y], bins=edges)
    negatives, _ = np.histogram(scores[~y], bins=edges)
    return positives, negatives


@dataclass(frozen=True)
class HistogramAUC:
    auc: float
    error_bound: float
    standard_error: float

    def confidence_interval(self, level: float = 0.95) -> tuple[float, float]:
        half = ndtri(0.5 + level / 2) * self.standard_error
        return (max(0.0, self.auc - half), min(1.0, self.auc + half))


def exact_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The Mann-Whitney AUC with ties counted half, as `sklearn.metrics.roc_auc_score`:
    numpy only, so a site's per-message process need not import scikit-learn."""
    y = np.asarray(y_true).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(order))
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # mid-ranks, 1-based
    positives, negatives = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def histogram_auc(positives: np.ndarray, negatives: np.ndarray) -> HistogramAUC:
    """AUC from summed per-class histograms, its certified bound and DeLong SE.

    Pairs in different bins are ordered correctly; pairs sharing a bin count 1/2,
    so |AUC_exact - AUC_hist| <= sum_b h1_b h0_b / (2 n1 n0).
    """
    h1 = np.asarray(positives, dtype=np.float64)
    h0 = np.asarray(negatives, dtype=np.float64)
    n1, n0 = h1.sum(), h0.sum()
    if n1 == 0 or n0 == 0:
        return HistogramAUC(float("nan"), float("nan"), float("nan"))
    negatives_below = np.cumsum(h0) - h0
    positives_above = h1.sum() - np.cumsum(h1)
    placement_pos = (negatives_below + 0.5 * h0) / n0
    placement_neg = (positives_above + 0.5 * h1) / n1
    auc = float(np.sum(h1 * placement_pos) / n1)
    bound = float(0.5 * np.sum(h1 * h0) / (n1 * n0))
    variance = 0.0
    if n1 > 1:
        variance += np.sum(h1 * (placement_pos - auc) ** 2) / ((n1 - 1) * n1)
    if n0 > 1:
        variance += np.sum(h0 * (placement_neg - auc) ** 2) / ((n0 - 1) * n0)
    return HistogramAUC(auc=auc, error_bound=bound, standard_error=float(np.sqrt(variance)))


def calibration_sums(y_true: np.ndarray, scores: np.ndarray, bins: int) -> np.ndarray:
    """Rows Σp, Σy and n per bin of a fixed grid of `bins` on [0, 1]: summed over sites
    (only the total leaves a site under secure aggregation) they give the reliability bins."""
    scores = np.asarray(scores, dtype=np.float64)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    return np.vstack(
        [
            np.bincount(index, scores, bins),
            np.bincount(index, np.asarray(y_true, dtype=np.float64), bins),
            np.bincount(index, minlength=bins).astype(np.float64),
        ]
    )


# -- what one site may release of its own test cases (docs/privacy.md 3) -------------------
SITE_AUC_DECIMALS = 2
RATE_STEPS = (0.05, 0.1, 0.2, 0.25, 0.5)  # the public grids a site's rate is rounded to


def released_rate(hits: int, total: int, k: int) -> tuple[float, float] | None:
    """A site's own rate hits/total as it may leave the site, and the public step it is
    rounded to; None when a cell (hits or misses) is below k or no step hides the count.

    The aggregator may know `total` and that both cells are >= k; the step is the finest
    (a function of `total` only, so choosing it tells nothing of `hits`) at which every
    possible count shares its rounded rate with >= k others in [k, total - k]. So the rate
    leaves >= k counts possible: no cell follows exactly, nor, through a total over sites,
    another site's cell (which stays as uncertain)."""
    step = _rate_step(total, k)
    if step is None or min(hits, total - hits) < k:
        return None
    return round(_rounded(hits, total, step) * step, 10), step


def _rate_step(total: int, k: int) -> float | None:
    counts = np.arange(k, total - k + 1)
    for step in RATE_STEPS:
        _, members = np.unique([_rounded(h, total, step) for h in counts], return_counts=True)
        if len(counts) and members.min() >= k:
            return step
    return None


def _rounded(hits: int, total: int, step: float) -> int:
    """hits/total in units of `step`, rounded half up (the public grid)."""
    return int(np.floor(hits / total / step + 0.5))


def released_auc(exact: float) -> float:
    """A site's own AUC as it may leave the site: rounded (no exact local AUC, which with
    the pooled histograms would order that site's pairs exactly)."""
    return round(float(exact), SITE_AUC_DECIMALS)


def reliability(
    sum_p: np.ndarray, sum_y: np.ndarray, counts: np.ndarray, min_cell_size: int = 1
) -> dict:
    """Reliability bins and expected calibration error from per-bin sums of p and y. Adjacent
    bins are merged until each published one holds at least `min_cell_size` cases of each
    class (a bin's count and observed rate give both cells); the error is computed from the
    finer bins, one number. Each bin says which tenths of the score it spans."""
    total = counts.sum()
    ece = float(np.sum(np.abs(sum_p - sum_y)[counts > 0]) / total) if total else float("nan")
    groups = merged_bins(sum_y, counts, min_cell_size)
    bins = []
    for first, last in groups:
        n, p, y = (float(np.sum(a[first : last + 1])) for a in (counts, sum_p, sum_y))
        bins.append(
            {
                "mean_predicted": p / n if n else float("nan"),
                "observed_rate": y / n if n else float("nan"),
                "count": int(round(n)),
                "from": first / len(counts),
                "to": (last + 1) / len(counts),
            }
        )
    return {
        "bins": bins,
        "expected_calibration_error": ece,
        "calibration_in_the_large": float((sum_y.sum() - sum_p.sum()) / total) if total else None,
    }


def merged_bins(sum_y: np.ndarray, counts: np.ndarray, k: int) -> list[tuple[int, int]]:
    """(first, last) bin of each group: bins taken left to right until the group holds at
    least k positives and k negatives; a short remainder joins the group before it."""
    groups: list[tuple[int, int]] = []
    start, positives, negatives = 0, 0.0, 0.0
    for index, (y, n) in enumerate(zip(sum_y, counts, strict=True)):
        positives, negatives = positives + y, negatives + (n - y)
        if positives >= k and negatives >= k:
            groups.append((start, index))
            start, positives, negatives = index + 1, 0.0, 0.0
    if start < len(counts):
        groups[-1:] = [(groups[-1][0] if groups else start, len(counts) - 1)]
    return groups
