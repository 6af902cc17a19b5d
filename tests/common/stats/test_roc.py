"""The pooled ROC curve from summed histograms is scikit-learn's on the pooled binned scores,
its area is the histogram AUC, and the points a study publishes make no new cell below k
readable, against an attacker who also reads the reliability bins and confusion counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_curve as sklearn_roc_curve

from fedrad.common.stats.metrics import (
    ConfusionCounts,
    calibration_sums,
    histogram_auc,
    score_edges,
    score_histograms,
)
from fedrad.common.stats.roc import (
    Known,
    cumulative,
    known_counts,
    released_roc,
    roc_curve,
    trapezoid_area,
)

BINS = 1000


def _site(seed: int, n: int):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    return y, 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y)))


@pytest.fixture(scope="module")
def sites():
    return [_site(seed, n) for seed, n in ((1, 37), (2, 90), (3, 24))]


def _totals(sites, bins=BINS):
    parts = [score_histograms(y, s, bins) for y, s in sites]
    return tuple(sum(part) for part in zip(*parts, strict=True))


def _pooled(sites):
    return np.concatenate([y for y, _ in sites]), np.concatenate([s for _, s in sites])


def test_curve_from_summed_histograms_is_sklearns_on_the_pooled_binned_scores(sites):
    curve = roc_curve(*_totals(sites))
    y, scores = _pooled(sites)
    edges = score_edges(BINS)
    binned = edges[np.minimum(np.searchsorted(edges, scores, side="right") - 1, BINS - 1)]
    fpr, tpr, thresholds = sklearn_roc_curve(y, binned, drop_intermediate=False)
    np.testing.assert_allclose(curve["fpr"], fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve["tpr"], tpr, rtol=0, atol=1e-12)
    assert curve["threshold"][0] is None and np.isinf(thresholds[0])
    np.testing.assert_allclose(curve["threshold"][1:], thresholds[1:], rtol=0, atol=1e-12)


def test_its_trapezoid_area_is_the_histogram_auc(sites):
    totals = _totals(sites)
    assert trapezoid_area(roc_curve(*totals)) == pytest.approx(
        histogram_auc(*totals).auc, abs=1e-12
    )


# -- what an attacker reads --------------------------------------------------------------------
def _release(sites, k: int, thresholds=(0.45,)):
    """What results.json gives of the test scores: totals, reliability sums, confusion counts
    at the fits' thresholds (one fit per site here), and the published ROC."""
    totals = _totals(sites)
    calibration = sum(calibration_sums(y, s, 10) for y, s in sites)
    confusion = sum(
        (ConfusionCounts.of(y, s, t) for (y, s), t in zip(sites, itertools.cycle(thresholds))),
        ConfusionCounts(0, 0, 0, 0),
    )
    known = known_counts(calibration, confusion, list(thresholds), BINS, k)
    return totals, known, released_roc(*totals, k, known)


def _published(curve: dict, n1: float, n0: float) -> list[Known]:
    """The ROC's points read back as cumulative counts at their edges."""
    points = []
    for threshold, fpr, tpr in zip(curve["threshold"], curve["fpr"], curve["tpr"], strict=True):
        edge = BINS if threshold is None else round(threshold * BINS)
        points.append(Known(edge, edge, round(tpr * n1, 6), round(fpr * n0, 6)))
    return points


def _cells_below_k(points: list[Known], others: list[Known], k: int) -> list[tuple]:
    """Every cell, between one of `points` and any position of `others` that bounds an
    interval of the grid with it, holding fewer than k cases of a class (none included)."""
    found = []
    for a, b in itertools.product(points, others):
        lower, upper = (a, b) if a.high <= b.low else (b, a)
        if a == b or not lower.high <= upper.low:
            continue
        for label, count in (
            ("positive", lower.positives - upper.positives),
            ("negative", lower.negatives - upper.negatives),
        ):
            if count < k - 0.5:
                found.append(((lower.low, lower.high), (upper.low, upper.high), label, count))
    return found


def _ends(totals) -> list[Known]:
    above1, above0 = cumulative(*totals)
    return [Known(BINS, BINS, 0.0, 0.0), Known(0, 0, above1[0], above0[0])]


@pytest.mark.parametrize("k", [3, 5])
def test_the_published_points_reveal_no_new_cell_below_k(sites, k):
    totals, known, curve = _release(sites, k)
    public = _ends(totals) + known
    edges = {q.low for q in public if q.low == q.high}
    points = [p for p in _published(curve, *(h.sum() for h in totals)) if p.low not in edges]
    assert not _cells_below_k(points, public + points, k)
    # points besides the reliability bins' edges (already public), and a curve to draw
    assert points and len(curve["fpr"]) >= 5


def test_the_attack_reads_small_cells_off_the_whole_curve(sites):
    # the same attack on every point of the curve finds cells below k: it is a real attack
    totals, known, _ = _release(sites, 5)
    whole = _published(roc_curve(*totals), *(h.sum() for h in totals))
    assert _cells_below_k(whole, _ends(totals) + known + whole, 5)


def test_the_published_points_lie_on_the_whole_curve(sites):
    totals, _, curve = _release(sites, 5)
    whole = roc_curve(*totals)
    pairs = set(zip(whole["fpr"], whole["tpr"], strict=True))
    assert set(zip(curve["fpr"], curve["tpr"], strict=True)) <= pairs
    assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0)
    assert (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)


def test_no_point_between_the_thresholds_of_the_fits(sites):
    # the pooled confusion counts sit somewhere between the fits' thresholds: a grid point
    # there would not bound an interval with them, so none is published there
    _, _, curve = _release(sites, 3, thresholds=(0.40, 0.52))
    inside = [t for t in curve["threshold"] if t is not None and 0.40 < t < 0.52]
    tenths = {0.5}  # the reliability bins' edge, already public
    assert set(inside) <= tenths
