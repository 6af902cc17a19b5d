"""Differential privacy's shared parts: the clipping every case's inputs go through, and the
budget both sides keep of the Gaussian releases a study makes (docs/privacy.md 10).

Neighbouring studies differ in one case's values and label (replace-one): case counts are
the census's, not protected here. Every noised release has noise noise_multiplier x its
sensitivity, so each is the same Gaussian mechanism and the budget is their composition,
accounted in Rényi DP by Flower's accountant (Google's dp-accounting underneath).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)

from fedrad.common.config import DifferentialPrivacySettings, StudyConfig
from fedrad.common.messages import Kind, ScoresReply

NOISED = frozenset({Kind.NEWTON, Kind.MLP_ROUND, Kind.CALIBRATION, Kind.SCORES})
"""The releases under noise: the model's Newton terms or MLP rounds, the evaluation's sums."""


def newton_sensitivity(settings: DifferentialPrivacySettings, fits: int = 1) -> float:
    """The most one case changes the Newton terms of `fits` fits it is in (L2 over gradient
    and Hessian; the deviance is not released): its inputs x, intercept included, have
    |x| <= R, so |x (y - p)| <= R and |w x x'| <= R^2 / 4, w <= 1/4; replace-one doubles it."""
    radius2 = 1.0 + settings.input_clip**2
    return 2.0 * math.sqrt(fits * (radius2 + radius2**2 / 16))


def scores_sensitivity(fits: int = 1) -> float:
    """The most one case changes the score sums of `fits` fits it is tested in: per fit a
    histogram bin, a confusion cell and (p, y, 1) in a calibration bin; replace-one doubles
    it."""
    return 2.0 * math.sqrt(5.0 * fits)


def update_sensitivity(update_clip: float) -> float:
    """The most one case changes a site's MLP weights after a round: whatever its local
    training did, the update is clipped to norm `update_clip` (model.mlp_update_clip), so two
    outcomes lie within twice that (the bound covers the site's whole update, so each case)."""
    return 2.0 * update_clip


def noise_allowance(study: StudyConfig, size: int, sites: int) -> float:
    """How far noise may move a mean of `sites` noised MLP weight vectors of `size` numbers:
    a bound its norm passes with probability < 1e-4 (chi tail), for a site's step check."""
    settings = study.differential_privacy
    if settings is None:
        return 0.0
    sigma = settings.noise_multiplier * update_sensitivity(study.model.mlp_update_clip)
    per_coordinate = sigma / sites if study.federation.secure_aggregation else sigma
    return (math.sqrt(size) + 4.0) * per_coordinate


def curvature_floor(settings: DifferentialPrivacySettings | None, n_params: int) -> float:
    """Where a noised p x p Hessian's eigenvalues are raised to: about the noise's spectral
    norm, 2 sigma sqrt(p), so a Newton step never divides by noise (0 without noise)."""
    if settings is None:
        return 0.0
    sigma = settings.noise_multiplier * newton_sensitivity(settings)
    return 2.0 * sigma * math.sqrt(n_params)


def clip_rows(x: np.ndarray, bound: float) -> np.ndarray:
    """Each row scaled down to Euclidean norm at most `bound` (rows within it unchanged)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.minimum(1.0, bound / np.maximum(norms, np.finfo(np.float64).tiny))


def post_processed(total):
    """A noised total as the aggregator reads it: score counts cannot be negative. (Any
    function of a released total keeps its guarantee.)"""
    if not isinstance(total, ScoresReply):
        return total
    return replace(total, **{f.name: np.maximum(getattr(total, f.name), 0) for f in fields(total)})


class Budget:
    """The (epsilon, delta) a study's noised releases have spent, all at one multiplier."""

    def __init__(self, settings: DifferentialPrivacySettings, releases: int = 0):
        self.settings = settings
        self._accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=settings.delta,
                population_size=1,  # no sampling, so no amplification: the size is moot
                # Flower accepts no amplification only as add-or-remove; its Gaussian RDP at
                # a given multiplier is the same for replace-one, whose sensitivity we use
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
                max_epsilon=settings.max_epsilon,
            )
        )
        self.spend(releases)

    @property
    def _event(self) -> GaussianPrivacyEvent:
        return GaussianPrivacyEvent(self.settings.noise_multiplier, 1, 1)

    @property
    def releases(self) -> int:
        return self._accountant.num_releases

    def spend(self, releases: int = 1) -> None:
        if releases:
            self._accountant.compose(self._event, releases)

    def allows(self, releases: int = 1) -> bool:
        """Whether `releases` more stay within max_epsilon (always, without one)."""
        if self.settings.max_epsilon is None:
            return True
        return not self._accountant.would_exceed(self._event, count=releases)

    @property
    def epsilon(self) -> float:
        return self._accountant.get_epsilon(self.settings.delta) if self.releases else 0.0

    def summary(self) -> dict:
        """What results.json and the report say of the budget."""
        return {
            "epsilon": self.epsilon,
            "delta": self.settings.delta,
            "releases": self.releases,
            "noise_multiplier": self.settings.noise_multiplier,
            "input_clip": self.settings.input_clip,
            "max_epsilon": self.settings.max_epsilon,
            "accountant": "Rényi DP (Flower's RdpAccountant), Gaussian releases composed",
            "neighbouring": "studies differing in one case's values and label",
        }
