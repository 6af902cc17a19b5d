"""`fedrad site check`: every QC failure named by case id in the terminal, CSV and HTML,
exit status 0 (all usable) / 1 (some not) / 2 (bad config or usage), nothing extracted."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import pytest
from case_files import BAD, bad_rows, good_rows, write_case, write_manifest
from typer.testing import CliRunner

from fedrad.client.cli import site_app
from fedrad.common.config import StudyConfig

SYNTHETIC_LABELS = "labels: {1: enhancing, 2: necrosis, 3: oedema}\n"  # the cases' convention


def check(*args: str):
    return CliRunner().invoke(site_app, ["check", *args, "--workers", "1"])


def labels_yaml(folder: Path) -> str:
    """A site config stating the test cases' label convention, which the CLI requires."""
    (folder / "labels.yaml").write_text(SYNTHETIC_LABELS)
    return str(folder / "labels.yaml")


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path, object]:
    """Good and bad cases, checked once through the CLI."""
    folder = tmp_path_factory.mktemp("site")
    manifest = write_manifest(folder, [*good_rows(folder), *bad_rows(folder)])
    out = folder / "qc"
    site = labels_yaml(folder)
    return manifest, out, check("--manifest", str(manifest), "--site", site, "--out", str(out))


def test_some_unusable_cases_exit_1_and_are_named_in_the_terminal(mixed):
    _, _, result = mixed
    assert result.exit_code == 1
    output = flat(result.output)
    for case_id, reason in BAD.items():
        assert case_id in output
        assert flat(reason) in output
    assert "3 of 11 case(s) usable, 0 with warnings" in output
    assert "regions: enhancing, necrosis, oedema" in output


def test_csv_has_a_row_per_manifest_row_with_status_and_reason(mixed):
    manifest, out, _ = mixed
    qc = pd.read_csv(out / "qc.csv", keep_default_na=False)
    assert list(qc.columns) == ["case_id", "label", "status", "stage", "reason", "notes"]
    assert list(qc["case_id"]) == list(pd.read_csv(manifest, keep_default_na=False)["case_id"])
    status = dict(zip(qc["case_id"], qc["status"], strict=False))
    assert {status[case] for case in ("g1", "g2", "g3")} == {"ok"}
    for case_id, reason in BAD.items():
        rows = qc[qc["case_id"] == case_id]
        assert (rows["status"] == "failed").all()
        assert rows["reason"].str.contains(reason, regex=False).all()


def test_html_page_lists_every_case_and_escapes_reasons(mixed):
    _, out, _ = mixed
    page = (out / "qc.html").read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page
    for case_id, reason in BAD.items():
        assert f"<td>{case_id}</td>" in page
        assert html.escape(reason) in page
    assert 'class="failed"' in page and "3 of 11 case(s) usable" in page
    assert "<h2>Can this site take part?</h2>" in page and "usable labelled cases" in page


def test_nothing_is_extracted_or_cached(mixed):
    manifest, _, _ = mixed
    assert not list(manifest.parent.rglob("*.parquet")) and not list(
        manifest.parent.glob("*.cache")
    )


def ready_site(folder: Path) -> Path:
    """Four usable labelled cases and a study whose 2 folds and k = 1 they meet."""
    rows = [
        {**write_case(folder, case_id, seed), "label": label}
        for seed, (case_id, label) in enumerate(
            {"a": "HGG", "b": "BM", "c": "HGG", "d": "BM"}.items()
        )
    ]
    write_manifest(folder, rows)
    (folder / "study.yaml").write_text("validation: {folds: 2}\nfederation: {min_cell_size: 1}\n")
    return folder / "study.yaml"


def test_a_ready_site_exits_0_and_site_config_supplies_the_manifest(tmp_path: Path):
    study = ready_site(tmp_path)
    (tmp_path / "site.yaml").write_text(f"name: alpha\nmanifest: manifest.csv\n{SYNTHETIC_LABELS}")
    result = check(
        "--site", str(tmp_path / "site.yaml"), "--out", str(tmp_path / "qc"), "--study", str(study)
    )
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert "site alpha: manifest" in output
    assert "4 of 4 case(s) usable" in output
    assert "usable labelled cases: HGG 2, BM 2" in output
    assert "This site can take part in the study." in output


def test_a_semicolon_manifest_is_read_and_its_delimiter_reported(tmp_path: Path):
    study = ready_site(tmp_path)
    manifest = tmp_path / "manifest.csv"
    pd.read_csv(manifest).to_csv(manifest, sep=";", index=False)
    result = check(
        "--manifest",
        str(manifest),
        "--site",
        labels_yaml(tmp_path),
        "--out",
        str(tmp_path / "qc"),
        "--study",
        str(study),
    )
    assert result.exit_code == 0, result.output
    assert f"manifest {manifest}: 4 row(s), read as semicolon-separated" in flat(result.output)


