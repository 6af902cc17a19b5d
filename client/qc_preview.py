"""What qc.html shows of each case: thumbnails, region sizes, spacing, intensity range.

Every manifest row gets a preview, failed ones included: each file is read on its own, so
one unreadable sequence or mask leaves the rest of the case visible. Cases are drawn in
parallel with extraction's worker pool; the PNGs stay in the site's output folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fedrad.client.manifest import CaseEntry
from fedrad.client.parallel import run_cases
from fedrad.client.qc import read_checked
from fedrad.client.qc_thumbnail import Thumbnail, thumbnail
from fedrad.client.site_config import SiteLayout
from fedrad.client.site_plan import SitePlan


@dataclass(frozen=True)
class SequenceView:
    """One sequence of a case: its thumbnail and facts, or why there is none."""

    name: str
    thumbnail: Thumbnail | None = None
    absent: str = ""  # why there is no thumbnail
    spacing: tuple[float, ...] = ()
    intensity_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class CasePreview:
    views: tuple[SequenceView, ...]
    region_voxels: dict[str, int] = field(default_factory=dict)  # empty without a mask
    mask_problem: str = ""  # why the thumbnails have no outlines


@dataclass(frozen=True)
class PreviewTask:
    entry: CaseEntry
    layout: SiteLayout


def preview_site(
    plan: SitePlan, workers: int | None = None, show_progress: bool = True
) -> dict[int, CasePreview]:
    """Manifest line -> preview, for every row of the manifest."""
    tasks = [PreviewTask(entry, plan.layout) for entry in plan.entries]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    previews = run_cases(preview_case, tasks, _crashed, workers, "Thumbnails", show_progress)
    return {task.entry.line: preview for task, preview in zip(tasks, previews, strict=True)}


def preview_case(task: PreviewTask) -> CasePreview:
    entry, layout = task.entry, task.layout
    mask, mask_problem = _read_volume(entry.mask, "mask")
    region_voxels = _region_voxels(mask, layout.regions) if mask is not None else {}
    views = [_view(name, entry.images.get(name), mask, layout) for name in layout.sequences]
    views += [
        SequenceView(name, absent=f"no {name}: declared missing at this site")
        for name in layout.missing_sequences
    ]
    return CasePreview(tuple(views), region_voxels, mask_problem)


def _view(
    name: str, path: Path | None, mask: sitk.Image | None, layout: SiteLayout
) -> SequenceView:
    image, problem = _read_volume(path, name)
    if image is None:
        return SequenceView(name, absent=problem)
    labels = _on_grid(mask, image) if mask is not None else None
    voxels = sitk.GetArrayViewFromImage(image)
    finite = voxels[np.isfinite(voxels)] if np.issubdtype(voxels.dtype, np.floating) else voxels
    extremes = (float(finite.min()), float(finite.max())) if finite.size else None
    return SequenceView(
        name, thumbnail(image, labels, layout.regions), "", image.GetSpacing(), extremes
    )


def _read_volume(path: Path | None, name: str) -> tuple[sitk.Image | None, str]:
    """A 3-D scalar volume, or None and why not (naming the sequence or the mask)."""
    if path is None:
        return None, f"no {name}: no path in the manifest"
    if not path.exists():
        return None, f"no {name}: file not found: {path.name}"
    try:
        volume, _ = read_checked(path)  # QC reports what the payload hides; show the rest
    except ValueError as exc:
        return None, f"{name} unreadable: {exc}"
    if volume.GetDimension() != 3 or volume.GetNumberOfComponentsPerPixel() != 1:
        return None, f"{name} is not a 3-D scalar volume"
    return volume, ""


def _on_grid(mask: sitk.Image, image: sitk.Image) -> sitk.Image:
    """The mask on the image's voxels (nearest neighbour, for display only: QC decides
    whether extraction may resample it)."""
    same = (
        mask.GetSize() == image.GetSize()
        and np.allclose(mask.GetSpacing(), image.GetSpacing())
        and np.allclose(mask.GetOrigin(), image.GetOrigin())
        and np.allclose(mask.GetDirection(), image.GetDirection())
    )
    if same:
        return mask
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


def _region_voxels(mask: sitk.Image, regions: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    labels = sitk.GetArrayViewFromImage(mask)
    return {
        region: int(np.count_nonzero(np.isin(labels, values))) for region, values in regions.items()
    }


def _crashed(task: PreviewTask) -> CasePreview:
    names = (*task.layout.sequences, *task.layout.missing_sequences)
    why = "thumbnail worker died reading this case (out of memory?)"
    return CasePreview(tuple(SequenceView(name, absent=why) for name in names))
