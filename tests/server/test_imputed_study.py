"""`missing_values: impute-mean`: each fit fills a missing feature value with the pooled mean
of that feature over its training cases, summed from the sites (secure aggregation), before
ComBat. Checked against the pooled computation on the same cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import site_grid

from fedrad.client.data import SiteData
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.common.pipeline import Partition
from fedrad.server.checkpoint import Phase
from fedrad.server.federation import GridTransport
from fedrad.server.observer import StudyObserver
from fedrad.server.study import StudyProtocol
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

# The final model as fitted, not recalibrated: a table imputed centrally gives its test cases
# all cases' means, not their fold's, so its out-of-fold scores (and line) differ by design.
STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
    model={"recalibrate": False},
    missing_values="impute-mean",
)
F = "t1c_enhancing_original_firstorder_F{}".format


class Means(StudyObserver):
    """Each fit's features and imputation means, as the study saved them."""

    def __init__(self):
        self.fits: dict[str, tuple[list[str], np.ndarray]] = {}

    def phase(self, phase: Phase, loaded: bool = False) -> None:
        if "imputation.mean" in phase.arrays:
            self.fits[phase.tag] = (
                phase.content["values"]["features"],
                phase.arrays["imputation.mean"],
            )


def _with_gaps(tables: dict[str, Path], gaps: dict[str, dict[str, float]], seed: int = 1):
    """Blank a share of the cells of some features of some sites (site -> feature -> share)."""
    rng = np.random.default_rng(seed)
    for site, features in gaps.items():
        table, provenance = read_feature_table(tables[site])
        for feature, share in features.items():
            table.loc[rng.random(len(table)) < share, feature] = np.nan
        write_feature_table(table, tables[site], provenance)
    return tables


def _run(tables, study, log=lambda _: None) -> tuple[dict, dict]:
    observer = Means()
    transport = GridTransport(site_grid(tables, study), timeout_s=60)
    results = StudyProtocol(transport, study, len(tables), log=log, observer=observer).run()
    return results, observer.fits


def _pooled_training(tables, study, partition: Partition, features: list[str]) -> np.ndarray:
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    return np.vstack([s.columns(features)[s.rows(partition, "train", study)] for s in sites])


def _observed_mean(x: np.ndarray) -> np.ndarray:
    """Each column's mean over its observed values, from exactly rounded sums."""
    return np.array([math.fsum(c[~np.isnan(c)]) / np.sum(~np.isnan(c)) for c in x.T])


def _max_difference(a: dict, b: dict) -> float:
    assert list(a) == list(b)
    return max(abs(a[name] - b[name]) for name in a)


@pytest.fixture
def gapped(tmp_path: Path) -> dict[str, Path]:
    tables = write_site_feature_tables(tmp_path / "sites", STUDY, sizes=(60, 45, 80))
    gaps = {"site01": {F(1): 0.2, F(3): 0.1}, "site02": {F(1): 0.15}, "site03": {F(4): 0.2}}
    tables = _with_gaps(tables, gaps)
    table, provenance = read_feature_table(tables["site03"])
    table.loc[0, F(0)] = np.nan  # one missing value: a count below k, hidden in the totals
    write_feature_table(table, tables["site03"], provenance)
    return tables


def test_each_fit_imputes_the_pooled_mean_of_its_training_cases(gapped):
    results, fits = _run(gapped, STUDY)
    assert [s["status"] for s in results["sites"]] == ["included"] * 3
    assert not results["selection"]["excluded_sites"]
    assert "after" in results["harmonization"]  # the per-site moments, each batch >= k
    assert set(fits) == {"fold 1", "fold 2", "fold 3", "final"}
    for tag, (features, means) in fits.items():
        partition = Partition("all") if tag == "final" else Partition("kfold", int(tag[-1]) - 1)
        training = _pooled_training(gapped, STUDY, partition, features)
        np.testing.assert_allclose(means, _observed_mean(training), rtol=0, atol=1e-12)
    # a fold's means are its training cases' alone: never the test cases', nor all cases'
    everything = _pooled_training(gapped, STUDY, Partition("all"), fits["final"][0])
    for fold in range(3):
        _, means = fits[f"fold {fold + 1}"]
        assert np.all(np.abs(means - np.nanmean(everything, axis=0))[[0, 1, 3, 4]] > 1e-6)


