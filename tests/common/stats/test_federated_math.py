"""Federated math equals the same computation on pooled data."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fedrad.common.models.logistic import fit_newton, newton_terms, sum_terms, with_intercept
from fedrad.common.stats.metrics import (
    ConfusionCounts,
    calibration_sums,
    exact_auc,
    histogram_auc,
    released_auc,
    released_rate,
    score_histograms,
    wilson_interval,
)
from fedrad.common.stats.moments import Moments, Standardizer, pool_moments


def _sites(seed: int, sizes=(120, 90, 150, 60), n_features=8):
    rng = np.random.default_rng(seed)
    true_beta = rng.normal(size=n_features + 1)
    sites = []
    for i, n in enumerate(sizes):
        x = rng.normal(loc=0.3 * i, scale=1 + 0.2 * i, size=(n, n_features))
        p = 1 / (1 + np.exp(-(with_intercept(x) @ true_beta)))
        sites.append((x, (rng.random(n) < p).astype(float)))
    return sites


def test_pooled_moments_equal_numpy_on_offset_data():
    rng = np.random.default_rng(1)
    parts = [1e6 + rng.normal(scale=s, size=(n, 5)) for n, s in [(40, 1.0), (7, 3.0), (81, 0.5)]]
    pooled = pool_moments(Moments.of(part) for part in parts)
    everything = np.vstack(parts)
    assert pooled.n == len(everything)
    np.testing.assert_allclose(pooled.mean, everything.mean(axis=0), rtol=1e-12)
    for ddof in (0, 1):
        np.testing.assert_allclose(
            pooled.variance(ddof), everything.var(axis=0, ddof=ddof), rtol=1e-9
        )


def test_standardizer_keeps_constant_features_finite():
    x = np.column_stack([np.arange(5.0), np.full(5, 3.0)])
    z = Standardizer.from_moments(Moments.of(x)).transform(x)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(z[:, 1], 0.0)
    np.testing.assert_allclose(z[:, 0].std(), 1.0)


@pytest.mark.parametrize("ridge_lambda", [0.0, 1.0])
def test_federated_newton_equals_pooled_newton_and_sklearn(ridge_lambda):
    sites = _sites(seed=3)
    designs = [(with_intercept(x), y) for x, y in sites]
    x_all = np.vstack([x for x, _ in sites])
    y_all = np.concatenate([y for _, y in sites])
    p = x_all.shape[1] + 1

    federated = fit_newton(
        lambda b: sum_terms(newton_terms(x, y, b) for x, y in designs), p, ridge_lambda, 1e-12
    )
    pooled = fit_newton(
        lambda b: newton_terms(with_intercept(x_all), y_all, b), p, ridge_lambda, 1e-12
    )
    assert federated.converged and pooled.converged
    assert federated.iterations == pooled.iterations
    assert np.max(np.abs(federated.beta - pooled.beta)) <= 1e-10

    c = np.inf if ridge_lambda == 0 else 1 / ridge_lambda
    reference = LogisticRegression(C=c, tol=1e-12, max_iter=10_000).fit(x_all, y_all)
    sklearn_beta = np.concatenate([reference.intercept_, reference.coef_.ravel()])
    np.testing.assert_allclose(federated.beta, sklearn_beta, atol=1e-6)


@pytest.mark.parametrize("decimals", [None, 1])
def test_exact_auc_equals_sklearn_with_and_without_ties(decimals):
    rng = np.random.default_rng(4)
    y = rng.random(300) < 0.3
    scores = rng.normal(size=300) + y
    if decimals is not None:
        scores = np.round(scores, decimals)
    assert exact_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-14)


def test_histogram_auc_within_its_bound_of_exact_auc():
    rng = np.random.default_rng(7)
    y = rng.random(400) < 0.4
    scores = 1 / (1 + np.exp(-(rng.normal(size=400) + 1.2 * y)))
    exact = roc_auc_score(y, scores)
    for bins in (10, 20, 100, 1000):
        pos, neg = score_histograms(y, scores, bins)
        result = histogram_auc(pos, neg)
        assert abs(result.auc - exact) <= result.error_bound
    assert histogram_auc(*score_histograms(y, scores, 1000)).error_bound < 1e-2


def test_histogram_auc_is_exact_for_scores_on_the_grid():
    rng = np.random.default_rng(8)
    y = rng.random(300) < 0.5
    scores = (np.floor(rng.random(300) * 50) + 0.5) / 50  # bin centres of a 50-bin grid
    result = histogram_auc(*score_histograms(y, scores, 50))
    assert result.auc == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_summed_site_histograms_equal_pooled_histograms():
    rng = np.random.default_rng(9)
    y = rng.random(200) < 0.5
    scores = rng.random(200)
    halves = [slice(0, 80), slice(80, 200)]
    parts = [score_histograms(y[s], scores[s], 100) for s in halves]
    summed = (parts[0][0] + parts[1][0], parts[0][1] + parts[1][1])
    pooled = score_histograms(y, scores, 100)
    assert histogram_auc(*summed) == histogram_auc(*pooled)


def test_confusion_counts_and_wilson():
    counts = ConfusionCounts.of(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.2, 0.1, 0.7, 0.5]), 0.5)
    assert (counts.tp, counts.fn, counts.tn, counts.fp) == (2, 1, 1, 1)
    assert counts.sensitivity == pytest.approx(2 / 3)
    assert counts.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)


def _scores(seed: int, n: int):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    return y, 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y)))


def test_summed_site_histograms_give_the_pooled_histogram_auc_within_its_bound():
    sites = [_scores(seed, n) for seed, n in ((1, 37), (2, 90), (3, 15))]
    per_site = [score_histograms(y, s, 1000) for y, s in sites]
    totals = [sum(parts) for parts in zip(*per_site, strict=True)]
    y = np.concatenate([y for y, _ in sites])
    scores = np.concatenate([s for _, s in sites])
    pooled = histogram_auc(*score_histograms(y, scores, 1000))
    federated = histogram_auc(*totals)
    assert federated == pooled
    assert abs(federated.auc - roc_auc_score(y, scores)) <= federated.error_bound < 1e-3


def test_summed_calibration_sums_equal_the_pooled_ones():
    sites = [_scores(seed, n) for seed, n in ((4, 37), (5, 21))]
    total = sum(calibration_sums(y, s, 10) for y, s in sites)
    y = np.concatenate([y for y, _ in sites])
    scores = np.concatenate([s for _, s in sites])
    pooled = calibration_sums(y, scores, 10)
    np.testing.assert_allclose(total, pooled, rtol=1e-12)
    index = np.minimum((scores * 10).astype(int), 9)
    np.testing.assert_array_equal(pooled[2], np.bincount(index, minlength=10))


@pytest.mark.parametrize("hits", [1, 2, 3, 4])
def test_a_rate_with_a_cell_below_k_is_never_released(hits):
    assert released_rate(hits, 40, 5) is None
    assert released_rate(40 - hits, 40, 5) is None


def _possible_hits(rate: float, step: float, total: int, k: int) -> list[int]:
    """What an aggregator that knows the rule and the site's class total can infer."""
    return [h for h in range(total + 1) if (released_rate(h, total, k) or (None,))[0] == rate]


@pytest.mark.parametrize("total", range(10, 90))
def test_a_released_rate_leaves_at_least_k_counts_possible(total):
    k = 5
    for hits in range(total + 1):
        released = released_rate(hits, total, k)
        if released is None:
            continue
        possible = _possible_hits(*released, total, k)
        assert hits in possible and len(possible) >= k, (hits, released)


def test_a_two_site_total_and_one_sites_rate_do_not_give_the_others_cell():
    # the aggregator knows the total of false negatives over two sites and site A's
    # released sensitivity (and, at worst, A's positives): B's 2 false negatives stay open
    k, positives_a = 5, 40
    tp_a, fn_b = 31, 2
    total_fn = (positives_a - tp_a) + fn_b
    rate, step = released_rate(tp_a, positives_a, k)
    candidates = {
        total_fn - (positives_a - h)
        for h in _possible_hits(rate, step, positives_a, k)
        if total_fn - (positives_a - h) >= 0
    }
    assert fn_b in candidates and len(candidates) >= 2


def test_a_sites_auc_leaves_it_rounded():
    assert released_auc(0.876543) == 0.88
