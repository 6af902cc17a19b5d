"""Federated math equals the same computation on pooled data."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fedrad.common.models.logistic import fit_newton, newton_terms, sum_terms, with_intercept
from fedrad.common.stats.metrics import (
    ConfusionCounts,
    ScoreBlocks,
    calibration_sums,
    histogram_auc,
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


def test_unmerged_score_blocks_equal_the_histogram_auc():
    y, scores = _scores(11, 300)
    histograms = score_histograms(y, scores, 100)
    blocks = ScoreBlocks.merged(*histograms, min_count=1)
    merged, plain = blocks.auc(), histogram_auc(*histograms)
    assert merged.auc == pytest.approx(plain.auc, abs=1e-14)
    assert merged.error_bound == pytest.approx(plain.error_bound, abs=1e-14)
    assert merged.standard_error == pytest.approx(plain.standard_error, abs=1e-14)


def test_merged_blocks_hold_k_cases_and_bound_the_exact_pooled_auc():
    sites = [_scores(seed, n) for seed, n in ((1, 37), (2, 90), (3, 15))]
    pooled = ScoreBlocks.empty()
    for y, scores in sites:
        blocks = ScoreBlocks.merged(*score_histograms(y, scores, 1000), min_count=5)
        assert np.all(blocks.positives + blocks.negatives >= 5)
        assert np.all(blocks.lo[1:] >= blocks.hi[:-1])  # disjoint, in order
        # each block spans exactly the bins from its lowest to its highest score
        bins = np.minimum((scores * 1000).astype(int), 999)
        block_of = np.searchsorted(blocks.hi, bins, side="right")
        assert np.all(blocks.lo[block_of] <= bins) and np.all(bins < blocks.hi[block_of])
        for index in range(len(blocks.lo)):
            members = bins[block_of == index]
            assert (members.min(), members.max() + 1) == (blocks.lo[index], blocks.hi[index])
        pooled = pooled + blocks
    y = np.concatenate([y for y, _ in sites])
    scores = np.concatenate([s for _, s in sites])
    exact = roc_auc_score(y, scores)
    result = pooled.auc()
    assert abs(result.auc - exact) <= result.error_bound

    # within-site pairs counted exactly from each site's own AUC: a tighter, still valid bound
    labels = np.concatenate(
        [
            np.full(len(ScoreBlocks.merged(*score_histograms(y_s, s_s, 1000), 5).lo), i)
            for i, (y_s, s_s) in enumerate(sites)
        ]
    )
    within = np.array([roc_auc_score(y_s, s_s) * y_s.sum() * (~y_s).sum() for y_s, s_s in sites])
    sharper = pooled.auc(within=within, site=labels)
    assert abs(sharper.auc - exact) <= sharper.error_bound < result.error_bound


def test_calibration_bins_sent_by_a_site_each_sum_at_least_k_cases():
    y, scores = _scores(4, 37)
    plain = calibration_sums(y, scores, 10, min_count=1)
    index = np.minimum((scores * 10).astype(int), 9)
    np.testing.assert_array_equal(plain[2], np.bincount(index, minlength=10))
    np.testing.assert_allclose(plain[0], np.bincount(index, scores, 10), rtol=1e-15)

    sent = calibration_sums(y, scores, 10, min_count=5)
    counts = sent[2][sent[2] > 0]
    assert counts.min() >= 5 and plain[2][plain[2] > 0].min() < 5  # merging was needed
    np.testing.assert_allclose(sent.sum(axis=1), plain.sum(axis=1), rtol=1e-12)
    filled = sent[2] > 0  # each group sits in the bin of its mean score
    mean_score = sent[0][filled] / sent[2][filled]
    np.testing.assert_array_equal(
        np.minimum((mean_score * 10).astype(int), 9), np.flatnonzero(filled)
    )


def test_score_blocks_of_tied_or_too_few_scores():
    tied = np.zeros(20, dtype=int)
    tied[[3, 9, 15]] = [1, 12, 1]  # one bin holds 12 cases
    blocks = ScoreBlocks.merged(tied, np.zeros(20, dtype=int), min_count=5)
    assert np.all(blocks.positives >= 5) and blocks.positives.sum() == 14
    assert blocks.lo[0] == 3 and blocks.hi[-1] == 16
    few = ScoreBlocks.merged(tied * (tied < 2), np.zeros(20, dtype=int), min_count=5)
    assert (few.lo.tolist(), few.hi.tolist(), few.positives.tolist()) == ([3], [16], [2])
