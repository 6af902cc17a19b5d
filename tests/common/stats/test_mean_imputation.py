"""The pooled training mean from summed site shares equals the mean of the pooled observed
values; a feature nobody observed has none; imputing fills only the gaps."""

from __future__ import annotations

import math

import numpy as np

from fedrad.common.stats.imputation import impute, pooled_means, site_imputation_sums


def test_summed_site_shares_give_the_pooled_mean_of_the_observed_values():
    rng = np.random.default_rng(0)
    x = rng.normal(1000.0, 50.0, size=(90, 5))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:30, 3] = np.nan  # missing in every case of the first site
    sites = np.split(x, [30, 55])
    total = sum((site_imputation_sums(part) for part in sites[1:]), site_imputation_sums(sites[0]))
    means, unobserved = pooled_means(total)
    exact = [math.fsum(c[~np.isnan(c)]) / np.sum(~np.isnan(c)) for c in x.T]
    np.testing.assert_allclose(means, exact, rtol=0, atol=1e-12)
    assert total.observed.tolist() == np.sum(~np.isnan(x), axis=0).tolist()
    assert not unobserved.any()


def test_a_feature_no_site_observed_has_no_mean():
    x = np.array([[1.0, np.nan], [3.0, np.nan]])
    means, unobserved = pooled_means(site_imputation_sums(x) + site_imputation_sums(x[:1]))
    assert unobserved.tolist() == [False, True]
    assert means[0] == 5.0 / 3.0 and np.isnan(means[1])


def test_imputing_fills_the_gaps_and_nothing_else():
    x = np.array([[1.0, np.nan, 3.0], [np.nan, 5.0, 6.0]])
    filled = impute(x, np.array([10.0, 20.0, 30.0]))
    assert filled.tolist() == [[1.0, 20.0, 3.0], [10.0, 5.0, 6.0]]
    assert np.isnan(x[0, 1])  # the input stays as it was
