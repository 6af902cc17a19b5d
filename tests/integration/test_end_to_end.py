"""Synthetic MRI -> site extraction -> federation, compared with the pooled reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import read_feature_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def simulation(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("simulate")
    result = CliRunner().invoke(
        app,
        ["simulate", "--out", str(out), "--sites", "3", "--cases-per-site", "30"],
    )
    return out, result


def test_simulate_writes_results_matching_the_pooled_reference(simulation):
    out, result = simulation
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    federated = results["metrics"]["federated"]
    pooled = results["metrics"]["pooled_reference"]
    assert federated["auc"] > 0.7
    assert abs(federated["auc"] - pooled["auc"]) <= federated["auc_error_bound"] + 1e-12
    assert abs(federated["auc"] - pooled["auc"]) <= 0.02
    for key in ("sensitivity", "specificity", "balanced_accuracy"):
        assert federated[key] == pytest.approx(pooled[key], abs=1e-12)
    assert [site["name"] for site in results["sites"]] == ["site01", "site02", "site03"]
    assert all(site["status"] == "included" for site in results["sites"])
    assert set(results["metrics"]["per_site"]) == {"site01", "site02", "site03"}
    assert list(results["model"]["coefficients"]) == results["selection"]["kept"]
    model, reference = results["model"]["coefficients"], pooled["model"]["coefficients"]
    assert max(abs(model[name] - reference[name]) for name in model) <= 1e-10
    assert len(results["selection"]["kept"]) >= 5
    assert "Performance on held-out cases (kfold)" in result.output


def test_each_site_keeps_its_own_feature_table(simulation):
    out, _ = simulation
    study = StudyConfig()
    for site in ("site01", "site02", "site03"):
        table, provenance = read_feature_table(out / "sites" / site / "features.parquet")
        assert provenance["extraction_hash"] == study.extraction_hash
        assert table["case_id"].str.startswith(site).all()


def test_rerun_reuses_cohort_and_extraction_cache(simulation):
    out, _ = simulation
    before = (out / "results.json").read_text()
    result = CliRunner().invoke(
        app,
        ["simulate", "--out", str(out), "--sites", "3", "--cases-per-site", "30"],
    )
    assert result.exit_code == 0, result.output
    assert "reusing" in result.output
    assert result.output.count("(30 from cache)") == 3
    after = json.loads((out / "results.json").read_text())
    assert after["model"] == json.loads(before)["model"]


def test_clinical_study_carries_age_and_sex_into_combat_and_the_model(simulation, tmp_path):
    out, _ = simulation
    copy = tmp_path / "clinical"
    shutil.copytree(out, copy)
    study = Path(__file__).parents[2] / "simulations" / "studies" / "clinical.yaml"
    args = ["simulate", "--out", str(copy), "--sites", "3", "--cases-per-site", "30"]
    result = CliRunner().invoke(app, [*args, "--study", str(study)])
    assert result.exit_code == 0, result.output
    results = json.loads((copy / "results.json").read_text())
    coefficients = results["model"]["coefficients"]
    assert list(coefficients)[-2:] == ["clinical_sex=M", "clinical_age"]
    pooled = results["metrics"]["pooled_reference"]["model"]["coefficients"]
    assert max(abs(coefficients[name] - pooled[name]) for name in coefficients) <= 1e-10
    table, _ = read_feature_table(copy / "sites" / "site01" / "features.parquet")
    assert table["clinical_age"].between(18, 90).all()
