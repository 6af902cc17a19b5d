"""Site extraction end to end: QC failures by case id, feature names, cache, resume, site
conventions, workers, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from case_files import BAD, GOOD, STUDY, bad_rows, good_rows, write_case, write_manifest
from typer.testing import CliRunner

from fedrad.client import extract as extract_module
from fedrad.client.cli import site_app
from fedrad.client.extract import ExtractionReport, extract_site
from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import read_feature_table


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path, ExtractionReport]:
    """A cohort of good and bad cases, extracted once in-process."""
    folder = tmp_path_factory.mktemp("site")
    manifest = write_manifest(folder, [*good_rows(folder), *bad_rows(folder)])
    out = folder / "out" / "features.parquet"
    return manifest, out, extract_site(manifest, out, STUDY, workers=1, show_progress=False)


def test_good_cases_have_finite_features_with_contract_names(site):
    _, out, report = site
    table, provenance = read_feature_table(out)
    assert report.ok == list(table["case_id"]) == list(GOOD)
    assert table["label"].fillna("unlabelled").tolist() == ["HGG", "BM", "unlabelled"]
    features = list(table.columns[2:])
    assert features == sorted(features)
    for region in STUDY.extraction.regions:
        for sequence in STUDY.extraction.sequences:
            assert f"{sequence}_{region}_original_firstorder_Mean" in features
            assert not any(
                name.startswith(f"{sequence}_{region}_original_shape") for name in features
            )
        assert f"mask_{region}_original_shape_VoxelVolume" in features
    assert np.isfinite(table[features].to_numpy(dtype=float)).all()
    enhancing = table["t1c_enhancing_original_firstorder_Mean"]
    assert (table["t1c_necrosis_original_firstorder_Mean"] < enhancing - 20).all()
    assert provenance["extraction_hash"] == STUDY.extraction_hash
    assert (provenance["n_cases"], provenance["n_failed"]) == (3, len(BAD) + 1)
    assert {
        "pyradiomics",
        "SimpleITK",
        "PyWavelets",
        "numpy",
        "fedrad",
        "created",
    } <= provenance.keys()
    assert provenance["sequences"] == ["t1c", "flair"]
    assert provenance["regions"] == {"enhancing": [1], "necrosis": [2], "oedema": [3]}
    assert provenance["qc_flags"] == {}


@pytest.mark.parametrize("case_id", list(BAD))
def test_each_bad_case_is_reported_by_id_and_skipped(site, case_id):
    _, out, report = site
    assert BAD[case_id] in report.failed[case_id]
    qc = pd.read_csv(out.with_name("features.qc.csv"), keep_default_na=False)
    rows = qc[qc["case_id"] == case_id]
    assert (rows["status"] == "failed").all()
    assert rows["reason"].str.contains(BAD[case_id], regex=False).all()
    assert len(rows) == (2 if case_id == "dup" else 1)


def test_qc_report_has_a_row_per_manifest_row_with_stage(site):
    manifest, out, _ = site
    qc = pd.read_csv(out.with_name("features.qc.csv"), keep_default_na=False)
    assert list(qc["case_id"]) == list(pd.read_csv(manifest, keep_default_na=False)["case_id"])
    stages = dict(zip(qc["case_id"], qc["stage"], strict=False))
    assert stages["g1"] == "" and stages["empty"] == "qc"


def test_rerun_takes_everything_from_cache(site, monkeypatch):
    manifest, out, first = site
    before, _ = read_feature_table(out)
    assert first.from_cache == 0

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached case was recomputed")

    monkeypatch.setattr(extract_module, "extract_case", must_not_run)
    again = extract_site(manifest, out, STUDY, workers=1, show_progress=False)
    assert again.from_cache == len(GOOD)
    assert again.failed == first.failed
    pd.testing.assert_frame_equal(read_feature_table(out)[0], before, check_exact=True)


def test_changed_file_reextracts_only_that_case(tmp_path: Path):
    manifest = write_manifest(tmp_path, good_rows(tmp_path))
    out = tmp_path / "features.parquet"
    extract_site(manifest, out, STUDY, workers=1, show_progress=False)
    before = read_feature_table(out)[0].set_index("case_id")
    write_case(tmp_path, "g2", seed=99)
    report = extract_site(manifest, out, STUDY, workers=1, show_progress=False)
    after = read_feature_table(out)[0].set_index("case_id")
    assert report.from_cache == 2
    pd.testing.assert_frame_equal(after.drop(index="g2"), before.drop(index="g2"))
    assert after.loc["g2", "t1c_enhancing_original_firstorder_Mean"] != pytest.approx(
        before.loc["g2", "t1c_enhancing_original_firstorder_Mean"]
    )


def test_two_workers_give_the_same_result_as_one(site, tmp_path: Path):
    manifest, out, serial = site
    parallel = extract_site(manifest, tmp_path / "p.parquet", STUDY, workers=2, show_progress=False)
    assert (parallel.ok, parallel.failed, parallel.from_cache) == (serial.ok, serial.failed, 0)
    pd.testing.assert_frame_equal(
        read_feature_table(tmp_path / "p.parquet")[0], read_feature_table(out)[0], check_exact=True
    )


SYNTHETIC_LABELS = "labels: {1: enhancing, 2: necrosis, 3: oedema}\n"  # the cases' convention


def invoke(*args: str):
    return CliRunner().invoke(site_app, ["extract", *args, "--workers", "1"])


@pytest.fixture
def labels_yaml(tmp_path: Path) -> Path:
    """A site config stating the test cases' label convention, which the CLI requires."""
    path = tmp_path / "site.yaml"
    path.write_text(SYNTHETIC_LABELS)
    return path


