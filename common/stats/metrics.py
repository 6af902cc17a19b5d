"""Pooled evaluation from aggregates a site may share (docs/methods.md 4).

Sites send confusion counts at a fixed threshold and per-class score histograms on
a fixed grid; no per-case prediction leaves a site. Summed histograms give the ROC
at every grid edge, an AUC with a certified error bound and DeLong's variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


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
    z = norm.ppf(0.5 + level / 2)
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
        half = norm.ppf(0.5 + level / 2) * self.standard_error
        return (max(0.0, self.auc - half), min(1.0, self.auc + half))


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


@dataclass(frozen=True)
class ScoreBlocks:
    """Per-class score counts in blocks of adjacent bins of the fixed grid, [lo, hi) in edge
    indices; a site merges bins until every block holds at least k cases before sending, so
    no block discloses fewer than k patients' scores (docs/methods.md 4.2, "Disclosure").

    Blocks of different sites overlap; a positive-negative pair whose blocks overlap
    cannot be ordered and counts 1/2, which the certified bound accounts for. With
    one-bin blocks everything reduces to `histogram_auc`.
    """

    lo: np.ndarray
    hi: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    @classmethod
    def merged(cls, positives: np.ndarray, negatives: np.ndarray, min_count: int) -> ScoreBlocks:
        """Blocks of >= min_count cases, each spanning the bins from its lowest to its highest
        score: a block discloses the range of its >= k scores, and narrow blocks overlap
        fewer blocks of other sites, which tightens the AUC (`_narrowest_blocks`)."""
        totals = np.asarray(positives) + np.asarray(negatives)
        lo, hi = _narrowest_blocks(totals, min_count)
        cumulative_pos = np.concatenate([[0], np.cumsum(positives)])
        cumulative_neg = np.concatenate([[0], np.cumsum(negatives)])
        return cls(
            lo=lo,
            hi=hi,
            positives=cumulative_pos[hi] - cumulative_pos[lo],
            negatives=cumulative_neg[hi] - cumulative_neg[lo],
        )

    @classmethod
    def empty(cls) -> ScoreBlocks:
        nothing = np.zeros(0)
        return cls(nothing.astype(int), nothing.astype(int), nothing, nothing)

    def __add__(self, other: ScoreBlocks) -> ScoreBlocks:
        return ScoreBlocks(
            *(
                np.concatenate([getattr(self, name), getattr(other, name)])
                for name in ("lo", "hi", "positives", "negatives")
            )
        )

    def auc(self, within: np.ndarray | None = None, site: np.ndarray | None = None) -> HistogramAUC:
        """AUC, its certified error bound and DeLong SE from the blocks of every site.

        A positive-negative pair in overlapping blocks counts the probability P that a
        uniform draw from the positive's block exceeds one from the negative's (1/2 for
        the same block); its true contribution is 0, 1/2 or 1, so that pair's error is at
        most max(P, 1 - P), which the bound sums. If `site` labels each block with its site
        and `within` gives each site's exact count of concordant within-site pairs (its
        local AUC times n1 n0), within-site pairs are counted exactly instead.
        """
        n1, n0 = self.positives.sum(), self.negatives.sum()
        if n1 == 0 or n0 == 0:
            return HistogramAUC(float("nan"), float("nan"), float("nan"))
        order = _probability_above(self.lo, self.hi)  # [positive block, negative block]
        overlap = (self.hi[:, None] > self.lo[None, :]) & (self.lo[:, None] < self.hi[None, :])
        worst = np.where(overlap, np.maximum(order, 1 - order), 0.0)
        pairs = np.outer(self.positives, self.negatives)
        placement_pos = order @ self.negatives / n0
        placement_neg = self.positives @ order / n1
        if site is None:
            concordant = float(np.sum(pairs * order))
        else:
            between = site[:, None] != site[None, :]
            concordant = float(np.sum(pairs * order * between) + np.sum(within))
            worst = worst * between
        auc = concordant / (n1 * n0)
        bound = float(np.sum(pairs * worst) / (n1 * n0))
        variance = 0.0
        if n1 > 1:
            variance += self.positives @ (placement_pos - auc) ** 2 / ((n1 - 1) * n1)
        if n0 > 1:
            variance += self.negatives @ (placement_neg - auc) ** 2 / ((n0 - 1) * n0)
        return HistogramAUC(auc=auc, error_bound=bound, standard_error=float(np.sqrt(variance)))


def _merged_bins(totals: np.ndarray, min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) of adjacent bins merged left to right until each holds >= min_count cases; a
    short last group joins the one before it."""
    bounds, running = [0], 0
    for index, count in enumerate(totals):
        running += count
        if running >= min_count:
            bounds.append(index + 1)
            running = 0
    if bounds[-1] != len(totals):
        if len(bounds) > 1 and running < min_count:
            bounds[-1] = len(totals)
        else:
            bounds.append(len(totals))
    return np.array(bounds[:-1]), np.array(bounds[1:])


