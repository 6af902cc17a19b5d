"""A site noises its own replies under differential privacy, through the real ClientApp: the
noise has the stated scale (its share of it inside a masked total), counts stay exact, an
aggregator holding both candidate tables cannot tell which one a site has better than the
Gaussian bound allows, and a site stops answering once its budget is spent, whatever the
aggregator asks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import site_grid
from scipy.stats import norm

from fedrad.client.data import SiteData
from fedrad.client.differential_privacy import noised, release_sites
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.differential_privacy import Budget, newton_sensitivity
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.common.messages import (
    REFUSED,
    Kind,
    Request,
    ScoresReply,
    decode_reply,
    encode_request,
    flatten,
)
from fedrad.common.models.logistic import NewtonTerms
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.server.federation import GridTransport
from fedrad.simulations.synth.features import write_site_feature_tables

NOISE = {"noise_multiplier": 1.0, "input_clip": 2.0}
STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, secure_aggregation=False),
    harmonization={"method": "none"},
    validation={"scheme": "holdout"},
    differential_privacy=NOISE,
)


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory) -> dict[str, Path]:
    """Two tables of one site that differ in one case: the second's first case replaced by
    one an attacker would pick (extreme values, the other label)."""
    folder = tmp_path_factory.mktemp("neighbours")
    (path,) = write_site_feature_tables(folder, STUDY, sizes=(30,)).values()
    table, provenance = read_feature_table(path)
    features = [c for c in table.columns if c.startswith("original_")][:3]
    table.loc[0, features] = table[features].mean() + 50 * table[features].std()
    table.loc[0, "label"] = "BM" if table.loc[0, "label"] == "HGG" else "HGG"
    other = folder / "other" / "features.parquet"
    other.parent.mkdir()
    write_feature_table(table, other, provenance)
    return {"site01": path, "other": other}


def _newton_request(path: Path, study: StudyConfig) -> Request:
    data = SiteData.load(path, "site01", study)
    features = data.columns(data.features)
    params = PipelineParams(
        features=data.features,
        selected=np.arange(3),
        standardizer=Standardizer(mean=features[:, :3].mean(0), scale=features[:, :3].std(0)),
        beta=np.array([0.1, 0.3, -0.2, 0.1]),
    )
    return Request(params, Partition("holdout"))


def _ask(path: Path, study: StudyConfig, times: int) -> list:
    """The site's replies to `times` identical NEWTON requests, as the aggregator gets them."""
    transport = GridTransport(site_grid({"site01": path}, study), timeout_s=60)
    payload, _ = encode_request(_newton_request(path, study), ())
    return [transport.ask(Kind.NEWTON, {1: payload})[0][1] for _ in range(times)]


def _vector(reply) -> np.ndarray:
    return flatten(decode_reply(Kind.NEWTON, reply))[0]


def test_noise_has_the_stated_scale_and_leaves_counts_exact():
    rng = np.random.default_rng(0)
    terms = NewtonTerms(np.zeros(3), np.zeros((3, 3)), 0.0, 40)
    draws = np.array(
        [
            np.concatenate([(t := noised(terms, 2.5, rng)).gradient, t.hessian.ravel()])
            for _ in range(2000)
        ]
    )
    assert draws.std() == pytest.approx(2.5, rel=0.03)
    assert noised(terms, 2.5, rng).n == 40
    scores = ScoresReply(
        np.zeros(4, dtype=np.int64),
        np.zeros(4, dtype=np.int64),
        np.zeros((1, 4), dtype=np.int64),
        np.zeros((3, 10)),
    )
    noisy = noised(scores, 3.0, rng)
    assert noisy.positives.dtype == np.int64 and np.any(noisy.positives != 0)


def test_inside_a_masked_total_each_site_adds_its_share_of_the_variance():
    data = type("Site", (), {"name": "site01"})()
    assert (
        release_sites(Request(values={"secagg.peers": ["site01", "site02", "site03"]}), data) == 3
    )
    assert release_sites(Request(values={"secagg.peers": ["site02", "site03"]}), data) == 3
    assert release_sites(Request(), data) == 1  # alone: all of the noise


def test_an_aggregator_holding_both_candidate_tables_tells_them_apart_no_better_than_the_bound(
    neighbours,
):
    exact = STUDY.updated(differential_privacy=None)
    clear = {name: _vector(_ask(path, exact, 1)[0]) for name, path in neighbours.items()}
    assert np.linalg.norm(clear["site01"] - clear["other"]) > 1.0  # no noise: told apart at once
    trials = 150
    guesses_right = 0
    for truth, path in neighbours.items():
        for reply in _ask(path, STUDY, trials):
            seen = _vector(reply)
            nearest = min(clear, key=lambda name: np.linalg.norm(seen - clear[name]))
            guesses_right += nearest == truth
    accuracy = guesses_right / (2 * trials)
    bound = norm.cdf(1 / (2 * NOISE["noise_multiplier"]))  # the best test against Gaussian noise
    assert accuracy <= bound + 3 * math.sqrt(bound * (1 - bound) / (2 * trials))
    separation = np.linalg.norm(clear["site01"] - clear["other"])
    assert separation <= newton_sensitivity(STUDY.differential_privacy) + 1e-9


def test_a_site_stops_answering_once_its_budget_is_spent_whatever_the_aggregator_asks(neighbours):
    ceiling = Budget(STUDY.differential_privacy, 3).epsilon * 1.0001
    study = STUDY.updated(differential_privacy={**NOISE, "max_epsilon": ceiling})
    replies = _ask(neighbours["site01"], study, 5)
    assert [REFUSED in reply.values for reply in replies] == [False, False, False, True, True]
    assert replies[-1].values[REFUSED] == "privacy-budget-spent"