@pytest.fixture
def study_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(
        "extraction:\n"
        "  sequences: [t1c, flair]\n"
        "  feature_classes: [firstorder, shape]\n"
        "  resampled_spacing_mm: null\n"
    )
    return path


def test_cli_exits_0_when_every_case_is_extracted(
    tmp_path: Path, study_yaml: Path, labels_yaml: Path
):
    manifest = write_manifest(tmp_path, good_rows(tmp_path)[:1])
    out = tmp_path / "f.parquet"
    args = ["--manifest", str(manifest), "--out", str(out), "--study", str(study_yaml)]
    result = invoke(*args, "--site", str(labels_yaml))
    assert result.exit_code == 0, result.output
    assert "Extracted 1 case(s)" in result.output
    assert read_feature_table(out)[1]["extraction_hash"] == STUDY.extraction_hash


def test_cli_params_extract_what_a_pyradiomics_file_names(
    tmp_path: Path, study_yaml: Path, labels_yaml: Path
):
    params = tmp_path / "params.yaml"
    params.write_text("featureClass: {firstorder: [Mean, Median], shape: }\n")
    manifest = write_manifest(tmp_path, good_rows(tmp_path)[:1])
    out = tmp_path / "f.parquet"
    args = ["--manifest", str(manifest), "--out", str(out), "--study", str(study_yaml)]
    result = invoke(*args, "--site", str(labels_yaml), "--params", str(params))
    assert result.exit_code == 0, result.output
    table, provenance = read_feature_table(out)
    first_order = {name.rsplit("_", 1)[1] for name in table.columns if "_firstorder_" in name}
    assert first_order == {"Mean", "Median"}
    assert any("_shape_" in name for name in table.columns)
    study = StudyConfig.from_yaml(study_yaml).with_pyradiomics_params(params)
    assert provenance["extraction_hash"] == study.extraction_hash != STUDY.extraction_hash


def test_cli_exits_1_and_names_failed_cases(site, study_yaml: Path, labels_yaml: Path):
    manifest, out, _ = site
    args = ["--manifest", str(manifest), "--out", str(out), "--study", str(study_yaml)]
    result = invoke(*args, "--site", str(labels_yaml))
    assert result.exit_code == 1, result.output
    assert "(3 from cache)" in result.output
    for case_id in BAD:
        assert case_id in result.output


