"""Per-case QC, DICOM series and manifest validation, on tiny synthetic volumes (no pyradiomics)."""

from __future__ import annotations

import gzip
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedrad.client.manifest import CaseEntry, ManifestError, read_manifest, row_problems
from fedrad.client.qc import check_case, missing_files, read_case, read_checked, read_image
from fedrad.client.site_config import SiteConfig, site_layout
from fedrad.common.config import ExtractionSettings

SETTINGS = ExtractionSettings(sequences=("t1c", "flair"), resampled_spacing_mm=None)
DEFAULT_SITE = site_layout(SiteConfig(), SETTINGS)
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
    """Noise, with the enhancing shell bright on T1c as a real tumour's (QC checks it)."""
    rng = np.random.default_rng(0)
    uptake = {"t1c": 40.0 * (lesion_labels() == 1)}
    images = {
        sequence: volume(
            (rng.normal(100, 10, (SIZE,) * 3) + uptake.get(sequence, 0)).astype(np.float32)
        )
        for sequence in SETTINGS.sequences
    }
    return images, volume(lesion_labels())


def problems(images, mask, layout=DEFAULT_SITE) -> list[str]:
    return check_case(images, mask, SETTINGS, layout).problems


def test_good_case_has_no_problems_and_keeps_its_mask():
    images, mask = good_case()
    check = check_case(images, mask, SETTINGS, DEFAULT_SITE)
    assert (check.problems, check.notes) == ([], [])
    assert all(check.masks[name] is mask for name in images)


def test_empty_and_tiny_regions_are_named():
    images, _ = good_case()
    labels = lesion_labels()
    labels[labels == 2] = 1  # no necrosis at all
    labels[labels == 3] = 0
    labels[0, 0, :4] = 3  # oedema of 4 voxels
    reasons = problems(images, volume(labels))
    assert "region necrosis (label 2) is empty" in reasons
    assert any("region oedema (label 3) has 4 voxel(s)" in reason for reason in reasons)
    assert not any("enhancing" in reason for reason in reasons)


@pytest.mark.parametrize(
    ("geometry", "what"),
    [
        ({"spacing": (1.0, 1.0, 1.2)}, "spacing"),
        ({"origin": (0.0, 3.0, 0.0)}, "origin"),
    ],
)
def test_geometry_mismatch_beyond_tolerance_is_refused(geometry, what):
    images, mask = good_case()
    images["flair"] = volume(sitk.GetArrayFromImage(images["flair"]), **geometry)
    reasons = problems(images, mask)
    assert len(reasons) == 1
    assert reasons[0].startswith(f"flair/mask geometry mismatch: {what}")
    assert "mask_resample_tolerance_mm is 1" in reasons[0]


def test_size_and_direction_mismatch_are_reported():
    images, mask = good_case()
    images["t1c"] = volume(np.zeros((SIZE + 3, SIZE, SIZE), np.float32))
    images["flair"].SetDirection((-1.0, 0, 0, 0, 1, 0, 0, 0, 1))
    reasons = problems(images, mask)
    assert any(reason.startswith("t1c/mask geometry mismatch: size") for reason in reasons)
    assert any(
        reason.startswith("flair/mask geometry mismatch: direction")
        and "directions differ" in reason
        for reason in reasons
    )


def test_geometry_within_itk_tolerance_passes():
    images, mask = good_case()
    images["t1c"].SetOrigin((1e-5, 0.0, 0.0))
    assert problems(images, mask) == []


def test_mask_on_a_finer_grid_of_the_same_extent_is_resampled_onto_the_image():
    images, _ = good_case()
    fine = lesion_labels().repeat(2, 0).repeat(2, 1).repeat(2, 2)
    mask = volume(fine, spacing=(0.5, 0.5, 0.5), origin=(-0.25, -0.25, -0.25))
    check = check_case(images, mask, SETTINGS, DEFAULT_SITE)
    assert check.problems == []
    assert len(check.notes) == 2
    assert check.notes[0].startswith("mask resampled onto the t1c grid (size")
    for name, image in images.items():
        aligned = check.masks[name]
        assert (aligned.GetSize(), aligned.GetOrigin()) == (image.GetSize(), image.GetOrigin())
        np.testing.assert_array_equal(sitk.GetArrayFromImage(aligned), lesion_labels())


