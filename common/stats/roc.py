"""The pooled ROC curve from summed per-class histograms on the public grid, and the points
of it a study publishes (docs/methods.md 4.4, docs/privacy.md 6).

A point of the curve at grid edge j is a pair of cumulative counts: the cases of each class
scored at or above edge j. Two points subtract to a cell (the cases of a class between
them), so a point is published only when every such cell, against the other published
points and against the counts results.json already gives (the class totals, the reliability
bins, the pooled confusion counts), holds at least k cases of each class: the curve makes
no cell below k (an empty one included, as the census suppresses it) readable that was not
readable before. Any cell with a published point as an end then holds >= k, since it
contains the cell between that point and its nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrad.common.stats.metrics import merged_bins

_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Known:
    """Cumulative counts of each class at a position on the grid between edges `low` and
    `high` (equal when the position is an edge), already readable in results.json."""

    low: int
    high: int
    positives: float
    negatives: float


def cumulative(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per grid edge j = 0..bins, the cases of each class scored at or above edge j (edge
    `bins`, above every score: none)."""
    above = [
        np.append(np.cumsum(np.asarray(h, float)[::-1])[::-1], 0.0) for h in (positives, negatives)
    ]
    return above[0], above[1]


def roc_curve(positives: np.ndarray, negatives: np.ndarray) -> dict:
    """The curve at every edge where it changes, from (0, 0) above every score to (1, 1):
    as `sklearn.metrics.roc_curve(drop_intermediate=False)` on the scores binned to their
    bin's lower edge. Its trapezoid area is the histogram AUC (ties in a bin count half)."""
    h1, h0 = np.asarray(positives, float), np.asarray(negatives, float)
    edges = [len(h1)] + [j for j in range(len(h1) - 1, -1, -1) if h1[j] + h0[j] > 0]
    return _points(h1, h0, edges)


def released_roc(positives: np.ndarray, negatives: np.ndarray, k: int, known: list[Known]) -> dict:
    """The curve's points a study publishes: from the top of the grid down, an edge where the
    curve changes is kept when every cell it makes with the `known` counts and the edges
    kept so far holds >= k cases of each class; the known edges themselves are kept."""
    h1, h0 = np.asarray(positives, float), np.asarray(negatives, float)
    above1, above0 = cumulative(h1, h0)
    bins = len(h1)
    known = [
        Known(bins, bins, 0.0, 0.0),
        Known(0, 0, float(above1[0]), float(above0[0])),
        *known,
    ]
    kept = {q.low for q in known if q.low == q.high}
    for j in range(bins - 1, 0, -1):
        if j in kept or h1[j] + h0[j] == 0:
            continue
        point = Known(j, j, float(above1[j]), float(above0[j]))
        if all(_cells_allowed(point, q, k) for q in known):
            known.append(point)
            kept.add(j)
    return _points(h1, h0, sorted(kept, reverse=True))


def _cells_allowed(point: Known, other: Known, k: int) -> bool:
    """Whether the cells between `point` (an edge) and `other` hold >= k of each class (an
    empty cell is small too, as the census counts it: "<k")."""
    if other.low <= point.low <= other.high:
        return False  # the same edge, or positions that do not bound one interval
    cells = (abs(point.positives - other.positives), abs(point.negatives - other.negatives))
    return all(cell >= k - _TOLERANCE for cell in cells)


def _points(h1: np.ndarray, h0: np.ndarray, edges: list[int]) -> dict:
    above1, above0 = cumulative(h1, h0)
    n1, n0 = above1[0], above0[0]
    bins = len(h1)
    return {
        "threshold": [None if j == bins else j / bins for j in edges],
        "fpr": [float(above0[j] / n0) if n0 else float("nan") for j in edges],
        "tpr": [float(above1[j] / n1) if n1 else float("nan") for j in edges],
    }


def trapezoid_area(curve: dict) -> float:
    """The area under the curve's points, joined by straight lines."""
    return float(np.trapezoid(curve["tpr"], curve["fpr"]))


def known_counts(
    calibration: np.ndarray, confusion, thresholds: list[float], bins: int, min_cell_size: int
) -> list[Known]:
    """The cumulative counts results.json already gives besides the class totals: at each
    published reliability bin's lower edge (tenths of the score, merged as `reliability`
    merges them: Σy and n per bin), and the pooled confusion counts at the fits'
    thresholds (between the edges around the lowest and the highest of them)."""
    sum_y, counts = np.asarray(calibration)[1], np.asarray(calibration)[2]
    tenths = len(counts)
    positives_above = np.cumsum(sum_y[::-1])[::-1]
    negatives_above = np.cumsum((counts - sum_y)[::-1])[::-1]
    starts = [first for first, _ in merged_bins(sum_y, counts, min_cell_size)][1:]
    known = [
        Known(m * bins // tenths, -(-m * bins // tenths), float(p), float(n))
        for m, p, n in ((m, positives_above[m], negatives_above[m]) for m in starts)
    ]
    if thresholds:
        low = int(np.floor(min(thresholds) * bins))
        high = int(np.ceil(max(thresholds) * bins))
        known.append(Known(low, high, float(confusion.tp), float(confusion.fp)))
    return known
