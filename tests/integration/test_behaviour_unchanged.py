"""The study's numbers do not move when the code around them does.

Each case runs a real `fedrad simulate` (Flower's simulation engine) and compares its
`results.json` with a recorded one: models to 1e-12, every other number too, every string
exactly. The MLP is held to 1e-6: torch trains in float32 and FedAvg sums replies in the
order they arrive, which varies from run to run. Traffic and round logs are left out: they
describe how the numbers travelled, which may change; so are the sites' identity keys and
the study hash, made afresh in every run. Record anew (only when a result is meant to
change, and say so in the commit) with FEDRAD_RECORD_GOLDEN=1.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import read_feature_table
from fedrad.simulations.synth.features import write_site_feature_tables

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("FEDRAD_RECORD_GOLDEN") == "1"
NOT_RESULTS = {"traffic_bytes_from_sites", "traffic_bytes_to_sites", "rounds", "round_counts"}
# The sites' identity keys are made afresh in every output folder and pinned in the study,
# whose hash therefore changes too: neither is a result.
# So is the comparison's differential-privacy arm: its noise is drawn afresh at every run.
DP_ARM = "federated + ComBat, differential privacy"
PER_RUN = {"site_keys", "study_hash", DP_ARM, "differential privacy"}
# Small synthetic MRI cohorts (QC keeps 17-27 of 30 cases a site) in 3 folds, so that every
# fold's test part holds >= k = 5 of each site's cases (a site sends no sum of a fold whose
# test part is smaller); a fixed ridge penalty, as inner folds would cut their test parts
# below k at the smallest sites
MRI = ["--sites", "3", "--cases-per-site", "30", "--size", "48"]
MRI_STUDY = {"validation": {"folds": 3}, "model": {"ridge_lambda": 1.0}}
STUDIES = {
    "ridge": {},
    "lasso": {"model": {"kind": "lasso-logistic"}},
    "mlp": {"model": {"kind": "mlp", "rounds": 3}},
    "loso": {"validation": {"scheme": "leave-one-site-out"}},
    "holdout": {"validation": {"scheme": "holdout"}},
}


@pytest.fixture(scope="module")
def feature_table_csv(tmp_path_factory) -> Path:
    """One CSV of three sites' synthetic features, as a radiomics group would export it."""
    root = tmp_path_factory.mktemp("table")
    tables = write_site_feature_tables(root, StudyConfig(), sizes=(40, 36, 44), n_features=8)
    frames = [read_feature_table(path)[0] for path in tables.values()]
    csv = root / "features.csv"
    pd.concat(frames).to_csv(csv, index=False)
    return csv


def _simulate(out: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), *args])
    path = out / "results.json"
    assert path.exists(), result.output
    return json.loads(path.read_text())


def _check(name: str, results: dict, tolerance: float = 1e-12) -> None:
    golden = GOLDEN / f"{name}.json"
    kept = _without_per_run({k: v for k, v in results.items() if k not in NOT_RESULTS})
    if RECORD:
        golden.write_text(json.dumps(kept, indent=1, sort_keys=True))
        return
    differences = list(_differences(json.loads(golden.read_text()), kept, name, tolerance))
    assert not differences, "\n".join(differences[:20])


def _without_per_run(value):
    if isinstance(value, dict):
        return {k: _without_per_run(v) for k, v in value.items() if k not in PER_RUN}
    if isinstance(value, list):
        return [_without_per_run(item) for item in value]
    return value


def _differences(expected, actual, where: str, tolerance: float):
    """Every place where `actual` departs from `expected` (new keys in `actual` are fine)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            yield f"{where}: {actual!r} is not a mapping"
            return
        for key, value in expected.items():
            if key not in actual:
                yield f"{where}.{key}: missing"
            else:
                yield from _differences(value, actual[key], f"{where}.{key}", tolerance)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            yield f"{where}: {actual!r} != {expected!r}"
            return
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            yield from _differences(left, right, f"{where}[{index}]", tolerance)
    elif isinstance(expected, float) and isinstance(actual, int | float):
        if not math.isclose(expected, actual, rel_tol=tolerance, abs_tol=tolerance):
            yield f"{where}: {actual!r} != {expected!r}"
    elif expected != actual:
        yield f"{where}: {actual!r} != {expected!r}"


def _mri(tmp_path: Path, *args: str) -> dict:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(MRI_STUDY))
    return _simulate(tmp_path / "out", *MRI, "--study", str(study), *args)


def test_simulate_on_synthetic_mri_with_compare_gives_the_recorded_numbers(tmp_path):
    results = _mri(tmp_path, "--seed", "0", "--compare")
    _check("mri-seed0-compare", results)
    assert results["comparison"]["on_unseen_sites"][DP_ARM]["epsilon"] > 0


def test_simulate_on_synthetic_mri_seed_1_gives_the_recorded_numbers(tmp_path):
    _check("mri-seed1", _mri(tmp_path, "--seed", "1"))


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_simulate_on_a_split_feature_table_gives_the_recorded_numbers(
    tmp_path, feature_table_csv, study
):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(STUDIES[study]))
    args = [
        "--features-table",
        str(feature_table_csv),
        "--split-sites",
        "3",
        "--study",
        str(config),
    ]
    results = _simulate(tmp_path / "out", *args, "--site-effects", "0.5")
    _check(f"table-{study}", results, tolerance=1e-6 if study == "mlp" else 1e-12)
