"""Tiny synthetic cases on disk, good and broken, and manifests naming them (shared by
the extraction, site check and clinical tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fedrad.common.config import ExtractionSettings, StudyConfig

STUDY = StudyConfig(
    extraction=ExtractionSettings(
        sequences=("t1c", "flair"),
        feature_classes=("firstorder", "shape"),
        resampled_spacing_mm=None,
    )
)
SIZE = 24
GOOD = {"g1": "HGG", "g2": "BM", "g3": ""}
BAD = {
    "empty": "region enhancing (label 1) is empty",
    "geometry": "flair/mask geometry mismatch: spacing",
    "truncated": "t1c file truncated_t1c.nii.gz: corrupt compressed data",
    "nan": "t1c file nan_t1c.nii.gz: 1 NaN/Inf voxel(s) stored",
    "dup": "duplicate case id on manifest lines",
    "badlabel": "label 'GBM' is not a study class",
    "nofile": "missing sequence flair: file not found",
}


def lesion_labels() -> np.ndarray:
    """Necrotic core (2) inside an enhancing shell (1) inside oedema (3)."""
    radius = np.linalg.norm(np.indices((SIZE,) * 3) - (SIZE - 1) / 2, axis=0)
    labels = np.zeros((SIZE,) * 3, np.uint8)
    labels[radius < 8] = 3
    labels[radius < 6] = 1
    labels[radius < 3] = 2
    return labels


def write(array: np.ndarray, path: Path, spacing: float = 1.0) -> str:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing,) * 3)
    sitk.WriteImage(image, str(path))
    return path.name


def write_case(folder: Path, case_id: str, seed: int, suffix: str = ".nii.gz") -> dict[str, str]:
    """A synthetic case whose intensities differ by region; returns its manifest row."""
    rng = np.random.default_rng(seed)
    labels = lesion_labels()
    row = {"case_id": case_id, "label": "HGG"}
    for sequence, contrast in [("t1c", 40.0), ("flair", -25.0)]:
        array = rng.normal(100, 10, labels.shape) + contrast * (labels == 1) + 15 * (labels == 3)
        row[sequence] = write(array.astype(np.float32), folder / f"{case_id}_{sequence}{suffix}")
    row["mask"] = write(labels, folder / f"{case_id}_mask{suffix}")
    return row


def write_manifest(folder: Path, rows: list[dict[str, str]], name: str = "manifest.csv") -> Path:
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def good_rows(folder: Path) -> list[dict[str, str]]:
    """Three good cases, one of them NRRD and one unlabelled."""
    return [
        {
            **write_case(folder, case_id, seed, ".nrrd" if case_id == "g3" else ".nii.gz"),
            "label": label,
        }
        for seed, (case_id, label) in enumerate(GOOD.items())
    ]


def bad_rows(folder: Path) -> list[dict[str, str]]:
    """One row per failure in BAD (two for the duplicate id)."""
    rows = {case_id: write_case(folder, case_id, 10 + seed) for seed, case_id in enumerate(BAD)}
    write(np.zeros((SIZE,) * 3, np.uint8), folder / rows["empty"]["mask"])
    flair = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / rows["geometry"]["flair"])))
    write(flair, folder / rows["geometry"]["flair"], spacing=1.5)
    truncated = folder / rows["truncated"]["t1c"]
    truncated.write_bytes(truncated.read_bytes()[:-200])
    t1c = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / rows["nan"]["t1c"])))
    t1c[12, 12, 12] = np.nan
    write(t1c, folder / rows["nan"]["t1c"])
    rows["badlabel"]["label"] = "GBM"
    rows["nofile"]["flair"] = "nowhere.nii.gz"
    return [*rows.values(), {**rows["dup"], "label": "BM"}]