@pytest.mark.parametrize(
    ("manifest_text", "study_text", "message"),
    [
        (None, None, "there is no manifest"),
        ("case_id,label,t1c,flair\n", None, "lacks column(s) ['mask']"),
        ("case_id,label,t1c,flair,mask\n", "extraction: [", "is not valid YAML"),
        ("case_id,label,t1c,flair,mask\n", "extraction:\n  bin_width: -1x\n", "bin_width"),
        ("case_id,label,t1c,flair,mask\n", "extraction:\n  feature_classes: [glcmm]\n", "glcmm"),
    ],
)
def test_cli_exits_2_on_bad_config_or_usage(
    tmp_path: Path, labels_yaml: Path, manifest_text, study_text, message
):
    manifest = tmp_path / "manifest.csv"
    if manifest_text is not None:
        manifest.write_text(manifest_text)
    args = ["--manifest", str(manifest), "--out", str(tmp_path / "f.parquet")]
    args += ["--site", str(labels_yaml)]
    if study_text is not None:
        (tmp_path / "study.yaml").write_text(study_text)
        args += ["--study", str(tmp_path / "study.yaml")]
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    if study_text is not None:
        assert "study.yaml" in result.output


def test_cli_usage_error_exits_2():
    assert CliRunner().invoke(site_app, ["extract", "--workers", "0"]).exit_code == 2


def split_every_case(monkeypatch) -> None:
    """Run every case as one task per sequence (in-process with workers=1)."""
    monkeypatch.setattr(
        extract_module, "_queue", lambda tasks, workers: [p for t in tasks for p in t.parts()]
    )


def test_the_last_cases_are_split_into_one_task_per_sequence(site):
    manifest, out, _ = site
    plan = extract_module.plan_site(manifest, STUDY, extract_module.SiteConfig())
    tasks = [
        extract_module.CaseTask(entry, STUDY.extraction, plan.layout, "hash", out.parent)
        for entry in plan.runnable[:3]
    ]
    queue = extract_module._queue(tasks, workers=2)
    assert [(task.entry.case_id, task.part) for task in queue] == [
        (tasks[0].entry.case_id, None),
        (tasks[1].entry.case_id, "t1c"),
        (tasks[1].entry.case_id, "flair"),
        (tasks[2].entry.case_id, "t1c"),
        (tasks[2].entry.case_id, "flair"),
    ]
    assert [task.with_shape for task in queue] == [True, True, False, True, False]
    assert extract_module._queue(tasks, workers=1) == tasks


def test_cases_split_by_sequence_give_the_whole_cases_result(site, tmp_path: Path, monkeypatch):
    manifest, out, whole = site
    split_every_case(monkeypatch)
    parts = extract_site(manifest, tmp_path / "p.parquet", STUDY, workers=1, show_progress=False)
    assert (parts.ok, parts.failed, parts.flagged) == (whole.ok, whole.failed, whole.flagged)
    pd.testing.assert_frame_equal(
        read_feature_table(tmp_path / "p.parquet")[0], read_feature_table(out)[0], check_exact=True
    )


@pytest.mark.parametrize("first_split", [True, False])
def test_cache_serves_a_case_split_differently_from_the_run_that_stored_it(
    tmp_path: Path, monkeypatch, first_split: bool
):
    manifest = write_manifest(tmp_path, good_rows(tmp_path))
    out = tmp_path / "features.parquet"
    with monkeypatch.context() as patch:
        if first_split:
            split_every_case(patch)
        extract_site(manifest, out, STUDY, workers=1, show_progress=False)
    before = read_feature_table(out)[0]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached case was recomputed")

    monkeypatch.setattr(extract_module, "extract_case", must_not_run)
    if not first_split:
        split_every_case(monkeypatch)
    again = extract_site(manifest, out, STUDY, workers=1, show_progress=False)
    assert again.from_cache == len(GOOD)
    pd.testing.assert_frame_equal(read_feature_table(out)[0], before, check_exact=True)


def test_largest_case_starts_first_and_the_table_keeps_manifest_order(tmp_path: Path, monkeypatch):
    rows = [write_case(tmp_path, "small", 0), write_case(tmp_path, "large", 1, ".nii")]
    manifest = write_manifest(tmp_path, rows)
    started = []
    process = extract_module.process_case

    def record(task):
        started.append(task.entry.case_id)
        return process(task)

    monkeypatch.setattr(extract_module, "process_case", record)
    report = extract_site(manifest, tmp_path / "f.parquet", STUDY, workers=1, show_progress=False)
    assert started == ["large", "small"]  # the uncompressed mask is the larger file
    assert report.ok == ["small", "large"]
    assert read_feature_table(tmp_path / "f.parquet")[0]["case_id"].tolist() == ["small", "large"]
