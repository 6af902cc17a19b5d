"""The census stops a study its sites' own coefficient bounds would refuse: one holding
more cases than `federation.max_cases`, in one sentence, before any other message."""

from __future__ import annotations

import pytest
from conftest import run_study, site_grid

from fedrad.common.config import StudyConfig
from fedrad.server.federation import StudyCannotRun
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation={"min_cell_size": 5, "max_cases": 80, "secure_aggregation": False},
    harmonization={"method": "none"},
    validation={"scheme": "holdout"},
)


def test_a_study_holding_more_cases_than_max_cases_stops_at_the_census(tmp_path):
    tables = write_site_feature_tables(tmp_path, STUDY, sizes=(30, 30, 30), n_features=4)
    grid = site_grid(tables, STUDY)
    with pytest.raises(StudyCannotRun) as stopped:
        run_study(grid, STUDY)
    assert str(stopped.value) == (
        "the included sites hold at least 90 cases, more than federation.max_cases (80), "
        "which bounds the coefficients every site answers at: set federation.max_cases to "
        "the study's cases over all sites, at least 90"
    )
    assert {message_type for _, message_type, _ in grid.sent} == {"query.census"}
