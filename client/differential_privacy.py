"""Differential privacy at the site: Gaussian noise on each released sum, scaled to the most
one case can change it, drawn here, so no sum without it ever leaves (docs/privacy.md 10).

Under secure aggregation each of the m sites of a release adds 1/m of the variance, and
only the total, which carries it all, is unmasked; without it every site adds the whole
noise to the sum it releases alone. Case counts stay exact: they are the census's.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
from flwr.app import RecordDict

from fedrad.client.data import SiteData
from fedrad.client.ledger import site_ledger
from fedrad.client.plan import Refused
from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import (
    Budget,
    newton_sensitivity,
    scores_sensitivity,
    update_sensitivity,
)
from fedrad.common.messages import Kind, Request

EXACT = frozenset({"n", "num_examples", "train_loss"})  # counts the census gives; no loss


def sensitivity(kind: Kind, request: Request, data: SiteData, study: StudyConfig) -> float:
    """The most one case's values and label can change this site's reply (L2, over every
    noised number), with its model inputs clipped to norm input_clip."""
    if kind is Kind.NEWTON:
        return newton_sensitivity(study.differential_privacy)
    if kind is Kind.MLP_ROUND:
        return update_sensitivity(study.model.mlp_update_clip)
    if kind is Kind.CALIBRATION:
        return newton_sensitivity(study.differential_privacy, _tested_in(request, data, study))
    return scores_sensitivity(_tested_in(request, data, study))


def _tested_in(request: Request, data: SiteData, study: StudyConfig) -> int:
    """The most fits of the request any one case of this site is a test case of."""
    tested = sum(data.rows(part.partition, "test", study).astype(int) for part in request.parts)
    return max(1, int(np.max(tested, initial=0)))


def noised(reply, scale: float, rng: np.random.Generator):
    """`reply` with N(0, scale^2) added to every number but its case counts (and an MLP's
    loss, not released under noise); integer fields (counts of scores) get it rounded."""
    changes = {}
    for field in fields(reply):
        value = getattr(reply, field.name)
        if field.name in EXACT:
            continue
        if isinstance(value, dict):  # an MLP's weights, by layer
            changes[field.name] = {name: _noised(v, scale, rng) for name, v in value.items()}
        elif isinstance(value, np.ndarray | float | int):
            changes[field.name] = _noised(value, scale, rng)
    return replace(reply, **changes)


def _noised(value, scale: float, rng: np.random.Generator):
    array = np.asarray(value)
    noisy = array + rng.normal(0.0, scale, array.shape)
    if np.issubdtype(array.dtype, np.integer):
        noisy = np.rint(noisy).astype(array.dtype)
    return noisy if isinstance(value, np.ndarray) else type(value)(noisy)


def release_sites(request: Request, data: SiteData) -> int:
    """How many sites' shares make up the total this reply joins (1 when it goes alone)."""
    return len({*map(str, request.values.get("secagg.peers", [])), data.name})


class SiteBudget:
    """The releases this site has noised in this study, in every run of it (its ledger): the
    site, not the aggregator, stops at max_epsilon, and a new run is no new budget."""

    def __init__(self, state: RecordDict, study: StudyConfig):
        self.ledger, self.study = site_ledger(state), study

    def charge(self) -> None:
        """Count one more noised release, on disk before it leaves, or refuse it."""
        releases = self.ledger.current().noised
        if not Budget(self.study.differential_privacy, releases).allows():
            raise Refused(
                "privacy-budget-spent",
                f"{releases} noised releases; one more would pass max_epsilon",
            )
        self.ledger.record({"noised": 1})


def privatized(kind: Kind, reply, request: Request, data: SiteData, study: StudyConfig):
    """The reply as it may leave this site under the study's differential privacy."""
    settings = study.differential_privacy
    sigma = settings.noise_multiplier * sensitivity(kind, request, data, study)
    share = sigma / math.sqrt(release_sites(request, data))
    return noised(reply, share, np.random.default_rng())
