"""What the evaluation lets leave a site: score sums only as masked words, per-site figures
only rounded, no cell below k, no exact local AUC; and which totals a design can have."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_study, site_grid
from flwr.app import ArrayRecord, ConfigRecord

from fedrad.client.data import SiteData
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import Request
from fedrad.common.pipeline import Partition
from fedrad.server.phases.evaluation import ScoresTotal, scores_totals
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3), validation={"scheme": "kfold", "folds": 3}
)


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    tables = write_site_feature_tables(tmp_path_factory.mktemp("sites"), STUDY)
    grid = site_grid(tables, STUDY)
    return tables, grid, run_study(grid, STUDY)


def _replies(grid, message_type: str) -> list[tuple[int, dict, dict]]:
    found = []
    for node, kind, reply in grid.sent:
        if kind != message_type:
            continue
        arrays, values = {}, {}
        for record in reply.content.values():
            if isinstance(record, ArrayRecord):
                arrays |= {name: array.numpy() for name, array in record.items()}
            if isinstance(record, ConfigRecord):
                values |= dict(record)
        found.append((node, arrays, values))
    return found


def test_score_sums_leave_a_site_as_masked_words_only(study_run):
    _, grid, _ = study_run
    replies = _replies(grid, "evaluate.scores")
    assert replies
    for _, arrays, values in replies:
        assert (
            set(arrays) <= {"words", "survivors", "consent", "words-signature"}
            and arrays["words"].dtype == np.uint64
        )
        assert set(values) == {"layout"}


def test_no_exact_local_auc_leaves_a_site(study_run):
    tables, grid, results = study_run
    replies = _replies(grid, "evaluate.site_metrics")
    assert len(replies) == len(tables)
    for _, arrays, values in replies:
        assert not arrays
        assert values["auc"] == round(values["auc"], 2)
    for name, figures in results["metrics"]["per_site"].items():
        assert figures["status"] == "evaluated", name
        assert figures["auc"] == round(figures["auc"], 2)


def test_a_released_rate_sits_on_the_public_step_it_names(study_run):
    _, grid, _ = study_run
    for _, _, values in _replies(grid, "evaluate.site_metrics"):
        for rate in ("sensitivity", "specificity"):
            if rate in values:
                units = values[rate] / values[f"{rate}_step"]
                assert abs(units - round(units)) < 1e-9


def test_a_site_with_a_cell_below_k_never_sends_it(tmp_path):
    # site02 has 2 positives among its test cases: it sends no per-site figures at all,
    # and nothing else of its own in the clear about its test cases
    study = STUDY.updated(validation={"scheme": "holdout"})
    tables = write_site_feature_tables(tmp_path, study, sizes=(60, 40, 60), positives=(30, 6, 30))
    grid = site_grid(tables, study)
    results = run_study(grid, study)
    site = SiteData.load(tables["site02"], "site02", study)
    test = site.rows(Partition("holdout"), "test", study)
    assert int(site.y[test].sum()) < study.federation.min_cell_size
    (reply,) = [v for node, _, v in _replies(grid, "evaluate.site_metrics") if node == 2]
    assert "skipped" in reply and "auc" not in reply and "sensitivity" not in reply
    assert results["metrics"]["per_site"]["site02"]["status"] == "skipped"
    for node, arrays, values in _replies(grid, "evaluate.scores"):
        if node == 2 and "skipped" not in values:
            assert set(arrays) <= {"words", "survivors", "consent", "words-signature"}


def _tests(design: dict[int, list[int]]) -> dict[int, list[tuple[int, Request]]]:
    return {node: [(fit, Request()) for fit in fits] for node, fits in design.items()}


def test_fits_testing_the_same_sites_are_one_total_with_each_fits_figures():
    kfold = _tests({1: [0, 1, 2], 2: [0, 1, 2], 3: [0, 1, 2]})
    assert scores_totals(kfold, 2) == [ScoresTotal([0, 1, 2], True)]


def test_leave_one_site_out_is_one_total_over_every_fit_and_no_fit_figures():
    unseen = _tests({1: [0], 2: [1], 3: [2]})
    assert scores_totals(unseen, 2) == [ScoresTotal([0, 1, 2], False)]
    assert scores_totals(unseen, 1) == [ScoresTotal([i], True) for i in range(3)]


def test_small_groups_are_merged_beside_the_groups_large_enough():
    mixed = _tests({1: [0, 1], 2: [0], 3: [0, 2]})  # fit 0 on three sites, 1 and 2 on one
    assert scores_totals(mixed, 2) == [ScoresTotal([0], True), ScoresTotal([1, 2], False)]
    lonely = _tests({1: [0, 1], 2: [0], 3: [0]})  # fit 1's site alone: nothing to merge with
    assert scores_totals(lonely, 2) == [ScoresTotal([0, 1], False)]
