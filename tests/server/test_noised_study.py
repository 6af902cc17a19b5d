"""A study under differential privacy, end to end: it reports the budget its noised releases
spent (one per Newton iteration, calibration step and score total), fits run the fixed
iterations the study sets, a study stops with a sentence before passing its ceiling, and
sites refuse an aggregator that ignores it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_study, site_grid

from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.differential_privacy import Budget
from fedrad.common.messages import REFUSED
from fedrad.server.federation import StudyCannotRun
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    harmonization={"method": "none"},
    selection={"max_features": 5},
    validation={"scheme": "kfold", "folds": 3},
    differential_privacy={"noise_multiplier": 2.0, "newton_iterations": 3},
)
NOISED_KINDS = ("newton", "calibration", "scores")


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    return write_site_feature_tables(tmp_path_factory.mktemp("sites"), STUDY, sizes=(40, 36, 44))


def test_a_noised_study_reports_the_budget_its_releases_spent(tables):
    results = run_study(site_grid(tables, STUDY), STUDY)
    spent = results["privacy"]["differential_privacy"]
    released = sum(results["round_counts"].get(kind, 0) for kind in NOISED_KINDS)
    assert spent["releases"] == released > 0
    assert spent["epsilon"] == pytest.approx(Budget(STUDY.differential_privacy, released).epsilon)
    assert spent["delta"] == STUDY.differential_privacy.delta
    newton = [r for r in results["rounds"] if r["phase"] == "newton"]
    per_fit = {r["fit"]: r["iteration"] for r in newton}
    assert set(per_fit.values()) == {3}  # fixed iterations: a converged deviance is not released
    assert "lasso-round" not in results["round_counts"]  # each step its own noised release
    assert 0.0 <= results["metrics"]["federated"]["auc"] <= 1.0
    assert results["privacy"]["secure_aggregation"] is True


def test_a_study_without_noise_reports_none_and_keeps_its_hashes():
    assert StudyConfig().updated(differential_privacy=None).study_hash == StudyConfig().study_hash
    assert STUDY.study_hash != STUDY.updated(differential_privacy=None).study_hash


def test_a_study_stops_with_a_sentence_before_it_would_pass_its_ceiling(tables):
    ceiling = Budget(STUDY.differential_privacy, 4).epsilon * 1.0001
    study = STUDY.updated(differential_privacy={"max_epsilon": ceiling})
    with pytest.raises(StudyCannotRun, match="max_epsilon"):
        run_study(site_grid(tables, study), study)


def test_sites_refuse_an_aggregator_that_ignores_the_ceiling(tables, monkeypatch):
    class Unbounded(Budget):
        def allows(self, releases: int = 1) -> bool:
            return True

    monkeypatch.setattr("fedrad.server.study.Budget", Unbounded)
    ceiling = Budget(STUDY.differential_privacy, 4).epsilon * 1.0001
    study = STUDY.updated(differential_privacy={"max_epsilon": ceiling})
    grid = site_grid(tables, study)
    with pytest.raises(StudyCannotRun):
        run_study(grid, study)
    refusals = {reply.content["values"].get(REFUSED) for _, _, reply in grid.sent}
    assert "privacy-budget-spent" in refusals


def test_l1_fits_under_noise_are_refused_when_the_study_is_read():
    with pytest.raises(ValueError, match="line search"):
        STUDY.updated(model={"kind": "lasso-logistic"})


@pytest.mark.parametrize("secure", [True, False])
def test_a_noised_mlp_study_charges_every_round_and_reports_no_loss(tables, secure):
    study = STUDY.updated(
        model={"kind": "mlp", "rounds": 4, "hidden_units": 4},
        federation={"secure_aggregation": secure},
    )
    results = run_study(site_grid(tables, study), study)
    spent = results["privacy"]["differential_privacy"]
    released = sum(results["round_counts"].get(k, 0) for k in ("mlp-round", *NOISED_KINDS))
    assert spent["releases"] == released >= 4 * 4  # 3 folds and the final fit, 4 rounds each
    assert set(results["model"]["train_loss_by_round"]) == {0.0}  # not released under noise


def test_per_site_strategies_are_refused_with_noise():
    with pytest.raises(ValueError, match="fedavg or fedprox"):
        STUDY.updated(
            model={"kind": "mlp", "strategy": "fedmedian"}, federation={"secure_aggregation": False}
        )
