"""`fedrad site predict` on new cases: a signed bundle applied after QC and extraction; a
case with a missing sequence or an empty region is named with its reason and the rest are
predicted; a bundle of another extraction is refused with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from case_files import STUDY, bad_rows, good_rows, write_manifest
from scipy.special import expit
from typer.testing import CliRunner

from fedrad.client.cli import site_app
from fedrad.client.extract import extract_site
from fedrad.common.feature_table import read_feature_table
from fedrad.common.model_signing import SIGNING_PUBLIC_KEY, make_signing_key
from fedrad.common.pipeline import PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.server.model_release import bundle_payload, release_bundle
from fedrad.server.phases.evaluation import FittedPipeline
from fedrad.server.results import study_summary

PREDICT_STUDY = STUDY.updated(harmonization={"method": "none"})
PREDICT_STUDY = PREDICT_STUDY.updated(federation={"min_cell_size": 1})


def _params(table: pd.DataFrame) -> PipelineParams:
    """A hand-made linear model of three first-order features (the fit is not the point)."""
    features = [c for c in table.columns if "firstorder" in c][:3]
    x = table[features].to_numpy()
    return PipelineParams(
        features=features,
        standardizer=Standardizer(mean=x.mean(axis=0), scale=x.std(axis=0) + 1.0),
        beta=np.array([0.2, 1.5, -0.8, 0.4]),
    )


def _bundle(root: Path, params: PipelineParams, study=PREDICT_STUDY, hash_=None) -> Path:
    summary = study_summary(study) | ({"extraction_hash": hash_} if hash_ else {})
    results = {
        "study": summary,
        "model": {"kind": "ridge-logistic", "training_sites": ["a", "b"]},
        "metrics": {"federated": {}},
        "sites": [{"name": "a", "cases": 40}, {"name": "b", "cases": "<k"}],
        "validation": {"fits": []},
        "privacy": {"secure_aggregation": True},
    }
    final = FittedPipeline(params, {}, ["a", "b"], {}, threshold=0.45)
    key = make_signing_key(root / "keys")
    return release_bundle(bundle_payload(results, final, 1), key, root)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """A manifest without a label column: three good cases, one with an empty region and
    one with a missing sequence; and the good cases' features as extraction gives them."""
    root = tmp_path_factory.mktemp("cases")
    good = good_rows(root)
    bad = {row["case_id"]: row for row in bad_rows(root)}
    rows = [*good, bad["empty"], bad["nofile"]]
    manifest = write_manifest(root, [{k: v for k, v in r.items() if k != "label"} for r in rows])
    reference = extract_site(write_manifest(root, good, "good.csv"), root / "ref.parquet", STUDY)
    table = read_feature_table(reference.table_path)[0].set_index("case_id")
    site = root / "site.yaml"
    site.write_text("labels: {1: enhancing, 2: necrosis, 3: oedema}\n")
    return manifest, table, site


def _predict(bundle: Path, cases, out: Path, *extra: str):
    manifest, _, site = cases
    args = ["predict", "--bundle", str(bundle), "--manifest", str(manifest), "--out", str(out)]
    args += ["--site", str(site)]
    return CliRunner().invoke(site_app, [*args, "--workers", "1", *extra])


def test_cases_are_predicted_and_failing_ones_named(tmp_path, cases):
    table = cases[1]
    params = _params(table)
    bundle = _bundle(tmp_path, params)
    result = _predict(
        bundle, cases, tmp_path / "p.csv", "--trust", str(tmp_path / "keys" / SIGNING_PUBLIC_KEY)
    )
    assert result.exit_code == 1, result.output
    frame = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index("case_id")
    predicted = frame[frame["status"] == "predicted"]
    assert sorted(predicted.index) == ["g1", "g2", "g3"]
    z = params.standardizer.transform(table.loc[predicted.index, params.features].to_numpy())
    expected = expit(params.beta[0] + z @ params.beta[1:])
    assert np.max(np.abs(predicted["probability_HGG"].to_numpy(float) - expected)) < 1e-12
    assert list(predicted["predicted_class"]) == ["HGG" if p >= 0.45 else "BM" for p in expected]
    assert (predicted["threshold"].astype(float) == 0.45).all()
    top = params.features[int(np.argmax(np.abs(z[0] * params.beta[1:])))]
    assert predicted.loc["g1", "top_features"].startswith(top)
    assert "empty" in frame.loc["empty", "reason"]
    assert "flair" in frame.loc["nofile", "reason"]
    output = " ".join(result.output.split())
    assert "empty" in output and "nofile" in output and "3 of 5 case(s) predicted" in output
    assert "Traceback" not in result.output