def calibration_sums(
    y_true: np.ndarray, scores: np.ndarray, bins: int, min_count: int
) -> np.ndarray:
    """Rows Σp, Σy and n per bin of a fixed grid of `bins` on [0, 1], as a site may send them.

    Adjacent bins are merged until each group holds >= min_count cases, and a group is
    reported in the bin of its mean score: no sent bin sums fewer than k patients (a bin
    of one would give away that patient's score and diagnosis), while sums over the sites
    stay on one grid.
    """
    scores = np.asarray(scores, dtype=np.float64)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    sums = np.vstack(
        [
            np.bincount(index, scores, bins),
            np.bincount(index, np.asarray(y_true, dtype=np.float64), bins),
            np.bincount(index, minlength=bins).astype(np.float64),
        ]
    )
    reported = np.zeros_like(sums)
    for lo, hi in zip(*_merged_bins(sums[2], min_count), strict=True):
        group = sums[:, lo:hi].sum(axis=1)
        if group[2]:
            reported[:, min(int(group[0] / group[2] * bins), bins - 1)] += group
    return reported


def _narrowest_blocks(totals: np.ndarray, min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) of blocks of >= min_count cases that cover every occupied bin and minimize
    the summed cases x width, by dynamic programming over the occupied bins.

    Cross-site pairs in overlapping blocks are what the AUC cannot order; on simulated
    sites of 40 cases this cut the mean AUC error by 15-30% and the certified bound by a
    quarter against greedy left-to-right merging, for a cost that is small beside a
    federated round.
    """
    occupied = np.flatnonzero(totals)
    if totals.sum() < min_count:  # too few cases for any block: one block over all of them
        return (
            (occupied[:1], occupied[-1:] + 1)
            if len(occupied)
            else (np.array([0]), np.array([len(totals)]))
        )
    cumulative = np.concatenate([[0], np.cumsum(totals[occupied])])
    cost = np.full(len(occupied) + 1, np.inf)
    cost[0] = 0.0
    start = np.zeros(len(occupied) + 1, dtype=int)
    for end in range(1, len(occupied) + 1):
        cases = cumulative[end] - cumulative[:end]  # block = occupied[begin:end], each begin
        width = occupied[end - 1] + 1 - occupied[:end]
        candidates = np.where(cases >= min_count, cost[:end] + cases * width, np.inf)
        start[end] = int(np.argmin(candidates))
        cost[end] = candidates[start[end]]
    ends = [len(occupied)]
    while ends[-1] > 0:
        ends.append(start[ends[-1]])
    ends.reverse()
    begins, finishes = np.array(ends[:-1]), np.array(ends[1:])
    return occupied[begins], occupied[finishes - 1] + 1


def _probability_above(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """P(X > Y) for X uniform on block i and Y uniform on block j, for every (i, j)."""
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    width = hi - lo

    def integral(t: np.ndarray) -> np.ndarray:  # of F_j(x) dx from -inf to t, F_j the CDF of Y
        inside = np.clip(t - lo[None, :], 0.0, width[None, :])
        return inside**2 / (2 * width[None, :]) + np.maximum(t - hi[None, :], 0.0)

    return (integral(hi[:, None]) - integral(lo[:, None])) / width[:, None]


def reliability(sum_p: np.ndarray, sum_y: np.ndarray, counts: np.ndarray) -> dict:
    """Reliability bins and expected calibration error from per-bin sums of p and y."""
    filled = counts > 0
    mean_p = np.divide(sum_p, counts, out=np.full(len(counts), np.nan), where=filled)
    observed = np.divide(sum_y, counts, out=np.full(len(counts), np.nan), where=filled)
    total = counts.sum()
    ece = float(np.sum(np.abs(sum_p - sum_y)[filled]) / total) if total else float("nan")
    return {
        "bins": [
            {"mean_predicted": float(p), "observed_rate": float(o), "count": int(c)}
            for p, o, c in zip(mean_p, observed, counts, strict=True)
        ],
        "expected_calibration_error": ece,
        "calibration_in_the_large": float((sum_y.sum() - sum_p.sum()) / total) if total else None,
    }
