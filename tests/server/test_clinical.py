"""Clinical variables from the manifest: declared in the study, checked per case, carried into
the feature table, used as ComBat covariates, as model inputs, or as the ComBat batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from case_files import STUDY as EXTRACTION_STUDY
from case_files import good_rows, write_manifest
from sklearn.linear_model import LogisticRegression

from fedrad.client.data import SiteData
from fedrad.client.extract import extract_site
from fedrad.client.manifest import read_manifest, row_problems
from fedrad.common.config import ConfigError, FederationSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.common.harmonization.combat import combat
from fedrad.common.pipeline import Partition
from fedrad.server.study import StudyProtocol
from fedrad.simulations.feature_tables import split_feature_table
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, histogram_bins=200),
    validation={"scheme": "holdout"},
    clinical={"age": None, "sex": ("F", "M")},
    model={"ridge_lambda": 1.0},  # fixed, as the scikit-learn reference below
)


def _run(tables, study) -> dict:
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    return StudyProtocol(in_process_transport(sites, study), study, log=lambda _: None).run()


# -- study config ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"harmonization": {"covariates": ["weight"]}}, "['weight'] not declared under `clinical`"),
        ({"model": {"clinical_inputs": ["weight"]}}, "model.clinical_inputs: ['weight']"),
        ({"harmonization": {"covariates": {"age": None}}}, "declare each variable's levels"),
        ({"harmonization": {"batch": "age"}}, "'age' is a clinical variable"),
        ({"clinical": {"grade": ["x"]}}, "at least two distinct levels"),
        ({"clinical": {"label": None}}, "'label' is a reserved manifest column"),
        ({"clinical": {"t1c": None}}, "['t1c'] are also study sequences"),
    ],
)
def test_study_config_names_the_bad_clinical_key(tmp_path: Path, changes, message):
    import yaml

    data = STUDY.model_dump(mode="json")
    for section, value in changes.items():
        data[section] = {**data[section], **value}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as error:
        StudyConfig.from_yaml(path)
    assert message in str(error.value)


def test_clinical_and_batch_columns_are_manifest_headers_as_written():
    study = STUDY.updated(clinical={"Age_at_MRI": None}, harmonization={"batch": "Scanner Model"})
    assert study.manifest_variables == {
        "age": None,
        "sex": ("F", "M"),
        "Age_at_MRI": None,
        "Scanner Model": (),
    }


# -- manifest and extraction -------------------------------------------------------------------
def test_bad_clinical_values_fail_only_their_case_with_a_reason(tmp_path: Path):
    rows = [
        {"case_id": "a", "label": "HGG", "t1c": "a.nii", "mask": "m.nii", "age": "61", "sex": "F"},
        {"case_id": "b", "label": "BM", "t1c": "b.nii", "mask": "m.nii", "age": "", "sex": "M"},
        {"case_id": "c", "label": "BM", "t1c": "c.nii", "mask": "m.nii", "age": "old", "sex": "M"},
        {"case_id": "d", "label": "BM", "t1c": "d.nii", "mask": "m.nii", "age": "70", "sex": "X"},
    ]
    manifest = write_manifest(tmp_path, rows)
    variables = {"age": None, "sex": ("F", "M")}
    entries = read_manifest(manifest, ["t1c"], clinical=list(variables))
    problems = row_problems(entries, ("HGG", "BM"), variables)
    assert set(problems) == {3, 4, 5}
    assert problems[3] == "age: no value (ComBat and the model cannot use a case without it)"
    assert problems[4] == "age: 'old' is not a number"
    assert problems[5] == "sex: 'X' is not one of the study's levels ['F', 'M']"


def test_extracted_table_carries_the_study_clinical_and_batch_columns(tmp_path: Path):
    rows = good_rows(tmp_path)
    for row, age, sex, scanner in zip(rows, ("54", "67.5", "71"), "FMF", "aba", strict=True):
        row |= {"age": age, "sex": sex, "scanner": scanner, "notes": "not for the study"}
    study = EXTRACTION_STUDY.updated(
        clinical={"age": None, "sex": ["F", "M"]}, harmonization={"batch": "scanner"}
    )
    out = tmp_path / "features.parquet"
    report = extract_site(
        write_manifest(tmp_path, rows), out, study, workers=1, show_progress=False
    )
    assert report.ok == ["g1", "g2", "g3"]
    table, _ = read_feature_table(out)
    assert list(table.columns[:5]) == [
        "case_id",
        "label",
        "clinical_age",
        "clinical_sex",
        "clinical_scanner",
    ]
    assert table["clinical_age"].tolist() == [54.0, 67.5, 71.0]
    assert table["clinical_sex"].tolist() == ["F", "M", "F"]
    assert "notes" not in table.columns and "clinical_notes" not in table.columns
    assert SiteData.load(out, "s", study).batch.tolist() == ["a", "b"]  # labelled cases


def test_manifest_without_a_study_clinical_column_stops_with_its_name(tmp_path: Path):
    study = EXTRACTION_STUDY.updated(clinical={"age": None})
    manifest = write_manifest(tmp_path, good_rows(tmp_path))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['age'\]"):
        extract_site(manifest, tmp_path / "f.parquet", study, workers=1, show_progress=False)


# -- ComBat batches that span sites ------------------------------------------------------------
def _with_scanners(tables: dict[str, Path], scanners: dict[str, list[str]]) -> None:
    """Give each site's cases scanner names, cycling through that site's list."""
    for name, path in tables.items():
        table, provenance = read_feature_table(path)
        cycle = scanners[name]
        table.insert(2, "clinical_scanner", [cycle[i % len(cycle)] for i in range(len(table))])
        write_feature_table(table, path, provenance)


@pytest.mark.parametrize("parametric", [True, False], ids=["parametric", "non-parametric"])
def test_scanner_batches_spanning_sites_equal_centralized_combat(tmp_path: Path, parametric):
    study = STUDY.updated(harmonization={"batch": "scanner", "parametric": parametric})
    tables = write_site_feature_tables(tmp_path, study, site_shift=3.0)
    # scanner "shared" spans site01 and site02; site01 also has its own; site03 one of its own
    _with_scanners(tables, {"site01": ["shared", "own"], "site02": ["shared"], "site03": ["x"]})
    results = _run(tables, study)
    assert results["model"]["training_sites"] == ["site01", "site02", "site03"]

    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    features = sites[0].features
    train = [site.rows(Partition("holdout"), "train", study) for site in sites]
    y = np.vstack([s.columns(features)[rows] for s, rows in zip(sites, train, strict=True)])
    batch = np.concatenate([s.batch[rows] for s, rows in zip(sites, train, strict=True)])
    expected, _ = combat(y, batch, parametric=parametric)
    kept = []
    for site, rows in zip(sites, train, strict=True):
        table, _ = read_feature_table(tables[site.name].parent / "harmonized.parquet")
        kept.append(table[features].to_numpy()[rows])
    assert np.max(np.abs(np.vstack(kept) - expected)) <= 1e-10 * np.max(np.abs(y))
    assert sorted(results["harmonization"]["per_feature_f"]["before"]) == sorted(features)


def test_kfold_with_scanner_batches_equals_the_pooled_study(tmp_path: Path):
    study = STUDY.updated(harmonization={"batch": "scanner"}, validation={"scheme": "kfold"})
    tables = write_site_feature_tables(tmp_path, study, site_shift=2.0)
    _with_scanners(tables, {"site01": ["shared", "own"], "site02": ["shared"], "site03": ["x"]})
    federated, pooled = _run(tables, study), pooled_reference(tables, study)
    coefficients, reference = federated["model"]["coefficients"], pooled["model"]["coefficients"]
    assert max(abs(coefficients[k] - reference[k]) for k in coefficients) <= 1e-10
    ours, theirs = federated["metrics"]["federated"], pooled["metrics"]["federated"]
    assert (ours["sensitivity"], ours["specificity"]) == (
        theirs["sensitivity"],
        theirs["specificity"],
    )


def test_a_site_with_fewer_than_k_cases_of_a_batch_is_left_out_by_name(tmp_path: Path):
    study = STUDY.updated(harmonization={"batch": "scanner"})
    tables = write_site_feature_tables(tmp_path, study)
    _with_scanners(tables, {"site01": ["a"], "site02": ["a"] * 40 + ["rare"], "site03": ["b"]})
    results = _run(tables, study)
    reason = results["selection"]["excluded_sites"]["site02"]
    assert "fewer than 3 training cases of batch(es) ['rare']" in reason
    assert results["model"]["training_sites"] == ["site01", "site03"]


# -- clinical variables as model inputs --------------------------------------------------------
def test_clinical_inputs_enter_the_model_as_a_pooled_fit_would(tmp_path: Path):
    study = STUDY.updated(
        harmonization={"method": "none"}, model={"clinical_inputs": ["sex", "age"]}
    )
    tables = write_site_feature_tables(tmp_path, study, clinical=True)
    results = _run(tables, study)
    coefficients = results["model"]["coefficients"]
    kept = results["selection"]["kept"]
    assert list(coefficients) == [*kept, "clinical_sex=M", "clinical_age"]

    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    train = [site.rows(Partition("holdout"), "train", study) for site in sites]
    x = np.vstack(
        [
            np.column_stack([s.columns(kept)[r], s.clinical["sex"][r] == "M", s.clinical["age"][r]])
            for s, r in zip(sites, train, strict=True)
        ]
    ).astype(np.float64)
    y = np.concatenate([s.y[r] for s, r in zip(sites, train, strict=True)])
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    reference = LogisticRegression(C=1 / study.model.ridge_lambda, tol=1e-12, max_iter=10_000)
    reference.fit(z, y)
    np.testing.assert_allclose(list(coefficients.values()), reference.coef_.ravel(), atol=1e-6)
    np.testing.assert_allclose(results["model"]["intercept"], reference.intercept_[0], atol=1e-6)

    pooled = pooled_reference(tables, study)["model"]["coefficients"]
    assert max(abs(coefficients[k] - pooled[k]) for k in coefficients) <= 1e-10


def test_a_clinical_input_that_carries_the_signal_lifts_the_auc(tmp_path: Path):
    study = STUDY.updated(harmonization={"method": "none"})
    tables = write_site_feature_tables(tmp_path, study, clinical=True, signal_strength=0.0)
    for path in tables.values():  # the diagnosis shows only in the age
        table, provenance = read_feature_table(path)
        table["clinical_age"] = np.where(table["label"] == "HGG", 50.0, 70.0) + np.round(
            np.random.default_rng(0).normal(0, 8, len(table))
        )
        write_feature_table(table, path, provenance)
    without = _run(tables, study)["metrics"]["federated"]["auc"]
    with_age = _run(tables, study.updated(model={"clinical_inputs": ["age"]}))
    assert without < 0.7 < 0.85 < with_age["metrics"]["federated"]["auc"]
    assert "clinical_age" in with_age["model"]["coefficients"]


def test_example_studies_are_valid():
    folder = Path(__file__).parents[2] / "simulations" / "studies"
    studies = {path.stem: StudyConfig.from_yaml(path) for path in folder.glob("*.yaml")}
    assert {"kfold-combat", "leave-one-site-out", "clinical"} <= set(studies)
    assert studies["clinical"].model.clinical_inputs == ("age", "sex")


def test_external_table_carries_clinical_and_batch_columns_not_as_features(tmp_path: Path):
    rng = np.random.default_rng(3)
    n = 120
    y = rng.random(n) < 0.5
    frame = {name: rng.normal(size=n) + 1.2 * y for name in "abcd"}
    frame |= {
        "dx": np.where(y, "HGG", "BM"),
        "hospital": np.repeat(["A", "B", "C"], n // 3),
        "scanner": np.tile(["ge", "siemens"], n // 2),  # each scanner at every hospital
        "age": np.round(rng.normal(60, 10, n)),
        "sex": rng.choice(["F", "M"], n),
    }
    csv = tmp_path / "table.csv"
    pd.DataFrame(frame).to_csv(csv, index=False)
    study = STUDY.updated(harmonization={"batch": "scanner"}, model={"clinical_inputs": ["age"]})
    tables = split_feature_table(csv, "dx", tmp_path / "sites", study, site_column="hospital")
    part, _ = read_feature_table(tables["A"])
    assert list(part.columns) == [
        "case_id",
        "label",
        "clinical_age",
        "clinical_sex",
        "clinical_scanner",
        *"abcd",
    ]
    results = _run(tables, study)
    assert list(results["model"]["coefficients"])[-1] == "clinical_age"
    assert results["model"]["training_sites"] == ["A", "B", "C"]
    with pytest.raises(
        ConfigError, match=r"lacks the study's clinical/batch column\(s\) \['bmi'\]"
    ):
        split_feature_table(
            csv, "dx", tmp_path / "other", study.updated(clinical={"bmi": None}), split_sites=2
        )


def test_a_site_whose_table_lacks_the_batch_column_is_set_aside_by_name(tmp_path: Path):
    from conftest import FaultyGrid

    from fedrad.client.app import TableLoader, make_client_app
    from fedrad.server.federation import GridTransport

    study = STUDY.updated(harmonization={"batch": "scanner"})
    tables = write_site_feature_tables(tmp_path, study)
    _with_scanners(tables, {"site01": ["a"], "site02": ["a"], "site03": ["b"]})
    table, provenance = read_feature_table(tables["site03"])
    write_feature_table(table.drop(columns=["clinical_scanner"]), tables["site03"], provenance)

    def locate(context):
        return str(context.node_config["site-name"]), Path(context.node_config["path"])

    app = make_client_app(TableLoader(locate, lambda _: study))
    grid = FaultyGrid(app, [{"site-name": n, "path": str(p)} for n, p in tables.items()])
    results = StudyProtocol(GridTransport(grid, 60), study, 3, log=lambda _: None).run()
    assert results["model"]["training_sites"] == ["site01", "site02"]
    (dropped,) = [site for site in results["sites"] if site["status"] != "included"]
    assert "lacks the study's batch column 'scanner'" in dropped["reason"]