def test_slightly_shifted_image_gets_its_own_resampled_mask():
    images, mask = good_case()
    images["flair"].SetOrigin((0.0, 0.6, 0.0))
    check = check_case(images, mask, SETTINGS, DEFAULT_SITE)
    assert check.problems == []
    assert check.notes == [
        "mask resampled onto the flair grid (origin (0.0, 0.6, 0.0) vs (0.0, 0.0, 0.0); "
        "within 0.6 mm)"
    ]
    assert check.masks["t1c"] is mask
    assert check.masks["flair"].GetOrigin() == (0.0, 0.6, 0.0)


def test_unknown_and_fractional_label_values_are_named():
    images, _ = good_case()
    labels = lesion_labels()
    labels[0, 0, 0] = 5
    assert problems(images, volume(labels)) == [
        "mask has label value(s) [5] that the site config does not map (mapped: 1, 2, 3); "
        "add them under `labels`"
    ]
    fractional = lesion_labels().astype(np.float32)
    fractional[0, 0, 0] = 0.5
    assert problems(images, volume(fractional))[0].startswith(
        "mask has non-integer values (e.g. 0.5)"
    )


def test_site_label_convention_maps_other_numbers_onto_the_study_tissues():
    images, _ = good_case()
    brats = np.choose(lesion_labels(), [0, 4, 1, 2]).astype(np.uint8)  # 1->4, 2->1, 3->2
    site = site_layout(SiteConfig(labels={4: "enhancing", 1: "necrosis", 2: "oedema"}), SETTINGS)
    assert problems(images, volume(brats), site) == []
    assert problems(images, volume(brats))[0].startswith("mask has label value(s) [4]")


def test_nan_and_inf_voxels_are_counted():
    images, mask = good_case()
    t1c = sitk.GetArrayFromImage(images["t1c"])
    t1c[1, 2, 3] = np.nan
    t1c[4, 5, 6] = np.inf
    images["t1c"] = volume(t1c)
    assert problems(images, mask) == ["t1c has 2 NaN/Inf voxel(s)"]


def test_two_dimensional_and_single_slice_images_are_refused():
    images, mask = good_case()
    images["t1c"] = sitk.GetImageFromArray(np.zeros((SIZE, SIZE), np.float32))
    images["flair"] = volume(np.zeros((1, SIZE, SIZE), np.float32))
    assert problems(images, mask) == [
        "t1c is a 2-D image with 1 component(s); expected a 3-D scalar volume",
        f"flair has size ({SIZE}, {SIZE}, 1): a single slice, not a 3-D volume",
    ]


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
    assert problems(images, mask) == []


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


def same_image(ours: sitk.Image, theirs: sitk.Image) -> bool:
    return (
        (sitk.GetArrayViewFromImage(ours) == sitk.GetArrayViewFromImage(theirs)).all()
        and ours.GetPixelID() == theirs.GetPixelID()
        and (ours.GetOrigin(), ours.GetSpacing(), ours.GetDirection())
        == (theirs.GetOrigin(), theirs.GetSpacing(), theirs.GetDirection())
        and {key: ours.GetMetaData(key) for key in ours.GetMetaDataKeys()}
        == {key: theirs.GetMetaData(key) for key in theirs.GetMetaDataKeys()}
    )


def test_compressed_nifti_decompressed_once_reads_as_itk_reads_the_file(tmp_path: Path):
    path = case_files(tmp_path, ".nii.gz").images["t1c"]
    image, problem = read_checked(path)
    assert problem is None
    assert same_image(image, sitk.ReadImage(str(path)))


