"""What both sides rely on: replacing one case by any other, however extreme, moves each noised
sum by at most its stated sensitivity; clipping scales only long rows; an exact Hessian passes
untouched while a noised one is made positive definite; the budget is RDP composition."""

from __future__ import annotations

import numpy as np
import pytest
from dp_accounting import dp_event, rdp

from fedrad.common.config import DifferentialPrivacySettings
from fedrad.common.differential_privacy import (
    Budget,
    clip_rows,
    newton_sensitivity,
    post_processed,
    scores_sensitivity,
)
from fedrad.common.messages import ScoresReply
from fedrad.common.models.logistic import newton_terms, positive_definite, with_intercept
from fedrad.common.stats.metrics import ConfusionCounts, calibration_sums, score_histograms

SETTINGS = DifferentialPrivacySettings(input_clip=2.0)


def _newton_vector(z, y, beta) -> np.ndarray:
    terms = newton_terms(with_intercept(z), y, beta)
    return np.concatenate([terms.gradient, terms.hessian.ravel()])


def _extremes(rng, width: int, bound: float) -> list[np.ndarray]:
    """Cases an attacker would plant: huge values, and rows at the bound in every direction."""
    huge = [rng.normal(size=width) * 1e6 for _ in range(20)]
    axes = [sign * bound * np.eye(width)[j] for j in range(width) for sign in (-1, 1)]
    return [clip_rows(row[None], bound)[0] for row in huge] + axes


@pytest.mark.parametrize("beta_scale", [0.0, 0.5, 5.0])
def test_replacing_one_case_by_any_other_moves_the_newton_terms_by_at_most_the_sensitivity(
    beta_scale,
):
    rng = np.random.default_rng(1)
    z = clip_rows(rng.normal(size=(40, 5)) * 3, SETTINGS.input_clip)
    y = (rng.random(40) < 0.5).astype(float)
    beta = rng.normal(size=6) * beta_scale
    base = _newton_vector(z, y, beta)
    moved = []
    for row in _extremes(rng, 5, SETTINGS.input_clip):
        for label in (0.0, 1.0):
            other_z, other_y = z.copy(), y.copy()
            other_z[0], other_y[0] = row, label
            moved.append(np.linalg.norm(_newton_vector(other_z, other_y, beta) - base))
    assert max(moved) <= newton_sensitivity(SETTINGS)
    assert max(moved) >= 0.25 * newton_sensitivity(SETTINGS)  # a bound, not a wild one


def _score_vector(y, p) -> np.ndarray:
    positives, negatives = score_histograms(y, p, 1000)
    confusion = ConfusionCounts.of(y, p, 0.5)
    return np.concatenate(
        [
            positives,
            negatives,
            [confusion.tp, confusion.fn, confusion.tn, confusion.fp],
            calibration_sums(y, p, 10).ravel(),
        ]
    ).astype(float)


def test_replacing_one_case_by_any_other_moves_the_score_sums_by_at_most_the_sensitivity():
    rng = np.random.default_rng(2)
    y, p = (rng.random(30) < 0.5).astype(float), rng.random(30)
    base = _score_vector(y, p)
    moved = []
    for score in (0.0, 0.02, 0.49, 0.51, 0.999, 1.0):
        for label in (0.0, 1.0):
            other_y, other_p = y.copy(), p.copy()
            other_y[3], other_p[3] = label, score
            moved.append(np.linalg.norm(_score_vector(other_y, other_p) - base))
    assert max(moved) <= scores_sensitivity()
    assert max(moved) >= 0.5 * scores_sensitivity()


def test_clipping_scales_long_rows_onto_the_bound_and_leaves_short_ones_alone():
    rows = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    clipped = clip_rows(rows, 1.0)
    np.testing.assert_allclose(clipped[0], [0.6, 0.8])
    np.testing.assert_array_equal(clipped[1:], rows[1:])


def test_an_exact_hessian_passes_untouched_and_a_noised_one_is_made_positive_definite():
    rng = np.random.default_rng(3)
    x = with_intercept(rng.normal(size=(50, 4)))
    exact = newton_terms(x, (rng.random(50) < 0.5).astype(float), np.zeros(5)).hessian
    assert positive_definite(exact) is exact
    noised = exact + rng.normal(scale=8.0, size=exact.shape)
    assert np.linalg.eigvalsh((noised + noised.T) / 2).min() < 0  # this draw is indefinite
    repaired = positive_definite(noised, floor=2.0)
    np.testing.assert_allclose(repaired, repaired.T)
    assert np.linalg.eigvalsh(repaired).min() >= 2.0 - 1e-9


def test_negative_noised_score_counts_are_read_as_none():
    total = ScoresReply(
        positives=np.array([3, -2]),
        negatives=np.array([-1, 4]),
        confusion=np.array([[1, -1, 2, 0]]),
        calibration=np.array([[0.5, -0.2]]),
    )
    read = post_processed(total)
    assert min(read.positives.min(), read.negatives.min(), read.confusion.min()) == 0
    assert read.positives[0] == 3 and read.calibration[0, 0] == 0.5


def test_the_budget_is_the_rdp_composition_of_its_gaussian_releases():
    settings = DifferentialPrivacySettings(noise_multiplier=2.0, delta=1e-6)
    reference = rdp.RdpAccountant()
    reference.compose(dp_event.GaussianDpEvent(2.0), 30)
    assert Budget(settings, 30).epsilon == pytest.approx(reference.get_epsilon(1e-6), rel=1e-6)
    assert Budget(settings, 0).epsilon == 0.0
    assert Budget(settings, 31).epsilon > Budget(settings, 30).epsilon
    assert Budget(settings.model_copy(update={"noise_multiplier": 4.0}), 30).epsilon < (
        Budget(settings, 30).epsilon
    )


def test_a_budget_with_a_ceiling_allows_releases_only_while_epsilon_stays_under_it():
    ceiling = Budget(DifferentialPrivacySettings(noise_multiplier=3.0), 12).epsilon
    settings = DifferentialPrivacySettings(noise_multiplier=3.0, max_epsilon=ceiling * 1.0001)
    assert Budget(settings, 11).allows()
    assert not Budget(settings, 12).allows()
    assert Budget(DifferentialPrivacySettings(), 10_000).allows()  # no ceiling, no limit
