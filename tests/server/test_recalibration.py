"""The tuned ridge model and its recalibration: the federated study equals the pooled one,
the recalibration line is the pooled logistic fit of the outcomes on the out-of-fold
scores, and on a demo-sized cohort the released model's calibration slope is near 1."""

from __future__ import annotations

import numpy as np
import pytest

from fedrad.client.data import SiteData
from fedrad.client.local_pipeline import model_inputs, predict
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.models.logistic import fit_newton, newton_terms, with_intercept
from fedrad.common.pipeline import Partition
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
    model={"ridge_lambdas": [100.0, 10.0, 1.0, 0.1]},
)


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    """(tables, federated results, the fold fits' pipelines, pooled results)."""
    tables = write_site_feature_tables(
        tmp_path_factory.mktemp("recalibration"), STUDY, n_features=12, signal_strength=0.6
    )
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    protocol = StudyProtocol(in_process_transport(sites, STUDY), STUDY, log=lambda _: None)
    pipelines, fitted = [], protocol._fitted

    def recording(params, *args):
        pipelines.append(params)
        return fitted(params, *args)

    protocol._fitted = recording
    results = protocol.run()
    return tables, results, pipelines[: STUDY.validation.folds], pooled_reference(tables, STUDY)


def _line(logit: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The pooled calibration line: logistic regression of y on [1, logit]."""
    tolerance, iterations = STUDY.newton_stopping
    design = with_intercept(logit)
    return fit_newton(lambda g: newton_terms(design, y, g), 2, 0.0, tolerance, iterations).beta


def test_tuned_ridge_and_its_recalibration_equal_the_pooled_study(study_run):
    _, federated, _, pooled = study_run
    model, reference = federated["model"], pooled["model"]
    assert model["ridge_lambda"] == reference["ridge_lambda"]
    assert model["cross_validation"]["lambdas"] == list(STUDY.model.ridge_lambdas)
    np.testing.assert_allclose(
        model["cross_validation"]["mean_deviance"],
        reference["cross_validation"]["mean_deviance"],
        rtol=1e-12,
    )
    for key in model["coefficients"]:
        assert abs(model["coefficients"][key] - reference["coefficients"][key]) <= 1e-9
    ours, theirs = model["recalibration"], reference["recalibration"]
    for figure in ("intercept", "slope"):
        assert abs(ours[figure] - theirs[figure]) <= 1e-9
        assert abs(ours["cross_fitted"][figure] - theirs["cross_fitted"][figure]) <= 1e-9


def test_the_recalibration_is_the_pooled_fit_on_out_of_fold_scores(study_run):
    tables, results, pipelines, _ = study_run
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    logits, outcomes = [], []
    for fold, params in enumerate(pipelines):
        partition = Partition("kfold", fold)
        fold_logits, fold_y = [], []
        for site in sites:
            rows = site.rows(partition, "test", STUDY)
            p = predict(params, model_inputs(site, params, partition, rows, STUDY))
            fold_logits.append(np.log(p / (1 - p)))
            fold_y.append(site.y[rows])
        logits.append(np.concatenate(fold_logits))
        outcomes.append(np.concatenate(fold_y))
    a, b = _line(np.concatenate(logits), np.concatenate(outcomes))
    recalibration = results["model"]["recalibration"]
    assert recalibration["applied"]
    assert abs(recalibration["intercept"] - a) <= 1e-9
    assert abs(recalibration["slope"] - b) <= 1e-9

    before = recalibration["before"]
    assert results["model"]["intercept"] == pytest.approx(a + b * before["intercept"], abs=1e-12)
    for key, value in before["coefficients"].items():
        assert results["model"]["coefficients"][key] == pytest.approx(b * value, abs=1e-12)

    crossed = []  # each fold recalibrated by the line of the other folds' scores
    for fold in range(len(pipelines)):
        others = [i for i in range(len(pipelines)) if i != fold]
        a_k, b_k = _line(
            np.concatenate([logits[i] for i in others]),
            np.concatenate([outcomes[i] for i in others]),
        )
        crossed.append(a_k + b_k * logits[fold])
    a_c, b_c = _line(np.concatenate(crossed), np.concatenate(outcomes))
    assert abs(recalibration["cross_fitted"]["intercept"] - a_c) <= 1e-9
    assert abs(recalibration["cross_fitted"]["slope"] - b_c) <= 1e-9
    assert (
        results["metrics"]["federated"]["calibration"]["recalibrated"]["slope"]
        == (recalibration["cross_fitted"]["slope"])
    )


def test_a_demo_sized_default_study_releases_a_model_with_a_calibration_slope_near_one(
    tmp_path,
):
    """Three sites of 40 cases and 30 weak features, the default study: with lambda = 1
    this cohort's out-of-fold calibration slope is 0.73 (overfitted)."""
    study = StudyConfig()
    tables = write_site_feature_tables(
        tmp_path, study, sizes=(40, 40, 40), n_features=30, signal_strength=0.4
    )
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    results = StudyProtocol(in_process_transport(sites, study), study, log=lambda _: None).run()
    calibration = results["metrics"]["federated"]["calibration"]
    assert results["model"]["ridge_lambda"] != 1.0
    # the tuned procedure's slope, nested (lambda chosen inside each fold's training part)
    assert 0.8 <= calibration["slope"] <= 1.25
    # the recalibrated model's, cross-fitted (no fold recalibrated by its own scores)
    assert 0.8 <= calibration["recalibrated"]["slope"] <= 1.25
