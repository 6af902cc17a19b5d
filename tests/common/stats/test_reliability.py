"""Reliability bins as results.json publishes them: adjacent tenths merged until each bin
holds at least k cases of each class, so no count or rate reads a smaller cell."""

from __future__ import annotations

import numpy as np
import pytest

from fedrad.common.stats.metrics import reliability


def _sums(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, size=n)
    y = (rng.uniform(size=n) < p).astype(float)
    index = np.minimum((p * 10).astype(int), 9)
    return (
        np.bincount(index, weights=p, minlength=10),
        np.bincount(index, weights=y, minlength=10),
        np.bincount(index, minlength=10).astype(float),
    )


@pytest.mark.parametrize("seed, n, k", [(0, 40, 5), (1, 120, 5), (2, 400, 3), (3, 25, 5)])
def test_every_published_bin_holds_k_of_each_class_and_the_bins_cover_every_case(seed, n, k):
    sum_p, sum_y, counts = _sums(seed, n)
    bins = reliability(sum_p, sum_y, counts, k)["bins"]
    assert sum(b["count"] for b in bins) == n
    assert bins[0]["from"] == 0.0 and bins[-1]["to"] == 1.0
    assert all(a["to"] == b["from"] for a, b in zip(bins, bins[1:], strict=False))
    positives = [round(b["observed_rate"] * b["count"]) for b in bins]
    if min(sum_y.sum(), n - sum_y.sum()) >= k:
        # what an attacker reads from each bin: its positives and its negatives
        assert all(
            pos >= k and b["count"] - pos >= k for pos, b in zip(positives, bins, strict=True)
        )
    assert sum(positives) == sum_y.sum()
    assert np.isclose(sum(b["mean_predicted"] * b["count"] for b in bins), sum_p.sum())


def test_small_cells_would_be_published_without_the_rule():
    sum_p, sum_y, counts = _sums(0, 40)
    fine = reliability(sum_p, sum_y, counts, 1)["bins"]
    cells = [
        min(b["observed_rate"] * b["count"], (1 - b["observed_rate"]) * b["count"])
        for b in fine
        if b["count"]
    ]
    assert min(cells) < 5  # the test above can fail


def test_the_calibration_error_is_computed_from_the_finer_bins():
    sum_p, sum_y, counts = _sums(1, 120)
    assert reliability(sum_p, sum_y, counts, 5)["expected_calibration_error"] == pytest.approx(
        reliability(sum_p, sum_y, counts, 1)["expected_calibration_error"]
    )
