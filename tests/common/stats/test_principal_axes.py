"""Principal axes from a pooled correlation matrix equal scikit-learn's PCA of the
standardized cases, and a batch's centroid is the mean of its cases' coordinates."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from fedrad.common.stats.principal_axes import PrincipalAxes


def _cases(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(240, 2))
    x = latent @ rng.normal(size=(2, 6)) + 0.3 * rng.normal(size=(240, 6))
    x = x * rng.uniform(0.5, 20, size=6) + rng.normal(0, 50, size=6)
    batch = np.repeat([0, 1, 2], 80)
    return x + batch[:, None] * 0.8, batch


def test_the_axes_equal_pca_of_the_standardized_cases_up_to_the_stated_sign():
    x, _ = _cases()
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    axes = PrincipalAxes.of(np.corrcoef(x, rowvar=False), mean, sd, [f"f{i}" for i in range(6)])
    pca = PCA(n_components=2).fit((x - mean) / sd)
    reference = (
        pca.components_
        * np.sign(pca.components_[[0, 1], np.abs(pca.components_).argmax(axis=1)])[:, None]
    )
    assert np.max(np.abs(axes.loadings - reference)) <= 1e-12
    assert np.max(np.abs(axes.explained - pca.explained_variance_ratio_)) <= 1e-12
    assert all(row[np.abs(row).argmax()] > 0 for row in axes.loadings)


def test_a_batch_centroid_is_the_mean_of_its_cases_coordinates():
    x, batch = _cases()
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    axes = PrincipalAxes.of(np.corrcoef(x, rowvar=False), mean, sd, [f"f{i}" for i in range(6)])
    coordinates = axes.project(x)
    for b in range(3):
        centroid = axes.project(x[batch == b].mean(axis=0))[0]
        assert np.max(np.abs(centroid - coordinates[batch == b].mean(axis=0))) <= 1e-10
    assert np.allclose(axes.project(mean), 0.0)


def test_a_feature_without_spread_counts_as_zero_and_the_axes_survive_json():
    x, _ = _cases()
    x[:, 2] = 7.0
    sd = x.std(axis=0, ddof=1)
    correlation = np.nan_to_num(np.corrcoef(x, rowvar=False))
    np.fill_diagonal(correlation, 1.0)
    axes = PrincipalAxes.of(correlation, x.mean(axis=0), sd, [f"f{i}" for i in range(6)])
    assert np.all(np.isfinite(axes.project(x)))
    again = PrincipalAxes.from_json(axes.as_json())
    assert np.array_equal(again.project(x), axes.project(x))
