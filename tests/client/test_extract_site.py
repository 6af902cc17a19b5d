"""Extraction under real-site conditions: interruption and resume, label conventions, lumped
labels and derived regions, a missing sequence (and the census that reports it), masks
resampled onto an image grid, DICOM input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from case_files import STUDY, good_rows, lesion_labels, write, write_case, write_manifest
from test_qc import write_series
from typer.testing import CliRunner

from fedrad.client import extract as extract_module
from fedrad.client.cli import site_app
from fedrad.client.coverage import coverage
from fedrad.client.data import SiteData
from fedrad.client.extract import extract_site
from fedrad.client.handlers import census
from fedrad.client.site_config import SiteConfig
from fedrad.common.config import ExtractionSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table
from fedrad.common.messages import Request

REGIONS = {
    "core": ("enhancing", "necrosis"),
    "oedema": ("oedema",),
    "whole": ("enhancing", "necrosis", "oedema"),
}


def run(manifest: Path, out: Path, study=STUDY, site=None):
    return extract_site(manifest, out, study, workers=1, show_progress=False, site=site)


def table(path: Path) -> pd.DataFrame:
    return read_feature_table(path)[0]


def relabel(folder: Path, rows: list[dict[str, str]], mapping: list[int]) -> list[dict[str, str]]:
    """Copies of the rows whose masks use another numbering: value v becomes mapping[v]."""
    relabelled = []
    for row in rows:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / row["mask"])))
        name = write(np.choose(labels, mapping).astype(np.uint8), folder / f"re_{row['mask']}")
        relabelled.append({**row, "mask": name})
    return relabelled


def counting(monkeypatch, stop_at: int | None = None) -> list[int]:
    """Count extract_case calls; raise KeyboardInterrupt (Ctrl-C) at call `stop_at`."""
    real, calls = extract_module.extract_case, []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_module, "extract_case", wrapped)
    return calls


def test_interrupted_extraction_keeps_finished_cases_and_resumes(tmp_path: Path, monkeypatch):
    manifest = write_manifest(tmp_path, good_rows(tmp_path))
    out = tmp_path / "features.parquet"
    counting(monkeypatch, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        run(manifest, out)
    assert not out.exists()
    assert len(list((tmp_path / "features.parquet.cache").glob("*.json"))) == 2

    calls = counting(monkeypatch)
    report = run(manifest, out)
    assert (report.from_cache, len(calls), report.ok) == (2, 1, ["g1", "g2", "g3"])
    reference = tmp_path / "reference.parquet"
    run(manifest, reference)
    pd.testing.assert_frame_equal(table(out), table(reference), check_exact=True)


def test_cli_says_how_to_resume_after_ctrl_c(tmp_path: Path, monkeypatch):
    manifest = write_manifest(tmp_path, good_rows(tmp_path)[:2])
    counting(monkeypatch, stop_at=2)
    args = ["extract", "--manifest", str(manifest), "--out", str(tmp_path / "f.parquet")]
    (tmp_path / "site.yaml").write_text("labels: {1: enhancing, 2: necrosis, 3: oedema}\n")
    args += ["--site", str(tmp_path / "site.yaml")]
    result = CliRunner().invoke(site_app, [*args, "--workers", "1"])
    assert result.exit_code == 1
    assert "interrupted: finished cases are cached" in " ".join(result.output.split())


def test_another_label_numbering_gives_identical_features(tmp_path: Path):
    rows = good_rows(tmp_path)[:2]
    default = run(write_manifest(tmp_path, rows), tmp_path / "default.parquet")
    brats = relabel(tmp_path, rows, [0, 4, 1, 2])  # enhancing 4, necrosis 1, oedema 2
    site = SiteConfig(labels={4: "enhancing", 1: "necrosis", 2: "oedema"})
    other = run(write_manifest(tmp_path, brats, "brats.csv"), tmp_path / "brats.parquet", site=site)
    assert other.ok == default.ok == ["g1", "g2"]
    pd.testing.assert_frame_equal(
        table(tmp_path / "brats.parquet"), table(tmp_path / "default.parquet"), check_exact=True
    )
    unmapped = run(write_manifest(tmp_path, brats, "brats.csv"), tmp_path / "unmapped.parquet")
    assert "mask has label value(s) [4]" in unmapped.failed["g1"]


def test_lumped_core_label_gives_the_derived_regions_it_can(tmp_path: Path):
    extraction = STUDY.extraction.model_copy(
        update={"regions": {**REGIONS, "necrosis": ("necrosis",)}}
    )
    study = StudyConfig(extraction=extraction)
    rows = good_rows(tmp_path)[:2]
    run(write_manifest(tmp_path, rows), tmp_path / "separate.parquet", study)
    lumped = relabel(tmp_path, rows, [0, 2, 2, 1])  # enhancing + necrosis -> 2, oedema -> 1
    site = SiteConfig(labels={1: "oedema", 2: ["enhancing", "necrosis"]})
    report = run(write_manifest(tmp_path, lumped, "met.csv"), tmp_path / "met.parquet", study, site)
    assert report.ok == ["g1", "g2"]
    met, provenance = read_feature_table(tmp_path / "met.parquet")
    separate = table(tmp_path / "separate.parquet")
    assert not any("_necrosis_" in column for column in met.columns)
    pd.testing.assert_frame_equal(met, separate[met.columns], check_exact=True)
    assert provenance["regions"] == {"core": [2], "oedema": [1], "whole": [1, 2]}
    assert "label 2 lumps enhancing, necrosis together" in provenance["missing_regions"]["necrosis"]
    volume = separate.set_index("case_id")
    core = volume["mask_core_original_shape_VoxelVolume"]
    parts = (
        volume["mask_whole_original_shape_VoxelVolume"]
        - volume["mask_oedema_original_shape_VoxelVolume"]
    )
    pd.testing.assert_series_equal(core, parts, check_names=False)


def test_a_site_without_a_sequence_extracts_the_rest_and_the_census_says_so(tmp_path: Path):
    rows = [{k: v for k, v in row.items() if k != "flair"} for row in good_rows(tmp_path)[:2]]
    rows = [{**row, "label": label} for row, label in zip(rows, ["HGG", "BM"], strict=True)]
    manifest = write_manifest(tmp_path, rows)
    site = SiteConfig(missing_sequences=("flair",))
    report = run(manifest, tmp_path / "f.parquet", site=site)
    assert report.ok == ["g1", "g2"]
    features, provenance = read_feature_table(tmp_path / "f.parquet")
    assert {column.split("_")[0] for column in features.columns[2:]} == {"t1c", "mask"}
    assert (provenance["sequences"], provenance["missing_sequences"]) == (["t1c"], ["flair"])
    data = SiteData.load(tmp_path / "f.parquet", "site-x", STUDY)
    reported = coverage(data.features, STUDY.extraction)
    assert reported["sequences-present"] == ["t1c"]
    assert reported["sequences-missing"] == ["flair"]
    assert reported["regions-present"] == ["enhancing", "necrosis", "oedema"]
    assert reported["regions-missing"] == []
    reply = census(data, STUDY, Request())
    assert reply.cases == ["<5", "<5"]
    assert reply.sequences_missing == ["flair"]


def test_mask_resampled_onto_a_shifted_sequence_is_flagged_not_refused(tmp_path: Path):
    row = write_case(tmp_path, "shifted", seed=3)
    flair = sitk.ReadImage(str(tmp_path / row["flair"]))
    flair.SetOrigin((0.0, 0.0, 0.5))
    sitk.WriteImage(flair, str(tmp_path / row["flair"]))
    report = run(write_manifest(tmp_path, [row]), tmp_path / "f.parquet")
    assert report.ok == ["shifted"]
    assert report.flagged["shifted"].startswith("mask resampled onto the flair grid (origin")
    provenance = read_feature_table(tmp_path / "f.parquet")[1]
    assert provenance["qc_flags"]["shifted"][0].startswith("mask resampled onto the flair grid")
    qc = pd.read_csv(tmp_path / "f.qc.csv", keep_default_na=False)
    assert qc.loc[0, "status"] == "warning" and "flair grid" in qc.loc[0, "notes"]


def test_dicom_series_and_nifti_of_the_same_volume_give_the_same_features(tmp_path: Path):
    study = StudyConfig(
        extraction=ExtractionSettings(
            sequences=("t1c",), feature_classes=("firstorder", "glcm"), resampled_spacing_mm=None
        )
    )
    rng = np.random.default_rng(5)
    labels = lesion_labels()
    array = (rng.normal(500, 50, labels.shape) + 200 * (labels == 1)).astype(np.int16)
    write_series(tmp_path / "series", array)
    for name, data in [("t1c.nii.gz", array), ("mask.nii.gz", labels)]:
        image = sitk.GetImageFromArray(data)
        image.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(image, str(tmp_path / name))
    rows = {
        "dicom": {"case_id": "c", "label": "HGG", "t1c": "series", "mask": "mask.nii.gz"},
        "nifti": {"case_id": "c", "label": "HGG", "t1c": "t1c.nii.gz", "mask": "mask.nii.gz"},
    }
    for kind, row in rows.items():
        report = run(
            write_manifest(tmp_path, [row], f"{kind}.csv"), tmp_path / f"{kind}.parquet", study
        )
        assert report.ok == ["c"], report.failed
    pd.testing.assert_frame_equal(
        table(tmp_path / "dicom.parquet"), table(tmp_path / "nifti.parquet"), check_exact=True
    )
