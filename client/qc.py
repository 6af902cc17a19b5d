"""Per-case quality control: are a case's files there, intact and fit for extraction?

`read_case` and `check_case` return plain reasons for the site operator instead of raising,
so one case reports all its problems at once and a bad case never stops the others.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fedrad.client.manifest import MASK_COLUMN, CaseEntry
from fedrad.common.config import ExtractionSettings

_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 and float64
_NIFTI_HEADER_SIZES = (348, 540)  # NIfTI-1, NIfTI-2; read in the file's byte order


def missing_files(entry: CaseEntry) -> list[str]:
    """Reasons for blank or absent image/mask paths."""
    reasons = []
    for name, path in [*entry.images.items(), (MASK_COLUMN, entry.mask)]:
        kind = "mask" if name == MASK_COLUMN else f"sequence {name}"
        if path is None:
            reasons.append(f"missing {kind}: no path in the manifest")
        elif not path.is_file():
            reasons.append(f"missing {kind}: file not found: {path}")
    return reasons


def read_image(path: Path) -> sitk.Image:
    """Read one volume; raises ValueError with ITK's last (most specific) error line."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ValueError(lines[-1] if lines else "unreadable") from exc


def nifti_payload_problem(path: Path, image: sitk.Image) -> str | None:
    """What ITK hides in a NIfTI file: it zero-fills truncated data and reads NaN/Inf as 0."""
    if not image.HasMetaDataKey("vox_offset") or not path.name.endswith((".nii", ".nii.gz")):
        return None
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        return f"corrupt compressed data ({exc})"
    meta = image.GetMetaData
    offset = int(float(meta("vox_offset")))
    count = int(np.prod([int(meta(f"dim[{axis}]")) for axis in range(1, int(meta("dim[0]")) + 1)]))
    expected = offset + count * int(meta("bitpix")) // 8
    if len(raw) < expected:
        return f"truncated: {len(raw)} of {expected} bytes"
    dtype = _NIFTI_FLOATS.get(int(meta("datatype")))
    if dtype is None:
        return None
    order = "<" if int.from_bytes(raw[:4], "little") in _NIFTI_HEADER_SIZES else ">"
    values = np.frombuffer(raw, np.dtype(order + dtype), count=count, offset=offset)
    bad = values.size - int(np.count_nonzero(np.isfinite(values)))
    return f"{bad} NaN/Inf voxel(s) stored, which SimpleITK reads as 0" if bad else None


def read_case(entry: CaseEntry) -> tuple[dict[str, sitk.Image], sitk.Image | None, list[str]]:
    """Read every image and the mask once; call after `missing_files` found nothing."""
    images: dict[str, sitk.Image] = {}
    mask = None
    reasons = []
    for name, path in [*entry.images.items(), (MASK_COLUMN, entry.mask)]:
        try:
            image = read_image(path)
        except ValueError as exc:
            reasons.append(f"unreadable {name} file {path.name}: {exc}")
            continue
        problem = nifti_payload_problem(path, image)
        if problem:
            reasons.append(f"{name} file {path.name}: {problem}")
        elif name == MASK_COLUMN:
            mask = image
        else:
            images[name] = image
    return images, mask, reasons


def _shape_problem(name: str, image: sitk.Image) -> str | None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        return (
            f"{name} is a {image.GetDimension()}-D image with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s); expected a 3-D scalar volume"
        )
    return None


def _rounded(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(value, 4) for value in values)


def _geometry_mismatch(
    name: str, image: sitk.Image, mask: sitk.Image, tolerance: float
) -> str | None:
    """Compare like ITK does: origin and spacing within tolerance x spacing, direction absolute."""
    if image.GetSize() != mask.GetSize():
        return f"{name}/mask geometry mismatch: size {image.GetSize()} vs {mask.GetSize()}"
    coordinate_tolerance = tolerance * mask.GetSpacing()[0]
    for what, ours, theirs, atol in [
        ("spacing", image.GetSpacing(), mask.GetSpacing(), coordinate_tolerance),
        ("origin", image.GetOrigin(), mask.GetOrigin(), coordinate_tolerance),
        ("direction", image.GetDirection(), mask.GetDirection(), tolerance),
    ]:
        if not np.allclose(ours, theirs, rtol=0, atol=atol):
            return f"{name}/mask geometry mismatch: {what} {_rounded(ours)} vs {_rounded(theirs)}"
    return None


def _non_finite(name: str, array: np.ndarray) -> str | None:
    if not np.issubdtype(array.dtype, np.floating):
        return None
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    return f"{name} has {bad} NaN/Inf voxel(s)" if bad else None


def check_case(
    images: dict[str, sitk.Image], mask: sitk.Image, settings: ExtractionSettings
) -> list[str]:
    """Reasons a readable case cannot be extracted: shape, geometry, NaN/Inf, region sizes."""
    reasons = []
    for name, image in [*images.items(), (MASK_COLUMN, mask)]:
        problem = _shape_problem(name, image) or _non_finite(
            name, sitk.GetArrayViewFromImage(image)
        )
        if problem:
            reasons.append(problem)
    if reasons:
        return reasons
    for name, image in images.items():
        mismatch = _geometry_mismatch(name, image, mask, settings.geometry_tolerance)
        if mismatch:
            reasons.append(mismatch)
    labels = sitk.GetArrayViewFromImage(mask)
    for region, value in settings.regions.items():
        voxels = int(np.count_nonzero(labels == value))
        if voxels == 0:
            reasons.append(f"region {region} (label {value}) is empty")
        elif voxels < settings.min_region_voxels:
            reasons.append(
                f"region {region} (label {value}) has {voxels} voxel(s), "
                f"fewer than min_region_voxels={settings.min_region_voxels}"
            )
    return reasons
