"""pyradiomics' own brain1/brain2 baselines, reproduced through the whole site pipeline.

Every baseline variant whose settings a FedRad study can express is run (plain, intensity
normalization, resampling to 2 mm); the others (2-D, fixed bin count, resegmentation, merged
GLCM angles) use pyradiomics options a study does not offer. Values must agree within 1e-9
relative, except four mesh-based shape features of brain1's plain variant, whose baseline
was computed by pyradiomics 2.0.1b1 with an older marching-cubes table (they agree within
0.1%; pyradiomics' own tests allow 3%).
"""

from __future__ import annotations

import ast

import pandas as pd
import pytest
from conftest import SHARED_DATA

from fedrad.client.extract import extract_site
from fedrad.common.config import FEATURE_CLASSES, ExtractionSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table

BRAIN = SHARED_DATA / "pyradiomics-brain"
pytestmark = pytest.mark.skipif(not BRAIN.is_dir(), reason=f"pyradiomics data absent ({BRAIN})")

VARIANTS = ["", "_normalization", "_resampling"]
OLD_MESH = {"MeshVolume", "SurfaceArea", "SurfaceVolumeRatio", "Sphericity"}
TOLERANCE, OLD_MESH_TOLERANCE = 1e-9, 1e-3


def baselines() -> dict[str, pd.DataFrame]:
    """Feature class -> baseline table (rows: keys, columns: test case variants)."""
    return {
        path.stem.removeprefix("baseline_"): pd.read_csv(path, index_col=0)
        for path in BRAIN.glob("baseline_*.csv")
        if path.stem != "baseline_shape2D"
    }


def study_for(settings: dict) -> StudyConfig:
    """The FedRad study whose pyradiomics settings are those of a baseline variant."""
    resampled = settings.get("resampledPixelSpacing")
    extraction = ExtractionSettings(
        sequences=("mr",),
        tissues=("tumour",),
        regions={"tumour": ("tumour",)},
        resampled_spacing_mm=tuple(resampled)
        if settings.get("interpolator") and resampled
        else None,
        crop_padding=settings["padDistance"],
        normalize=settings["normalize"],
        normalize_scale=settings["normalizeScale"],
        voxel_array_shift=settings.get("voxelArrayShift", 0),
        bin_width=settings.get("binWidth", 25),
        feature_classes=FEATURE_CLASSES,
    )
    return StudyConfig(extraction=extraction)


@pytest.fixture(scope="module", params=["brain1", "brain2"])
def case(request, tmp_path_factory) -> tuple[str, dict[str, pd.Series]]:
    """FedRad's features of one brain case under each variant's settings."""
    name, tables = request.param, baselines()
    folder = tmp_path_factory.mktemp(name)
    manifest = folder / "manifest.csv"
    manifest.write_text(
        f"case_id,label,mr,mask\n{name},,{BRAIN / f'{name}_image.nrrd'},"
        f"{BRAIN / f'{name}_label.nrrd'}\n"
    )
    features = {}
    for variant in VARIANTS:
        column = name + variant
        settings = ast.literal_eval(
            tables["firstorder"].loc["diagnostics_Configuration_Settings", column]
        )
        out = folder / f"{column}.parquet"
        report = extract_site(manifest, out, study_for(settings), workers=1, show_progress=False)
        assert report.ok == [name], report.failed
        features[column] = read_feature_table(out)[0].set_index("case_id").loc[name]
    return name, features


def compared(name: str, features: dict[str, pd.Series]) -> list[tuple[str, str, float, float]]:
    """(variant, feature, ours, baseline) for every baseline value FedRad extracts."""
    pairs = []
    for feature_class, table in baselines().items():
        for column in (name + variant for variant in VARIANTS):
            if column not in table.columns:
                continue
            ours = features[column]
            for key in table.index[table.index.str.startswith("original_")]:
                sequence = "mask" if feature_class == "shape" else "mr"
                fedrad = f"{sequence}_tumour_{key}"
                if fedrad in ours.index:
                    pairs.append((column, key, float(ours[fedrad]), float(table.loc[key, column])))
    return pairs


def test_every_expressible_variant_reproduces_the_baseline(case):
    name, features = case
    pairs = compared(name, features)
    assert len(pairs) == 3 * 93 + 2 * 14  # 6 intensity classes x 3 variants, shape x 2
    mismatches = []
    for column, key, ours, baseline in pairs:
        old_mesh = column == "brain1" and key.removeprefix("original_shape_") in OLD_MESH
        tolerance = OLD_MESH_TOLERANCE if old_mesh else TOLERANCE
        if ours != pytest.approx(baseline, rel=tolerance, abs=1e-12):
            mismatches.append(f"{column} {key}: {ours!r} vs {baseline!r}")
    assert mismatches == []


def test_baseline_settings_map_onto_the_study():
    table = baselines()["glcm"]
    settings = ast.literal_eval(
        table.loc["diagnostics_Configuration_Settings", "brain1_resampling"]
    )
    mapped = study_for(settings).extraction.pyradiomics_settings()
    for key in ("resampledPixelSpacing", "interpolator", "padDistance", "normalize"):
        assert mapped[key] == settings[key]
