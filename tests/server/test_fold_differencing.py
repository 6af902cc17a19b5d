"""Fold differencing under secure aggregation, as a curious aggregator would try it: the
screening total over every case (the final fit's) minus the same total over one fold's
training cases is that fold's test part, summed over all sites. The aggregator refuses,
before any sum is asked, a fold whose test part may hold fewer than k cases of a class
(`server/phases/fold_rule.py`), so what the subtraction yields is a total over >= k
cases of each class. An aggregator that skips its rule gets no share of such a fold: each
site applies it again from the signed census counts (`client/fold_check.py`). With both
patched out, the subtraction gives one case's feature row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_study, site_grid

from fedrad.client.data import SiteData
from fedrad.client.secure_aggregation import SiteSecAgg
from fedrad.common.config import StudyConfig
from fedrad.common.messages import Kind, ScreenReply
from fedrad.common.pipeline import Partition
from fedrad.server import study as study_module
from fedrad.server.federation import Federation, StudyCannotRun
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation={"min_cell_size": 5},
    harmonization={"method": "none"},
    validation={"scheme": "kfold", "folds": 5},
    selection={"max_features": 3},
)
K = STUDY.federation.min_cell_size


def recording_screens(monkeypatch) -> dict[tuple, ScreenReply]:
    """Every first screening total the aggregator unmasks (sums about zero), by the
    partition it was asked over."""
    totals = {}
    total = Federation.total

    def recording(self, kind, requests, check=None):
        result = total(self, kind, requests, check)
        request = next(iter(requests.values()))
        if kind is Kind.SCREEN and "centre.positives" not in request.arrays:
            totals[request.partition] = result
        return result

    monkeypatch.setattr(Federation, "total", recording)
    return totals


def differenced(totals: dict, fold: int) -> ScreenReply:
    """The final fit's total minus fold `fold`'s training total, field by field."""
    final, part = totals[Partition("all")], totals[Partition("kfold", fold)]
    return ScreenReply(**{name: getattr(final, name) - getattr(part, name) for name in vars(final)})


def rows_of(tables: dict[str, Path], fold: int, positive: bool) -> np.ndarray:
    """Every site's feature rows of one class in fold `fold`'s test part."""
    rows = []
    for name, path in tables.items():
        data = SiteData.load(path, name, STUDY)
        test = data.rows(Partition("kfold", fold), "test", STUDY) & (data.y == positive)
        rows.append(data.x[test])
    return np.vstack(rows)


@pytest.fixture(scope="module")
def common(tmp_path_factory) -> dict[str, Path]:
    """Three sites of 30 with 10 positives each: every fold's test part holds 6 positives
    and 12 negatives over the three."""
    root = tmp_path_factory.mktemp("common")
    return write_site_feature_tables(root, STUDY, sizes=(30, 30, 30), positives=(10, 10, 10))


@pytest.fixture(scope="module")
def rare(tmp_path_factory) -> dict[str, Path]:
    """Two sites of 30 with 6 and 3 positives: folds 4 and 5 hold one positive between them
    (site01 deals 2, 1, 1, 1, 1 positives, site02 1, 1, 1, 0, 0)."""
    root = tmp_path_factory.mktemp("rare")
    return write_site_feature_tables(root, STUDY, sizes=(30, 30), positives=(6, 3))


def test_what_fold_differencing_yields_is_a_total_over_k_cases_of_each_class(common, monkeypatch):
    totals = recording_screens(monkeypatch)
    run_study(site_grid(common, STUDY), STUDY)
    for fold in range(STUDY.validation.folds):
        leaked = differenced(totals, fold)
        assert leaked.positives_n >= K and leaked.negatives_n >= K
        # the attack reads exactly the fold's test part, summed over all sites
        for positive, s1 in ((True, leaked.positives_s1), (False, leaked.negatives_s1)):
            rows = rows_of(common, fold, positive)
            assert len(rows) == (leaked.positives_n if positive else leaked.negatives_n)
            np.testing.assert_allclose(s1, rows.sum(axis=0), rtol=0, atol=1e-9)


def test_a_fold_whose_pooled_test_part_holds_fewer_than_k_of_a_class_stops_the_study_first(
    rare, monkeypatch
):
    totals = recording_screens(monkeypatch)
    grid = site_grid(rare, STUDY)
    with pytest.raises(StudyCannotRun) as stopped:
        run_study(grid, STUDY)
    reason = str(stopped.value)
    # site02's positives are "<5" in its census: the aggregator counts them as none
    assert reason.startswith("fold 1's test part may hold as few as 2 HGG cases over site01")
    assert "federation.min_cell_size" in reason
    assert reason.endswith(
        "no k-fold split of these sites can hold k of it in every fold (use holdout)"
    )
    assert not totals  # no sum was asked
    asked = {message_type for _, message_type, _ in grid.sent}
    assert asked == {"query.census", "query.secagg_keys", "query.secagg_peers"}


def test_sites_give_no_share_of_a_fold_an_aggregator_skipping_its_rule_asks(rare, monkeypatch):
    monkeypatch.setattr(study_module, "check_test_parts", lambda *_, **__: None)
    totals = recording_screens(monkeypatch)
    grid = site_grid(rare, STUDY)
    with pytest.raises(StudyCannotRun) as stopped:
        run_study(grid, STUDY)
    assert not any(partition.scheme == "kfold" for partition in totals)
    assert "fold-below-k" in str(stopped.value)
    for name, path in rare.items():
        log = (path.parent / "site.log").read_text(encoding="utf-8")
        assert "fold 1's test part may hold 2 HGG cases over site01, site02" in log, name


def test_without_either_rule_fold_differencing_gives_one_cases_feature_row(rare, monkeypatch):
    monkeypatch.setattr(study_module, "check_test_parts", lambda *_, **__: None)
    monkeypatch.setattr(SiteSecAgg, "_check_fold_rule", lambda *_, **__: None)
    totals = recording_screens(monkeypatch)
    run_study(site_grid(rare, STUDY), STUDY)
    leaked = differenced(totals, fold=3)
    assert leaked.positives_n == 1
    (row,) = rows_of(rare, 3, positive=True)  # site01's one positive of fold 4
    np.testing.assert_allclose(leaked.positives_s1, row, rtol=0, atol=1e-9)


def test_an_l1_fits_inner_folds_are_held_to_the_rule_before_any_sum(tmp_path, monkeypatch):
    """Two outer folds of 18 positives hold 9 each; the three inner folds of a fold's
    training part hold 3, whose training totals an L1 fit's would differ from by them."""
    study = STUDY.updated(model={"kind": "lasso-logistic"}, validation={"folds": 2})
    tables = write_site_feature_tables(tmp_path, study, sizes=(30, 30, 30), positives=(6, 6, 6))
    totals = recording_screens(monkeypatch)
    with pytest.raises(StudyCannotRun) as stopped:
        run_study(site_grid(tables, study), study)
    assert str(stopped.value).startswith(
        "inner fold 1's test part may hold as few as 3 HGG cases over site01, site02, site03"
    )
    assert str(stopped.value).endswith("or a fixed model.lasso_lambda")
    assert not totals
    fixed = study.updated(model={"lasso_lambda": 0.05})  # no inner folds: the study runs
    run_study(site_grid(tables, fixed), fixed)
    assert totals
