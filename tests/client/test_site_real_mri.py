"""The site pipeline on real brain MRI (../shared/data/real-mri): two hospitals, four
sequences, two label conventions. `fedrad site check` passes both, extraction gives each
site the regions its labels can delineate, and the values equal plain pyradiomics.

The fast tests compare first-order features of one sequence (plain pyradiomics spends about
a second per region on a 240 x 240 x 155 volume before computing anything). The full
comparison - two sequences with shape, GLCM, LoG and wavelet - is marked slow: plain
pyradiomics filters the whole volume once per region (minutes).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk
import threadpoolctl
from conftest import SHARED_DATA
from typer.testing import CliRunner

from fedrad.client.cli import site_app
from fedrad.client.coverage import coverage
from fedrad.client.data import SiteData
from fedrad.client.extract import extract_site
from fedrad.client.site_config import SiteConfig
from fedrad.common.config import ExtractionSettings, StudyConfig
from fedrad.common.feature_table import read_feature_table
from fedrad.common.radiomics.features import region_mask
from fedrad.simulations.bench.extract import plain_extractor, plain_features

REAL = SHARED_DATA / "real-mri"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real MRI data absent ({REAL})")

SEQUENCES = ("t1c", "t1", "t2", "flair")
SITES = {  # site -> (case, site config YAML)
    "tcga": ("TCGA-FG-6692", "labels: {1: necrosis, 2: oedema, 4: enhancing}\n"),
    "met": ("BraTS-MET-00110-000", "labels: {1: oedema, 2: [enhancing, necrosis]}\n"),
}
REGIONS = {  # site -> the label values of each region its convention delineates
    "tcga": {
        "enhancing": (4,),
        "necrosis": (1,),
        "oedema": (2,),
        "core": (1, 4),
        "whole": (1, 2, 4),
    },
    "met": {"oedema": (1,), "core": (2,), "whole": (1, 2)},
}
STUDY = StudyConfig(
    extraction=ExtractionSettings(
        sequences=SEQUENCES,
        regions={
            "enhancing": ("enhancing",),
            "necrosis": ("necrosis",),
            "oedema": ("oedema",),
            "core": ("enhancing", "necrosis"),
            "whole": ("enhancing", "necrosis", "oedema"),
        },
        resampled_spacing_mm=None,  # BraTS volumes are already 1 mm isotropic
        feature_classes=("firstorder",),  # shape and texture: the slow test below
        bin_width=25.0,
    )
)


def site_files(root: Path, site: str) -> tuple[Path, Path]:
    """The site's manifest and site config (the images stay where they are)."""
    case, labels = SITES[site]
    folder = root / site
    folder.mkdir(parents=True, exist_ok=True)
    paths = ",".join(str(REAL / case / f"{name}.nii.gz") for name in (*SEQUENCES, "seg"))
    label = "HGG" if site == "tcga" else "BM"
    (folder / "manifest.csv").write_text(
        f"case_id,label,{','.join(SEQUENCES)},mask\n{case},{label},{paths}\n"
    )
    (folder / "site.yaml").write_text(f"name: {site}\nmanifest: manifest.csv\n{labels}")
    return folder / "manifest.csv", folder / "site.yaml"


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    """Each site's feature table, extracted with its own site config."""
    root = tmp_path_factory.mktemp("real")
    tables = {}
    for site in SITES:
        manifest, config = site_files(root, site)
        out = root / site / "features.parquet"
        report = extract_site(
            manifest, out, STUDY, workers=2, show_progress=False, site=SiteConfig.from_yaml(config)
        )
        assert report.ok == [SITES[site][0]], report.failed
        tables[site] = out
    return tables


def plain(site: str, settings: ExtractionSettings, sequences) -> dict[str, float]:
    """Plain pyradiomics on the site's case; multi-label regions as binary masks."""
    case, _ = SITES[site]
    mask = sitk.ReadImage(str(REAL / case / "seg.nii.gz"))
    regions = REGIONS[site]
    labels = {
        name: values[0] if len(values) == 1 else region_mask(mask, values)
        for name, values in regions.items()
    }
    images = {name: sitk.ReadImage(str(REAL / case / f"{name}.nii.gz")) for name in sequences}
    with threadpoolctl.threadpool_limits(1):
        extractor = plain_extractor(settings, diagnostics=False)
        return plain_features(extractor, images, mask, labels)


def test_site_check_passes_qc_for_both_conventions_and_a_one_case_site_cannot_take_part(
    tmp_path: Path,
):
    """Each case passes QC under its own convention and the reports are written; one case
    is no site for a 5-fold study, and the lumped labels cannot give the study's regions:
    both said before anything is sent, with exit 1."""
    for site in SITES:
        manifest, config = site_files(tmp_path, site)
        out = tmp_path / f"qc-{site}"
        result = CliRunner().invoke(site_app, ["check", "--site", str(config), "--out", str(out)])
        output = " ".join(result.output.split())
        assert result.exit_code == 1, result.output
        assert "1 of 1 case(s) usable" in output
        assert "This site cannot take part as it is" in output
        assert (out / "qc.csv").is_file() and SITES[site][0] in (out / "qc.html").read_text()
    assert "missing region enhancing: label 2 lumps enhancing, necrosis" in output


def test_each_site_extracts_the_regions_its_labels_delineate(sites):
    for site, path in sites.items():
        table, provenance = read_feature_table(path)
        assert provenance["regions"] == {k: list(v) for k, v in REGIONS[site].items()}
        data = SiteData.load(path, site, STUDY)
        reported = coverage(data.features, STUDY.extraction)
        assert reported["sequences-present"] == list(SEQUENCES)
        expected_missing = [] if site == "tcga" else ["enhancing", "necrosis"]
        assert reported["regions-missing"] == expected_missing


def test_values_equal_plain_pyradiomics_on_t1c(sites):
    for site, path in sites.items():
        table = read_feature_table(path)[0].iloc[0]
        theirs = plain(site, STUDY.extraction, ("t1c",))
        ours = {name: float(table[name]) for name in theirs}
        assert ours == theirs
        assert len(theirs) == (len(table) - 2) / len(SEQUENCES)


@pytest.mark.slow
def test_all_sequences_and_filters_equal_plain_pyradiomics(tmp_path: Path):
    from fedrad.common.radiomics.features import extract_case

    extraction = STUDY.extraction.model_copy(
        update={
            "feature_classes": ("firstorder", "shape", "glcm"),
            "filters": ("original", "log", "wavelet"),
            "log_sigmas_mm": (1.0, 3.0),
        }
    )
    sequences = ("t1c", "flair")
    extraction = extraction.model_copy(update={"sequences": sequences})
    for site in SITES:
        case, _ = SITES[site]
        images = {name: sitk.ReadImage(str(REAL / case / f"{name}.nii.gz")) for name in sequences}
        mask = sitk.ReadImage(str(REAL / case / "seg.nii.gz"))
        with threadpoolctl.threadpool_limits(1):
            ours = extract_case(images, dict.fromkeys(images, mask), REGIONS[site], extraction)
        theirs = plain(site, extraction, sequences)
        assert ours.keys() == theirs.keys()
        for name, value in ours.items():
            if "_log-sigma-" in name:
                assert value == pytest.approx(theirs[name], rel=1e-9, abs=0), name
            else:
                assert value == theirs[name], name
