"""A mask read under the wrong label convention is flagged by case: oedema must touch the
tissue around the tumour more than the core does, enhancing tumour must be the brightest
tumour label on T1c. Shown on a synthetic lesion and on the two real cases of
../shared/data, each with its right and a wrong convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED_DATA

from fedrad.client.label_checks import convention_problems
from fedrad.client.site_check import check_site
from fedrad.client.site_config import SiteConfig
from fedrad.common.config import ExtractionSettings, StudyConfig

REAL = SHARED_DATA / "real-mri"
real_data = pytest.mark.skipif(not REAL.is_dir(), reason=f"real MRI data absent ({REAL})")
SIZE = 24


def meaning(labels: dict[int, str | list[str]]) -> dict[int, frozenset[str]]:
    return {
        value: frozenset([tissues] if isinstance(tissues, str) else tissues)
        for value, tissues in labels.items()
    }


def lesion() -> tuple[sitk.Image, sitk.Image]:
    """Necrosis (2) in an enhancing shell (1) in oedema (3); the shell bright on T1c."""
    radius = np.linalg.norm(np.indices((SIZE,) * 3) - (SIZE - 1) / 2, axis=0)
    labels = np.zeros((SIZE,) * 3, np.uint8)
    labels[radius < 10] = 3
    labels[radius < 6] = 1
    labels[radius < 3] = 2
    rng = np.random.default_rng(1)
    t1c = rng.normal(100, 10, labels.shape) + 40 * (labels == 1) + 10 * (labels == 3)
    return sitk.GetImageFromArray(labels), sitk.GetImageFromArray(t1c.astype(np.float32))


def lesion_problems(labels: dict[int, str | list[str]]) -> list[str]:
    mask, t1c = lesion()
    return convention_problems(mask, {"t1c": t1c}, {"t1c": mask}, meaning(labels), 10)


def test_the_right_convention_raises_nothing():
    assert lesion_problems({1: "enhancing", 2: "necrosis", 3: "oedema"}) == []


def test_oedema_called_core_is_flagged_against_each_core_label_with_both_shares():
    problems = lesion_problems({1: "enhancing", 2: "oedema", 3: "necrosis"})
    assert [problem.split(":")[0] for problem in problems] == [
        "label 2 (oedema) touches the tissue around the tumour less than label 1 (enhancing)",
        "label 2 (oedema) touches the tissue around the tumour less than label 3 (necrosis)",
    ]
    assert problems[1].split(":")[1].startswith(" 0% vs 77% of its surface")


def test_enhancing_darker_than_other_tumour_labels_on_t1c_is_flagged():
    problems = lesion_problems({1: "necrosis", 2: "enhancing", 3: "oedema"})
    assert [problem.split(":")[0] for problem in problems] == [
        "on t1c, label 2 (enhancing) is not brighter than label 1 (necrosis)",
        "on t1c, label 2 (enhancing) is not brighter than label 3 (oedema)",
    ]


def test_without_t1c_only_the_geometry_is_judged():
    mask, t1c = lesion()
    swapped = meaning({1: "necrosis", 2: "enhancing", 3: "oedema"})
    assert convention_problems(mask, {"flair": t1c}, {"flair": mask}, swapped, 10) == []


def real_problems(case: str, labels: dict[int, str | list[str]]) -> list[str]:
    mask = sitk.ReadImage(str(REAL / case / "seg.nii.gz"))
    t1c = sitk.ReadImage(str(REAL / case / "t1c.nii.gz"))
    return convention_problems(mask, {"t1c": t1c}, {"t1c": mask}, meaning(labels), 10)


@real_data
def test_real_glioma_passes_brats2021_and_fails_with_tissues_swapped():
    case = "TCGA-FG-6692"
    assert real_problems(case, {1: "necrosis", 2: "oedema", 4: "enhancing"}) == []
    swapped = real_problems(case, {1: "enhancing", 2: "necrosis", 4: "oedema"})
    assert any(p.startswith("label 4 (oedema) touches the tissue around") for p in swapped)
    assert any(p.startswith("on t1c, label 1 (enhancing) is not brighter") for p in swapped)


@real_data
def test_real_metastasis_passes_its_convention_and_fails_as_brats_met():
    case = "BraTS-MET-00110-000"
    assert real_problems(case, {1: "oedema", 2: ["enhancing", "necrosis"]}) == []
    (problem,) = real_problems(case, SiteConfig(labels="brats-met").labels)
    assert problem.startswith(
        "label 2 (oedema) touches the tissue around the tumour less than label 1"
    )


@real_data
def test_site_check_names_the_case_whose_mask_contradicts_the_convention(tmp_path: Path):
    case = "BraTS-MET-00110-000"
    folder = REAL / case
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        f"case_id,label,t1c,mask\n{case},BM,{folder / 't1c.nii.gz'},{folder}/seg.nii.gz\n"
    )
    study = StudyConfig(extraction=ExtractionSettings(sequences=("t1c",)))
    report = check_site(manifest, study, SiteConfig(labels="brats-met"), 1, show_progress=False)
    (status,) = report.statuses
    assert status.case_id == case and not status.usable
    assert any(
        "label 2 (oedema) touches the tissue around" in problem for problem in status.problems
    )
