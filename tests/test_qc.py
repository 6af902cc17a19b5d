"""Per-case QC and manifest validation, on tiny synthetic volumes (no pyradiomics run)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedrad.client.manifest import CaseEntry, ManifestError, read_manifest, row_problems
from fedrad.client.qc import check_case, missing_files, read_case, read_image
from fedrad.common.config import ExtractionSettings

SETTINGS = ExtractionSettings(sequences=("t1c", "flair"), resampled_spacing_mm=None)
SIZE = 24


def lesion_labels() -> np.ndarray:
    """Necrotic core (2) inside an enhancing shell (1) inside oedema (3)."""
    radius = np.linalg.norm(np.indices((SIZE,) * 3) - (SIZE - 1) / 2, axis=0)
    labels = np.zeros((SIZE,) * 3, np.uint8)
    labels[radius < 7] = 3
    labels[radius < 5] = 1
    labels[radius < 3] = 2
    return labels


def volume(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def good_case() -> tuple[dict[str, sitk.Image], sitk.Image]:
    rng = np.random.default_rng(0)
    images = {
        sequence: volume(rng.normal(100, 10, (SIZE,) * 3).astype(np.float32))
        for sequence in SETTINGS.sequences
    }
    return images, volume(lesion_labels())


def test_good_case_has_no_problems():
    images, mask = good_case()
    assert check_case(images, mask, SETTINGS) == []


def test_empty_and_tiny_regions_are_named():
    images, _ = good_case()
    labels = lesion_labels()
    labels[labels == 2] = 1  # no necrosis at all
    labels[labels == 3] = 0
    labels[0, 0, :4] = 3  # oedema of 4 voxels
    reasons = check_case(images, volume(labels), SETTINGS)
    assert "region necrosis (label 2) is empty" in reasons
    assert any("region oedema (label 3) has 4 voxel(s)" in reason for reason in reasons)
    assert not any("enhancing" in reason for reason in reasons)


@pytest.mark.parametrize(
    ("geometry", "what"),
    [
        ({"spacing": (1.0, 1.0, 1.2)}, "spacing"),
        ({"origin": (0.0, 0.5, 0.0)}, "origin"),
    ],
)
def test_geometry_mismatch_is_reported(geometry, what):
    images, mask = good_case()
    images["flair"] = volume(sitk.GetArrayFromImage(images["flair"]), **geometry)
    reasons = check_case(images, mask, SETTINGS)
    assert len(reasons) == 1
    assert reasons[0].startswith(f"flair/mask geometry mismatch: {what}")


def test_size_and_direction_mismatch_are_reported():
    images, mask = good_case()
    images["t1c"] = volume(np.zeros((SIZE + 1, SIZE, SIZE), np.float32))
    images["flair"].SetDirection((-1.0, 0, 0, 0, 1, 0, 0, 0, 1))
    reasons = check_case(images, mask, SETTINGS)
    assert any(reason.startswith("t1c/mask geometry mismatch: size") for reason in reasons)
    assert any(reason.startswith("flair/mask geometry mismatch: direction") for reason in reasons)


def test_geometry_within_tolerance_passes():
    images, mask = good_case()
    images["t1c"].SetOrigin((1e-5, 0.0, 0.0))
    assert check_case(images, mask, SETTINGS) == []


def test_nan_and_inf_voxels_are_counted():
    images, mask = good_case()
    t1c = sitk.GetArrayFromImage(images["t1c"])
    t1c[1, 2, 3] = np.nan
    t1c[4, 5, 6] = np.inf
    images["t1c"] = volume(t1c)
    assert check_case(images, mask, SETTINGS) == ["t1c has 2 NaN/Inf voxel(s)"]


def test_two_dimensional_image_is_refused():
    images, mask = good_case()
    images["t1c"] = sitk.GetImageFromArray(np.zeros((SIZE, SIZE), np.float32))
    reasons = check_case(images, mask, SETTINGS)
    assert reasons == ["t1c is a 2-D image with 1 component(s); expected a 3-D scalar volume"]


def case_files(folder: Path, suffix: str) -> CaseEntry:
    images, mask = good_case()
    paths = {name: folder / f"{name}{suffix}" for name in [*images, "mask"]}
    for name, image in [*images.items(), ("mask", mask)]:
        sitk.WriteImage(image, str(paths[name]))
    return CaseEntry(2, "c1", "HGG", {name: paths[name] for name in images}, paths["mask"])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd"])
def test_intact_files_read_without_problems(tmp_path: Path, suffix: str):
    images, mask, reasons = read_case(case_files(tmp_path, suffix))
    assert reasons == []
    assert check_case(images, mask, SETTINGS) == []


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        (".nii", r"^t1c file t1c.nii: truncated: \d+ of 55648 bytes$"),  # ITK zero-fills these
        (".nii.gz", r"^t1c file t1c.nii.gz: corrupt compressed data \(Compressed file ended"),
        (".nrrd", r"^unreadable t1c file t1c.nrrd: .*fread got only"),
    ],
)
def test_truncated_file_is_reported(tmp_path: Path, suffix: str, reason: str):
    entry = case_files(tmp_path, suffix)
    path = entry.images["t1c"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    images, _, reasons = read_case(entry)
    assert len(reasons) == 1
    assert re.match(reason, reasons[0]), reasons[0]
    assert list(images) == ["flair"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nan_stored_in_nifti_is_reported_although_itk_reads_zero(tmp_path: Path, suffix: str):
    entry = case_files(tmp_path, suffix)
    path = entry.images["flair"]
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    array[3, 4, 5], array[6, 7, 8] = np.nan, -np.inf
    sitk.WriteImage(volume(array), str(path))
    images, _, reasons = read_case(entry)
    assert np.isfinite(sitk.GetArrayViewFromImage(sitk.ReadImage(str(path)))).all()
    assert reasons == [
        f"flair file {path.name}: 2 NaN/Inf voxel(s) stored, which SimpleITK reads as 0"
    ]


def test_non_image_file_is_unreadable(tmp_path: Path):
    path = tmp_path / "junk.nii.gz"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="Unable to determine ImageIO reader"):
        read_image(path)


def test_missing_files_name_the_sequence(tmp_path: Path):
    (tmp_path / "mask.nii.gz").touch()
    entry = CaseEntry(
        line=2,
        case_id="c1",
        label="HGG",
        images={"t1c": None, "flair": tmp_path / "gone.nii.gz"},
        mask=tmp_path / "mask.nii.gz",
    )
    assert missing_files(entry) == [
        "missing sequence t1c: no path in the manifest",
        f"missing sequence flair: file not found: {tmp_path / 'gone.nii.gz'}",
    ]


def write_manifest(folder: Path, text: str) -> Path:
    path = folder / "manifest.csv"
    path.write_text(text)
    return path


def test_manifest_resolves_paths_and_blank_labels(tmp_path: Path):
    path = write_manifest(
        tmp_path,
        "case_id,label,t1c,flair,mask,age\n"
        "a, HGG ,a/t1c.nii.gz,a/flair.nii.gz,a/mask.nii.gz,61\n"
        "b,,b/t1c.nrrd,,b/mask.nrrd,\n",
    )
    first, second = read_manifest(path, SETTINGS.sequences)
    assert first == CaseEntry(
        line=2,
        case_id="a",
        label="HGG",
        images={"t1c": tmp_path / "a/t1c.nii.gz", "flair": tmp_path / "a/flair.nii.gz"},
        mask=tmp_path / "a/mask.nii.gz",
    )
    assert second.label is None
    assert second.images["flair"] is None


def test_manifest_without_a_sequence_column_is_refused(tmp_path: Path):
    path = write_manifest(tmp_path, "case_id,label,t1c,mask\na,HGG,t1c.nii,mask.nii\n")
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['flair'\]") as error:
        read_manifest(path, SETTINGS.sequences)
    assert str(path) in str(error.value)


def test_missing_manifest_and_blank_case_id_are_refused(tmp_path: Path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv", SETTINGS.sequences)
    path = write_manifest(tmp_path, "case_id,label,t1c,flair,mask\n,HGG,a,b,c\n")
    with pytest.raises(ManifestError, match=r"empty case_id on line\(s\) \[2\]"):
        read_manifest(path, SETTINGS.sequences)


def test_duplicate_ids_and_unknown_labels_fail_their_rows(tmp_path: Path):
    path = write_manifest(
        tmp_path,
        "case_id,label,t1c,flair,mask\na,HGG,t,f,m\nb,GBM,t,f,m\na,BM,t,f,m\nc,,t,f,m\n",
    )
    problems = row_problems(read_manifest(path, SETTINGS.sequences), ("HGG", "BM"))
    assert problems == {
        2: "duplicate case id on manifest lines [2, 4]",
        3: "label 'GBM' is not a study class (HGG, BM); leave it empty for unlabelled cases",
        4: "duplicate case id on manifest lines [2, 4]",
    }