def test_the_study_equals_the_pooled_study_and_a_complete_table_imputed_centrally(gapped, tmp_path):
    federated, fits = _run(gapped, STUDY)
    pooled = pooled_reference(gapped, STUDY)
    model = federated["model"]
    assert _max_difference(model["coefficients"], pooled["model"]["coefficients"]) <= 1e-9
    assert abs(model["intercept"] - pooled["model"]["intercept"]) <= 1e-9
    assert federated["metrics"]["federated"]["balanced_accuracy"] == pytest.approx(
        pooled["metrics"]["federated"]["balanced_accuracy"], abs=1e-12
    )
    # the final model's pipeline is the one fitted on the tables imputed with the pooled
    # means of every case, computed here in one place, by a study with nothing missing
    features, _ = fits["final"]
    means = _observed_mean(_pooled_training(gapped, STUDY, Partition("all"), features))
    complete = {}
    for name, path in gapped.items():
        table, provenance = read_feature_table(path)
        table[features] = table[features].fillna(dict(zip(features, means, strict=True)))
        complete[name] = tmp_path / "complete" / name / "features.parquet"
        write_feature_table(table, complete[name], provenance)
    central = pooled_reference(complete, STUDY.updated(missing_values=None))["model"]
    assert _max_difference(model["coefficients"], central["coefficients"]) <= 1e-9
    assert abs(model["intercept"] - central["intercept"]) <= 1e-9


def test_a_test_case_is_filled_with_its_folds_training_mean_not_its_own(gapped):
    from fedrad.client.local_pipeline import study_features
    from fedrad.common.pipeline import PipelineParams

    _, fits = _run(gapped, STUDY)
    site = SiteData.load(gapped["site01"], "site01", STUDY)
    features, means = fits["fold 2"]
    test = site.rows(Partition("kfold", 1), "test", STUDY)
    column = features.index(F(1))
    gaps = np.isnan(site.columns(features)[:, column]) & test
    assert gaps.sum() >= 1
    filled = study_features(site, PipelineParams(features, imputation=means), test)
    assert np.all(filled[gaps[test], column] == means[column])
    own_fold = np.nanmean(site.columns(features)[test, column])
    assert abs(means[column] - own_fold) > 1e-6


def test_a_feature_missing_in_all_of_a_sites_cases_takes_the_other_sites_mean(tmp_path):
    tables = write_site_feature_tables(tmp_path / "sites", STUDY, sizes=(60, 45, 80))
    tables = _with_gaps(tables, {"site02": {F(2): 1.0}})
    results, fits = _run(tables, STUDY)
    assert [s["status"] for s in results["sites"]] == ["included"] * 3
    features, means = fits["final"]
    training = _pooled_training(tables, STUDY, Partition("all"), features)
    assert np.isnan(training[60:105, features.index(F(2))]).all()  # site02's rows
    np.testing.assert_allclose(means, _observed_mean(training), rtol=0, atol=1e-12)
    pooled = pooled_reference(tables, STUDY)["model"]
    assert _max_difference(results["model"]["coefficients"], pooled["coefficients"]) <= 1e-9


def test_a_feature_missing_at_every_site_leaves_each_fit_with_a_sentence(tmp_path):
    tables = write_site_feature_tables(tmp_path / "sites", STUDY, sizes=(60, 45, 80))
    tables = _with_gaps(tables, {site: {F(5): 1.0} for site in tables})
    lines: list[str] = []
    results, fits = _run(tables, STUDY, lines.append)
    assert all(F(5) not in features for features, _ in fits.values())
    assert [s["status"] for s in results["sites"]] == ["included"] * 3
    assert F(5) not in results["model"]["coefficients"]
    said = [line for line in lines if F(5) in line]
    assert said and all("no value in any training case at any site" in line for line in said)
    assert "fold 1: 1 feature(s)" in said[0]


class _DiesAtPersist(GridTransport):
    def ask(self, kind, requests):
        if kind == "persist":
            raise RuntimeError("the aggregator died")
        return super().ask(kind, requests)


def test_a_resumed_study_loads_the_fits_that_left_a_feature_out(tmp_path):
    from fedrad.server.checkpoint import Checkpoint

    tables = write_site_feature_tables(tmp_path / "sites", STUDY, sizes=(60, 45, 80))
    tables = _with_gaps(tables, {site: {F(5): 1.0} for site in tables})
    folder = tmp_path / "checkpoint"
    dying = _DiesAtPersist(site_grid(tables, STUDY), timeout_s=60)
    with pytest.raises(RuntimeError, match="died"):
        StudyProtocol(
            dying, STUDY, 3, log=lambda _: None, checkpoint=Checkpoint.fresh(folder, STUDY, 1)
        ).run()
    lines: list[str] = []
    transport = GridTransport(site_grid(tables, STUDY), timeout_s=60)
    checkpoint = Checkpoint.resume(folder, STUDY, run_id=2)
    results = StudyProtocol(transport, STUDY, 3, log=lines.append, checkpoint=checkpoint).run()
    assert sum("loaded from the checkpoint" in line for line in lines) == 5  # 4 fits, evaluation
    assert not [line for line in lines if "refitting" in line]
    assert F(5) not in results["model"]["coefficients"]
