"""Read a DICOM series folder as one 3-D volume, or say plainly why not.

ITK reads a series with a missing slice without complaint (it assumes even spacing), which
would silently stretch the anatomy; so the slice positions are checked first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

_POSITION, _ORIENTATION = "0020|0032", "0020|0037"
_GAP_TOLERANCE = 0.01  # relative deviation of a slice gap from the median gap


def read_series(folder: Path) -> sitk.Image:
    """The folder's single DICOM series; ValueError names what is wrong with it."""
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise ValueError(f"no DICOM series in folder {folder.name}")
    if len(ids) > 1:
        raise ValueError(
            f"folder {folder.name} holds {len(ids)} DICOM series; give each its own folder"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
    problem = slice_spacing_problem(files)
    if problem:
        raise ValueError(f"DICOM series in {folder.name}: {problem}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


def slice_spacing_problem(files: tuple[str, ...]) -> str | None:
    """Missing, duplicate or unevenly spaced slices, from the slices' positions."""
    if len(files) < 2:
        return f"{len(files)} slice(s); a 3-D series needs several"
    positions, normal = [], None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        reader.ReadImageInformation()
        if not (reader.HasMetaDataKey(_POSITION) and reader.HasMetaDataKey(_ORIENTATION)):
            return f"slice {Path(name).name} lacks its position or orientation"
        if normal is None:
            cosines = [float(v) for v in reader.GetMetaData(_ORIENTATION).split("\\")]
            normal = np.cross(cosines[:3], cosines[3:])
        position = [float(v) for v in reader.GetMetaData(_POSITION).split("\\")]
        positions.append(float(np.dot(position, normal)))
    gaps = np.diff(np.sort(positions))
    expected = float(np.median(gaps))
    if expected <= 0:
        return "slices share positions (duplicates)"
    uneven = np.flatnonzero(np.abs(gaps - expected) > _GAP_TOLERANCE * expected)
    if uneven.size:
        first = int(uneven[0])
        return (
            f"uneven slice spacing: {gaps[first]:.3g} mm after slice {first + 1} of "
            f"{len(files)} where {expected:.3g} mm is usual (missing or duplicate slice?)"
        )
    return None
