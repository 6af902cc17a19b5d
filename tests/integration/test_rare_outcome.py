"""A rare outcome spread thin: four sites with 5-6 positives each. Alone, no site has k
positives in a fold's training or test part, so without secure aggregation no site may
answer;
with it, the class rule applies to the totals and the study runs, equal to pooling."""

from __future__ import annotations

import pytest
from conftest import run_study, site_grid

from fedrad.common.config import StudyConfig
from fedrad.server.federation import StudyCannotRun
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

# A fixed penalty: tuning it would split each fold's 14-17 training positives into inner
# folds of about 5, which the fold rule refuses under k = 5 (with a sentence saying so).
STUDY = StudyConfig(
    federation={"min_cell_size": 5},
    validation={"scheme": "kfold", "folds": 3},
    selection={"max_features": 4},
    model={"ridge_lambda": 1.0},
)
SIZES, POSITIVES = (29, 29, 29, 29), (5, 6, 5, 6)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return write_site_feature_tables(
        tmp_path_factory.mktemp("rare"), STUDY, sizes=SIZES, positives=POSITIVES
    )


def test_without_secure_aggregation_no_site_may_answer_and_the_study_stops(tables):
    study = STUDY.updated(federation={"secure_aggregation": False})
    with pytest.raises(StudyCannotRun, match="no site can contribute") as stopped:
        run_study(site_grid(tables, study), study)
    assert str(stopped.value).count("cases of a class") == len(SIZES)


def test_with_secure_aggregation_every_site_trains_and_the_model_equals_pooling(tables):
    results = run_study(site_grid(tables, STUDY), STUDY)
    reference = pooled_reference(tables, STUDY)
    assert results["model"]["training_sites"] == sorted(tables)
    for fit in results["validation"]["fits"]:
        assert fit["training_sites"] == sorted(tables)
    model, pooled = results["model"], reference["model"]
    assert abs(model["intercept"] - pooled["intercept"]) <= 1e-9
    for name, value in pooled["coefficients"].items():
        assert abs(model["coefficients"][name] - value) <= 1e-9
    federated, central = results["metrics"]["federated"], reference["metrics"]["federated"]
    assert federated["n_positive"] == sum(POSITIVES)
    assert abs(federated["auc"] - central["auc"]) <= (
        federated["auc_error_bound"] + central["auc_error_bound"]
    )
