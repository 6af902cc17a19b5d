"""Federated screening and redundancy removal equal the same statistics on pooled data."""

import numpy as np
from scipy.stats import ttest_ind

from fedrad.common.stats.moments import Moments, pool_moments
from fedrad.common.stats.selection import (
    CrossSums,
    class_sums,
    drop_redundant,
    non_constant_mask,
    welch_t,
)

SIZES = (120, 90, 150, 60)


def _sites(seed: int, n_features: int = 6, offset: float = 1e6):
    """Offset features with a class shift, site-specific location and scale."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(scale=0.5, size=n_features)
    sites = []
    for i, n in enumerate(SIZES):
        y = rng.random(n) < 0.3 + 0.1 * i
        x = offset + rng.normal(loc=0.2 * i, scale=1 + 0.3 * i, size=(n, n_features))
        sites.append((x + np.outer(y, shift), y))
    return sites


def _pooled(sites):
    return np.vstack([x for x, _ in sites]), np.concatenate([y for _, y in sites])


def _class_moments(sites) -> tuple[Moments, Moments]:
    """Pooled per-class moments as the federation computes them: the sites' sums about zero
    give the class means, their sums about those means the moments."""
    zeros = np.zeros(sites[0][0].shape[1])
    first = [
        sum(parts[1:], parts[0])
        for parts in zip(*(class_sums(x, y, (zeros, zeros)) for x, y in sites), strict=True)
    ]
    centres = tuple(part.s1 / part.n for part in first)
    second = [
        sum(parts[1:], parts[0])
        for parts in zip(*(class_sums(x, y, centres) for x, y in sites), strict=True)
    ]
    return tuple(part.moments(centre) for part, centre in zip(second, centres, strict=True))


def _comoments(sites):
    """Pooled comoments from the sites' cross-products about the pooled mean."""
    centre = np.vstack([x for x, _ in sites]).mean(axis=0)
    parts = [CrossSums.of(x, centre) for x, _ in sites]
    return sum(parts[1:], parts[0]).comoments(centre)


def test_non_constant_mask_uses_pooled_moments():
    rng = np.random.default_rng(0)
    parts = []
    for i, n in enumerate(SIZES):
        parts.append(
            np.column_stack(
                [
                    np.full(n, 5.0),  # constant everywhere: dropped
                    1e6 + 1e-9 * rng.normal(size=n),  # round-off spread, cv 1e-15: dropped
                    np.full(n, float(i)),  # constant per site, not pooled: kept
                    rng.normal(size=n),  # zero mean: kept
                    1e3 + 1e-2 * rng.normal(size=n),  # cv 1e-5: kept
                    np.zeros(n),  # zero: dropped
                ]
            )
        )
    pooled = pool_moments(Moments.of(part) for part in parts)
    expected = [False, False, True, True, True, False]
    np.testing.assert_array_equal(non_constant_mask(pooled), expected)
    np.testing.assert_array_equal(
        non_constant_mask(pooled, min_variance=1e-3), [False, False, True, True, False, False]
    )


def test_federated_welch_t_equals_scipy_on_offset_data():
    sites = _sites(1)
    result = welch_t(*_class_moments(sites))
    x, y = _pooled(sites)
    reference = ttest_ind(x[y], x[~y], equal_var=False)
    np.testing.assert_allclose(result.t, reference.statistic, rtol=0, atol=1e-8)
    np.testing.assert_allclose(result.df, reference.df, rtol=1e-9)
    np.testing.assert_allclose(result.p_value(), reference.pvalue, rtol=1e-6, atol=1e-12)
    # scipy's own rounding at 1e6 dominates the difference: removing the offset exactly
    # (Sterbenz) gives a sharper reference, which the federated t is closer to.
    exact = ttest_ind(x[y] - 1e6, x[~y] - 1e6, equal_var=False)
    np.testing.assert_allclose(result.t, exact.statistic, rtol=0, atol=5e-9)


def test_class_sums_of_a_site_without_positives_add_nothing_to_them():
    zeros = np.zeros(2)
    positives, negatives = class_sums(np.ones((3, 2)), np.zeros(3), (zeros, zeros))
    assert positives.n == 0 and negatives.n == 3
    assert not positives.s1.any() and not positives.s2.any()
    assert (positives + negatives).moments(zeros).n == 3


def test_federated_correlation_equals_numpy_on_offset_data():
    sites = _sites(3, n_features=7)
    for i, (x, _) in enumerate(sites):  # correlated columns, as radiomic features are
        x[:, 1] = 1e6 + 0.8 * (x[:, 0] - 1e6) + 0.1 * (x[:, 1] - 1e6) + i
    pooled = _comoments(sites)
    x, _ = _pooled(sites)
    covariance = np.cov(x, rowvar=False)
    scale = np.sqrt(np.outer(np.diag(covariance), np.diag(covariance)))
    # Entries are compared on the matrix's own scale: an off-diagonal entry near zero
    # inherits the float64 rounding of the site means at 1e6 (~1e-10) times Chan's delta.
    np.testing.assert_allclose(pooled.correlation(), np.corrcoef(x, rowvar=False), atol=1e-9)
    np.testing.assert_array_less(np.abs(pooled.covariance() - covariance), 1e-9 * scale)
    np.testing.assert_allclose(np.diag(pooled.covariance()), np.diag(covariance), rtol=1e-9)
    np.testing.assert_allclose(pooled.mean, x.mean(axis=0), rtol=1e-12)


def test_correlation_of_a_constant_feature_is_zero():
    x = np.column_stack([np.arange(5.0), np.full(5, 2.0)])
    np.testing.assert_array_equal(_comoments([(x, None)]).correlation(), np.eye(2))


def _redundant_sites(seed: int):
    """Columns: strong, near-duplicate of strong (noisier), moderate, two exact copies, noise."""
    rng = np.random.default_rng(seed)
    sites = []
    for n in SIZES:
        y = rng.random(n) < 0.5
        latent = y + rng.normal(scale=0.7, size=n)
        copy = 0.5 * y + rng.normal(size=n)
        x = np.column_stack(
            [
                latent + rng.normal(scale=0.05, size=n),
                latent + rng.normal(scale=0.25, size=n),
                0.6 * y + rng.normal(size=n),
                copy,
                copy,
                rng.normal(size=n),
            ]
        )
        sites.append((x, y))
    return sites


def _screen(sites):
    scores = np.abs(welch_t(*_class_moments(sites)).t)
    correlation = _comoments(sites).correlation()
    return correlation, scores


def test_drop_redundant_keeps_the_better_of_near_duplicates():
    sites = _redundant_sites(4)
    correlation, scores = _screen(sites)
    assert correlation[0, 1] > 0.9 and scores[0] > scores[1]
    kept = drop_redundant(correlation, scores, threshold=0.9)
    assert sorted(kept) == [0, 2, 3, 5]
    assert kept[0] == 0 and kept[-1] == 5  # best first
    assert list(drop_redundant(correlation, scores, threshold=0.9, max_features=2)) == list(
        kept[:2]
    )


def test_drop_redundant_does_not_depend_on_column_order_except_for_exact_ties():
    sites = _redundant_sites(5)
    order = np.array([5, 1, 4, 2, 0, 3])
    correlation, scores = _screen([(x[:, order], y) for x, y in sites])
    kept = order[drop_redundant(correlation, scores, threshold=0.9)]
    # columns 3 and 4 are identical: the one listed first (original 4 here) is kept
    assert sorted(kept) == [0, 2, 4, 5]
