"""`fedrad site predict` on the real brain MRI (../shared/data/real-mri): two hospitals'
label conventions (a `--labels` preset, a site config), blank labels, a released model of
the whole tumour's first-order features; and ComBat's minimum for a new site enforced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

from fedrad.client.cli import site_app
from fedrad.common.config import ExtractionSettings, StudyConfig
from fedrad.common.harmonization.combat import OLSFit
from fedrad.common.model_signing import SIGNING_PUBLIC_KEY, make_signing_key
from fedrad.common.pipeline import CombatFit, PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.server.model_release import bundle_payload, release_bundle
from fedrad.server.phases.evaluation import FittedPipeline
from fedrad.server.results import study_summary

REAL = SHARED_DATA / "real-mri"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real MRI data absent ({REAL})")

SEQUENCES = ("t1c", "flair")
STUDY = StudyConfig(
    extraction=ExtractionSettings(
        sequences=SEQUENCES,
        regions={"whole": ("enhancing", "necrosis", "oedema")},
        resampled_spacing_mm=None,  # BraTS volumes are already 1 mm isotropic
        feature_classes=("firstorder",),
        bin_width=25.0,
    ),
    harmonization={"method": "none"},
)
FEATURES = ["t1c_whole_original_firstorder_Mean", "flair_whole_original_firstorder_Median"]
SITES = {  # site -> (case, its label convention as CLI options)
    "tcga": ("TCGA-FG-6692", ["--labels", "brats2021"]),
    "met": ("BraTS-MET-00110-000", None),
}


def _bundle(root: Path, combat: CombatFit | None) -> Path:
    study = STUDY if combat is None else STUDY.updated(harmonization={"method": "combat"})
    params = PipelineParams(
        features=FEATURES,
        combat=combat,
        standardizer=Standardizer(mean=np.array([500.0, 400.0]), scale=np.array([200.0, 150.0])),
        beta=np.array([0.1, 0.9, -0.5]),
    )
    results = {
        "study": study_summary(study),
        "model": {"kind": "ridge-logistic", "training_sites": ["x", "y"]},
        "metrics": {},
        "sites": [],
        "validation": {"fits": []},
        "privacy": {},
    }
    final = FittedPipeline(params, {}, ["x", "y"], {}, threshold=0.5)
    return release_bundle(bundle_payload(results, final, 1), make_signing_key(root / "keys"), root)


def _predict(root: Path, bundle: Path, site: str):
    case, labels = SITES[site]
    folder = root / site
    folder.mkdir(exist_ok=True)
    paths = ",".join(str(REAL / case / f"{name}.nii.gz") for name in (*SEQUENCES, "seg"))
    manifest = folder / "new.csv"
    manifest.write_text(f"case_id,label,{','.join(SEQUENCES)},mask\n{case},,{paths}\n")
    options = labels
    if options is None:
        (folder / "site.yaml").write_text("labels: {1: oedema, 2: [enhancing, necrosis]}\n")
        options = ["--site", str(folder / "site.yaml")]
    out = folder / "predictions.csv"
    trust = str(root / "keys" / SIGNING_PUBLIC_KEY)
    args = ["--bundle", str(bundle), "--manifest", str(manifest), "--out", str(out)]
    result = CliRunner().invoke(site_app, ["predict", *args, "--trust", trust, *options])
    return result, out


@pytest.mark.parametrize("site", SITES)
def test_real_cases_are_predicted_with_their_own_label_convention(tmp_path, site):
    result, out = _predict(tmp_path, _bundle(tmp_path, None), site)
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out).iloc[0]
    assert row["case_id"] == SITES[site][0] and row["status"] == "predicted"
    assert 0 < row["probability_HGG"] < 1
    assert row["predicted_class"] == ("HGG" if row["probability_HGG"] >= 0.5 else "BM")
    assert row["top_features"].split(":")[0] in FEATURES


def test_one_case_of_a_new_site_cannot_estimate_its_combat_and_is_told_the_minimum(tmp_path):
    ols = OLSFit(np.zeros((2, 2)), np.zeros((0, 2)), np.array([500.0, 400.0]), np.zeros(0))
    bundle = _bundle(tmp_path, CombatFit(ols, np.array([900.0, 700.0]), ("x", "y")))
    result, out = _predict(tmp_path, bundle, "tcga")
    assert result.exit_code == 1
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "not predicted"
    assert (
        "has 1 case(s) here; estimating its ComBat location and scale needs at least 10"
        in (row["reason"])
    )
    assert "Traceback" not in result.output