def test_without_a_trusted_key_it_warns_loudly(tmp_path, cases):
    table = cases[1]
    bundle = _bundle(tmp_path, _params(table))
    result = _predict(bundle, cases, tmp_path / "p.csv")
    assert "no --trust key" in " ".join(result.output.split())


def test_a_bundle_of_another_extraction_is_refused_with_the_fix(tmp_path, cases):
    table = cases[1]
    bundle = _bundle(tmp_path, _params(table), hash_="0" * 16)
    result = _predict(bundle, cases, tmp_path / "p.csv")
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "trained on features of hash 0000000000000000" in output
    assert "Install the extractors the bundle was made with" in output
    assert not (tmp_path / "p.csv").exists()


def test_a_tampered_bundle_is_refused_before_any_extraction(tmp_path, cases):
    table = cases[1]
    bundle = _bundle(tmp_path, _params(table))
    document = json.loads(bundle.read_text())
    document["payload"]["threshold"]["value"] = 0.05
    bundle.write_text(json.dumps(document))
    result = _predict(bundle, cases, tmp_path / "p.csv")
    assert result.exit_code == 2
    assert "fails its signature check" in " ".join(result.output.split())
    assert not (tmp_path / "p.work").exists()


def test_a_manifest_without_a_sequence_column_is_named_not_its_copy(tmp_path, cases):
    bundle = _bundle(tmp_path, _params(cases[1]))
    frame = pd.read_csv(cases[0]).drop(columns=["flair"])
    manifest = tmp_path / "short.csv"
    frame.to_csv(manifest, index=False)
    result = _predict(bundle, (manifest, None, cases[2]), tmp_path / "p.csv")
    assert result.exit_code == 2
    output = "".join(result.output.split())
    assert f"manifest{manifest}lackscolumn(s)['flair']".replace(" ", "") in output


def test_an_impute_mean_model_fills_a_missing_value_with_its_training_mean(tmp_path, cases):
    table = cases[1]
    real = _params(table)
    features = [*real.features, "t1c_necrosis_original_firstorder_NotExtracted"]
    means = np.append(real.standardizer.mean, 0.5)
    params = PipelineParams(
        features=features,
        standardizer=Standardizer(mean=means, scale=np.append(real.standardizer.scale, 2.0)),
        beta=np.append(real.beta, 0.7),
        imputation=means,
    )
    result = _predict(_bundle(tmp_path, params), cases, tmp_path / "p.csv")
    frame = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index("case_id")
    predicted = frame[frame["status"] == "predicted"]
    assert sorted(predicted.index) == ["g1", "g2", "g3"], result.output
    x = np.column_stack([table.loc[predicted.index, real.features].to_numpy(), np.full(3, 0.5)])
    expected = expit(params.beta[0] + params.standardizer.transform(x) @ params.beta[1:])
    assert np.max(np.abs(predicted["probability_HGG"].to_numpy(float) - expected)) < 1e-12
    assert predicted["harmonization"].str.contains("1 missing value(s) filled", regex=False).all()
    without = PipelineParams(features, standardizer=params.standardizer, beta=params.beta)
    _predict(_bundle(tmp_path / "b", without), cases, tmp_path / "q.csv")
    refused = pd.read_csv(tmp_path / "q.csv", keep_default_na=False).set_index("case_id")
    assert refused.loc["g1", "status"] == "not predicted"
    assert "no value of 1 model feature(s)" in refused.loc["g1", "reason"]