def test_every_case_usable_but_too_few_for_the_folds_exits_1_saying_why(tmp_path: Path):
    write_manifest(tmp_path, good_rows(tmp_path))
    result = check(
        "--manifest",
        str(tmp_path / "manifest.csv"),
        "--site",
        labels_yaml(tmp_path),
        "--out",
        str(tmp_path / "qc"),
    )
    assert result.exit_code == 1
    output = flat(result.output)
    assert "3 of 3 case(s) usable" in output
    assert (
        "cannot take part: fold 2, fold 3, fold 4, fold 5, the final fit on all cases: " in output
    )
    assert "This site cannot take part as it is" in output
    page = (tmp_path / "qc" / "qc.html").read_text()  # the same verdict, on the page
    readiness = page[page.index('<ul id="readiness">') :]
    assert '<li class="problem">cannot take part: fold 2, fold 3' in readiness
    assert '<li class="problem">This site cannot take part as it is' in readiness


def test_lumped_labels_exit_1_naming_the_regions_the_study_loses(tmp_path: Path):
    study = ready_site(tmp_path)
    (tmp_path / "site.yaml").write_text("labels: {1: enhancing, 2: enhancing, 3: oedema}\n")
    result = check(
        "--manifest",
        str(tmp_path / "manifest.csv"),
        "--site",
        str(tmp_path / "site.yaml"),
        "--out",
        str(tmp_path / "qc"),
        "--study",
        str(study),
    )
    assert result.exit_code == 1, result.output
    assert (
        "cannot take part: the study needs region necrosis, which this site cannot give (no "
        "label marks necrosis), so the study would lose its necrosis features at every site"
    ) in flat(result.output)


def test_a_copied_case_exits_1_naming_both_case_ids(tmp_path: Path):
    study = ready_site(tmp_path)
    manifest = tmp_path / "manifest.csv"
    frame = pd.read_csv(manifest)
    frame.loc[3, ["t1c", "flair", "mask"]] = frame.loc[1, ["t1c", "flair", "mask"]].to_numpy()
    frame.to_csv(manifest, index=False)
    result = check(
        "--manifest",
        str(manifest),
        "--site",
        labels_yaml(tmp_path),
        "--out",
        str(tmp_path / "qc"),
        "--study",
        str(study),
    )
    assert result.exit_code == 1, result.output
    output = flat(result.output)
    assert "duplicate: the same image content is given under case ids b (t1c:" in output
    assert ", d (t1c:" in output


def test_params_give_the_study_the_extraction_settings_of_a_pyradiomics_file(tmp_path: Path):
    params = Path(__file__).parents[1] / "common/radiomics/pyradiomics_params/exampleMR_3mm.yaml"
    study = ready_site(tmp_path)
    out = tmp_path / "qc"
    result = check(
        "--manifest", str(tmp_path / "manifest.csv"), "--site", labels_yaml(tmp_path),
        "--study", str(study), "--params", str(params), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    translated = StudyConfig.from_yaml(study).with_pyradiomics_params(params)
    assert translated.extraction_hash in (out / "qc.html").read_text()
    assert StudyConfig().extraction_hash not in (out / "qc.html").read_text()


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, [], "no manifest: pass --manifest or set `manifest` in the site config"),
        ({"site.yaml": "labels: {1: tumour}\n"}, ["--site", "site.yaml"], "labels.1: ['tumour']"),
        ({"site.yaml": "lables: {}\n"}, ["--site", "site.yaml"], "lables: Extra inputs"),
        ({"study.yaml": "extraction: {bin_width: 0}\n"}, ["--study", "study.yaml"], "bin_width"),
        (
            {"p.yaml": "featureClass: {shape2D: }\n"},
            ["--params", "p.yaml"],
            "p.yaml: FedRad cannot use featureClass.shape2D: FedRad extracts 3-D features only",
        ),
        (
            {"study.yaml": "extraction: {bin_width: 3}\n", "p.yaml": "featureClass: {glcm: }\n"},
            ["--study", "study.yaml", "--params", "p.yaml"],
            "extraction.bin_width: 3.0 in the study config, but",
        ),
        (
            {"study.yaml": "extraction: {pyradiomics_params: nope.yaml}\n"},
            ["--study", "study.yaml"],
            "(the path is relative to the study file's folder)",
        ),
        (
            {"m.csv": "case_id,label,t1c\n"},
            ["--manifest", "m.csv", "--labels", "brats2021"],
            "lacks column(s)",
        ),
    ],
)
def test_bad_config_or_usage_exits_2_naming_the_key(tmp_path: Path, files, args, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if "--manifest" not in args:
        write_manifest(tmp_path, good_rows(tmp_path)[:1])
        args = [*args, "--manifest", "manifest.csv"] if files else args
    resolved = [str(tmp_path / arg) if arg.endswith((".yaml", ".csv")) else arg for arg in args]
    result = check(*resolved, "--out", str(tmp_path / "qc"))
    assert result.exit_code == 2
    assert message in flat(result.output)


def test_a_site_configs_missing_manifest_is_named_with_the_config_that_names_it(tmp_path: Path):
    (tmp_path / "site.yaml").write_text(f"manifest: cases.csv\n{SYNTHETIC_LABELS}")
    result = check("--site", str(tmp_path / "site.yaml"), "--out", str(tmp_path / "qc"))
    assert result.exit_code == 2
    assert (
        f"error: there is no manifest {tmp_path / 'cases.csv'}, which the `manifest` of site "
        f"config {tmp_path / 'site.yaml'} names"
    ) in flat(result.output)
