"""DeLong's test from summed joint histograms is DeLong's test on the pooled binned scores,
and the sites' joint histograms sum to the pooled one."""

from __future__ import annotations

import numpy as np
import pytest

from fedrad.common.stats.delong import pooled_delong, site_joint
from fedrad.common.stats.metrics import histogram_auc, score_histograms

BINS = 100


def _site(seed: int, n: int):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    shared = rng.normal(size=n)
    a = 1 / (1 + np.exp(-(shared + 1.4 * y)))
    b = 1 / (1 + np.exp(-(0.7 * shared + 0.5 * rng.normal(size=n) + 0.9 * y)))
    return y, a, b


def _delong_on_cases(y, a, b):
    """DeLong et al. (1988) from per-case scores: placements with ties counted half."""
    y = y.astype(bool)

    def placements(scores):
        x, z = scores[y][:, None], scores[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        return psi.mean(axis=1), psi.mean(axis=0), psi.mean()

    v10_a, v01_a, auc_a = placements(a)
    v10_b, v01_b, auc_b = placements(b)
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    c = np.array([1.0, -1.0])
    variance = c @ s10 @ c / y.sum() + c @ s01 @ c / (~y).sum()
    return auc_a, auc_b, np.sqrt(variance)


def _binned(scores):
    return np.minimum((scores * BINS).astype(int), BINS - 1)


@pytest.fixture(scope="module")
def sites():
    return [_site(seed, n) for seed, n in ((1, 60), (2, 45), (3, 80))]


def test_summed_joint_histograms_give_delong_on_the_pooled_binned_scores(sites):
    total = sum((site_joint(*site, BINS) for site in sites[1:]), site_joint(*sites[0], BINS))
    federated = pooled_delong(total)
    y, a, b = (np.concatenate(parts) for parts in zip(*sites, strict=True))
    auc_a, auc_b, error = _delong_on_cases(y, _binned(a), _binned(b))
    assert federated.auc_a == pytest.approx(auc_a, abs=1e-12)
    assert federated.auc_b == pytest.approx(auc_b, abs=1e-12)
    assert federated.standard_error == pytest.approx(error, abs=1e-12)
    assert 0 < federated.p_value < 1


def test_each_auc_is_the_histogram_auc_of_its_model(sites):
    y, a, b = (np.concatenate(parts) for parts in zip(*sites, strict=True))
    comparison = pooled_delong(site_joint(y, a, b, BINS))
    assert comparison.auc_a == pytest.approx(histogram_auc(*score_histograms(y, a, BINS)).auc)
    assert comparison.auc_b == pytest.approx(histogram_auc(*score_histograms(y, b, BINS)).auc)


def test_a_model_against_itself_differs_by_nothing(sites):
    y, a, _ = sites[0]
    comparison = pooled_delong(site_joint(y, a, a, BINS))
    assert comparison.difference == 0 and comparison.standard_error == pytest.approx(0, abs=1e-9)