def test_without_a_temporary_folder_itk_reads_the_compressed_file(tmp_path: Path, monkeypatch):
    path = case_files(tmp_path, ".nii.gz").images["t1c"]

    def no_folder(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", no_folder)
    image, problem = read_checked(path)
    assert problem is None
    assert same_image(image, sitk.ReadImage(str(path)))


def test_compressed_junk_is_unreadable_under_the_site_s_file_name(tmp_path: Path):
    entry = case_files(tmp_path, ".nii.gz")
    entry.images["t1c"].write_bytes(gzip.compress(b"not an image" * 100))
    _, _, reasons = read_case(entry)
    assert len(reasons) == 1
    assert reasons[0].startswith("unreadable t1c file t1c.nii.gz: ")
    assert "fedrad-nifti" not in reasons[0]


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
        f"missing sequence flair: file not found: {tmp_path / 'gone.nii.gz'}; a manifest's "
        "paths are relative to the manifest's own folder",
    ]


def test_a_missing_relative_path_shows_where_it_points_and_what_it_is_relative_to(
    tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path, "case_id,label,t1c,flair,mask\nc1,HGG,scans/t1c.nii,,\n")
    (entry,) = read_manifest(Path("manifest.csv"), SETTINGS.sequences)
    (reason,) = [line for line in missing_files(entry) if "t1c" in line]
    assert reason == (
        f"missing sequence t1c: file not found: scans/t1c.nii (that is, "
        f"{tmp_path / 'scans' / 't1c.nii'}); a manifest's paths are relative to the "
        "manifest's own folder"
    )


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
    with pytest.raises(ManifestError, match="there is no manifest .*nope.csv"):
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


def test_manifest_of_a_site_without_a_sequence_needs_it_declared(tmp_path: Path):
    path = write_manifest(tmp_path, "case_id,label,t1c,mask\na,HGG,t1c.nii,mask.nii\n")
    (entry,) = read_manifest(path, ["t1c"], missing=["flair"])
    assert list(entry.images) == ["t1c"]
    with pytest.raises(ManifestError, match=r"declare a sequence .* under missing_sequences"):
        read_manifest(path, SETTINGS.sequences)
    both = write_manifest(tmp_path, "case_id,label,t1c,flair,mask\na,HGG,t,f,m\n")
    with pytest.raises(ManifestError, match=r"column\(s\) \['flair'\] that the site config"):
        read_manifest(both, ["t1c"], missing=["flair"])


DICOM_UID = "1.2.826.0.1.3680043.2.1125.7"


def write_series(folder: Path, array: np.ndarray, uid: str = DICOM_UID, skip=()) -> Path:
    """A DICOM MR series, one file per slice, 1 x 1 x 2 mm, stacked along z."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        if k in skip:
            continue
        image = sitk.GetImageFromArray(array[k].astype(np.int16))
        tags = {
            "0008|0060": "MR",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": f"{uid}.0",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{2.0 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-1]}-{k:03d}.dcm"))
        writer.Execute(image)
    return folder


def test_dicom_series_folder_reads_as_one_volume(tmp_path: Path):
    array = np.random.default_rng(0).integers(0, 1000, (6, 8, 10))
    image = read_image(write_series(tmp_path / "series", array))
    assert (image.GetSize(), image.GetSpacing()[2]) == ((10, 8, 6), 2.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path: Path):
    folder = write_series(tmp_path / "gap", np.ones((6, 8, 10)), skip=(3,))
    with pytest.raises(ValueError, match=r"uneven slice spacing: 4 mm after slice 3 of 5"):
        read_image(folder)


def test_folder_with_two_series_or_none_is_refused(tmp_path: Path):
    folder = write_series(tmp_path / "two", np.ones((3, 4, 4)))
    write_series(folder, np.ones((3, 4, 4)), uid=DICOM_UID[:-1] + "8")
    with pytest.raises(ValueError, match="holds 2 DICOM series; give each its own folder"):
        read_image(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no DICOM series in folder empty"):
        read_image(tmp_path / "empty")
