"""Synthetic multi-center brain-MRI cohort: HGG vs brain metastasis, with scanner effects.

Writes one folder per site with NIfTI images, tumour label maps and a site manifest
(DESIGN.md, "Data contracts"), so that the whole pipeline - QC, extraction, federated
harmonization and training - can run without real patient data. Every case is a pure
function of (seed, site, case number), so cohorts are reproducible byte for byte and a
case does not change when more cases or sequences are requested.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fedrad.simulations.synth.anatomy import Anatomy, render_anatomy
from fedrad.simulations.synth.mri import BiasField, acquire
from fedrad.simulations.synth.site import SEQUENCES, Grid, SiteProfile, draw_site_profile
from fedrad.simulations.synth.tumour import Tumour, draw_phenotype, region_counts, render_tumour

MIN_REGION_MM3 = 200.0  # 25 voxels of 2 mm, and >= 10 (QC's minimum) on any native grid
_PLACEMENT_ATTEMPTS = 50
_CASE_STREAM, _NOISE_STREAM = 2, 3  # first entries of the per-case seed tuples


@dataclass(frozen=True)
class SyntheticCase:
    """One simulated patient: images per sequence, label map, clinical covariates."""

    case_id: str
    label: str
    age: int
    sex: str
    grid: Grid
    images: dict[str, np.ndarray]
    mask: np.ndarray


def _covariates(rng: np.random.Generator, is_hgg: bool) -> tuple[int, str]:
    """Age and sex: metastasis patients a little older, gliomas a little more often male."""
    age = rng.normal(59.0, 13.0) if is_hgg else rng.normal(62.0, 11.0)
    male = rng.random() < (0.6 if is_hgg else 0.48)
    return int(np.clip(round(age), 18, 90)), "M" if male else "F"


def _render_valid_tumour(
    rng: np.random.Generator, grid: Grid, anatomy: Anatomy, is_hgg: bool, case_id: str
) -> Tumour:
    """Place the tumour until every region has at least MIN_REGION_MM3 of volume.

    Oedema can be cut away by cortex, ventricles or the brain surface; re-placing the same
    tumour elsewhere keeps its phenotype, so the class distributions are not distorted.
    """
    phenotype = draw_phenotype(rng, is_hgg)
    needed = max(1, math.ceil(MIN_REGION_MM3 / grid.voxel_volume))
    for _ in range(_PLACEMENT_ATTEMPTS):
        tumour = render_tumour(rng, grid, anatomy, phenotype)
        if min(region_counts(tumour).values()) >= needed:
            return tumour
    raise RuntimeError(f"{case_id}: could not place a tumour with all regions present")


def simulate_case(
    seed: int, site: SiteProfile, index: int, size: int, sequences: Sequence[str]
) -> SyntheticCase:
    """Case number `index` (0-based) of `site`; a pure function of its arguments."""
    case_id = f"{site.name}-{index + 1:04d}"
    rng = np.random.default_rng((seed, _CASE_STREAM, site.number, index))
    is_hgg = site.case_is_hgg(index)
    grid = site.grid(size)
    age, sex = _covariates(rng, is_hgg)
    anatomy = render_anatomy(rng, grid)
    tumour = _render_valid_tumour(rng, grid, anatomy, is_hgg, case_id)
    bias = BiasField.for_case(rng, site)(grid)
    mask = np.zeros(grid.shape, dtype=np.uint8)
    mask[tumour.box] = tumour.labels
    images = {}
    for sequence in sequences:  # own noise stream: adding a sequence leaves the others alone
        noise = np.random.default_rng(
            (seed, _NOISE_STREAM, site.number, index, SEQUENCES.index(sequence))
        )
        images[sequence] = acquire(sequence, grid, anatomy, tumour, site, bias, noise)
    label = "HGG" if is_hgg else "BM"
    return SyntheticCase(case_id, label, age, sex, grid, images, mask)


def _to_image(array: np.ndarray, grid: Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def _write_nifti_gz(image: sitk.Image, path: Path) -> None:
    """SimpleITK writes the NIfTI; we gzip it at level 1 (with no timestamp).

    ITK ignores the requested compression level and spends ~0.14 s per noisy 96^3 float
    volume; level 1 is three times faster for ~20% larger files, and any NIfTI reader
    (SimpleITK included) reads the result.
    """
    plain = path.with_suffix("")  # x.nii.gz -> x.nii
    sitk.WriteImage(image, str(plain), False)
    path.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1, mtime=0))
    plain.unlink()


def _write_case(site_dir: Path, case: SyntheticCase) -> dict[str, str]:
    """Write the case's NIfTI files; return its manifest row (paths relative to site_dir)."""
    row = {"case_id": case.case_id, "label": case.label}
    volumes = {**case.images, "mask": case.mask}
    for name, array in volumes.items():
        relative = f"images/{case.case_id}_{name}.nii.gz"
        _write_nifti_gz(_to_image(array, case.grid), site_dir / relative)
        row[name] = relative
    return {**row, "age": str(case.age), "sex": case.sex}


def _write_manifest(path: Path, rows: list[dict[str, str]], sequences: Sequence[str]) -> None:
    columns = ["case_id", "label", *sequences, "mask", "age", "sex"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _check_arguments(sites: int, cases_per_site: int, size: int, sequences: Sequence[str]) -> None:
    if sites < 1 or cases_per_site < 1:
        raise ValueError(
            f"need at least one site and one case per site, got {sites} x {cases_per_site}"
        )
    if size < 32:
        raise ValueError(f"size must be at least 32 voxels to resolve a tumour, got {size}")
    unknown = [s for s in sequences if s not in SEQUENCES]
    if unknown or not sequences or len(set(sequences)) != len(sequences):
        raise ValueError(
            f"sequences must be distinct names from {list(SEQUENCES)}, got {list(sequences)}"
        )


def generate_cohort(
    out_dir: Path,
    sites: int = 3,
    cases_per_site: int = 40,
    seed: int = 0,
    size: int = 96,
    sequences: Sequence[str] = ("t1c", "flair"),
    on_case: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the cohort; return the manifest path of each site, in site order."""
    _check_arguments(sites, cases_per_site, size, sequences)
    manifests = []
    for site_number in range(1, sites + 1):
        site = draw_site_profile(seed, site_number)
        site_dir = Path(out_dir) / site.name
        (site_dir / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for index in range(cases_per_site):
            case = simulate_case(seed, site, index, size, sequences)
            rows.append(_write_case(site_dir, case))
            if on_case is not None:
                on_case(case.case_id)
        manifest = site_dir / "manifest.csv"
        _write_manifest(manifest, rows, sequences)
        manifests.append(manifest)
    return manifests
