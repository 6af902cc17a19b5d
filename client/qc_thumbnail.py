"""One sequence's QC thumbnail: does the mask sit on the tumour?

The axial slice where the tumour (the union of the study's regions) is largest, windowed
to the 1st-99th percentile of the head in that slice (the brain, in a skull-stripped
image), scaled to about 160 px with square
pixels, each region outlined in its own colour. Shown the radiological way: the
patient's right on the left, anterior at the top.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from fedrad.client.png import indexed_png

THUMBNAIL_PX = 160  # the longer side
WINDOW_PERCENTILES = (1.0, 99.0)
# Okabe-Ito colours, distinct for colour-blind readers and from the grey image beneath
REGION_COLOURS = (
    (213, 94, 0),
    (240, 228, 66),
    (86, 180, 233),
    (0, 158, 115),
    (204, 121, 167),
    (230, 159, 0),
    (0, 114, 178),
)
_GREYS = 256 - len(REGION_COLOURS)  # palette: a grey ramp, then the region colours
PALETTE = [(round(i * 255 / (_GREYS - 1)),) * 3 for i in range(_GREYS)] + list(REGION_COLOURS)


@dataclass(frozen=True)
class Thumbnail:
    png: bytes
    slice_index: int  # axial, counted from the most inferior slice
    slices: int
    window: tuple[float, float]  # intensities shown as black and white


def region_colour(position: int) -> tuple[int, int, int]:
    """The outline colour of the study's `position`-th region (the legend's too)."""
    return REGION_COLOURS[position % len(REGION_COLOURS)]


def thumbnail(
    image: sitk.Image, labels: sitk.Image | None, regions: Mapping[str, tuple[int, ...]]
) -> Thumbnail:
    """`labels` lies on `image`'s grid (None: no mask, so the middle slice, no outlines);
    `regions` maps each region, in the study's order, to its label values."""
    pixels, (spacing_x, spacing_y) = _axial(image)
    label_map = _axial(labels)[0] if labels is not None else np.zeros(pixels.shape, np.uint8)
    values = [value for members in regions.values() for value in members]
    index = largest_area_slice(np.isin(label_map, values))
    plane, plane_labels = pixels[index].astype(np.float32), label_map[index]
    window = brain_window(plane)
    shape = _thumbnail_shape(plane.shape, spacing_x, spacing_y)
    grey = _windowed(_resized(plane, shape, order=1), window)
    indices = outlined(grey, _resized(plane_labels, shape, order=0), regions)
    return Thumbnail(indexed_png(indices, PALETTE), index, pixels.shape[0], window)


def largest_area_slice(tumour: np.ndarray) -> int:
    """The axial (first-axis) slice with the most tumour voxels; the middle if none."""
    areas = tumour.reshape(tumour.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.any() else tumour.shape[0] // 2


def brain_window(plane: np.ndarray) -> tuple[float, float]:
    """1st and 99th percentile of the head in the slice (Otsu's foreground: the brain once
    skull-stripped), so background and a few very bright voxels do not wash it out."""
    finite = plane[np.isfinite(plane)]
    if finite.size == 0 or finite.min() == finite.max():
        value = float(finite[0]) if finite.size else 0.0
        return value, value + 1.0
    foreground = finite[finite > otsu_threshold(finite)]
    low, high = np.percentile(foreground if foreground.size else finite, WINDOW_PERCENTILES)
    return float(low), (float(high) if high > low else float(low) + 1.0)


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """The intensity that best splits `values` into two classes (Otsu 1979: largest
    between-class variance); numpy's histogram, as ITK's filter costs ~7 ms a slice."""
    counts, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1]
    above = values.size - below
    sum_below = np.cumsum(counts * centres)[:-1]
    mean_below = sum_below / below.clip(min=1)
    mean_above = (float(np.dot(counts, centres)) - sum_below) / above.clip(min=1)
    between = below * above * (mean_below - mean_above) ** 2
    return float(edges[1 + int(np.argmax(between))])


def outlined(
    grey: np.ndarray, labels: np.ndarray, regions: Mapping[str, tuple[int, ...]]
) -> np.ndarray:
    """Palette indices: the grey image, with the boundary pixels of each region (inside
    it, next to a pixel outside it) in that region's colour; later regions draw on top."""
    indices = grey.copy()
    for position, values in enumerate(regions.values()):
        inside = np.isin(labels, values)
        boundary = inside & ~ndimage.binary_erosion(inside, border_value=0)
        indices[boundary] = _GREYS + position % len(REGION_COLOURS)
    return indices


def _axial(volume: sitk.Image) -> tuple[np.ndarray, tuple[float, float]]:
    """The voxels on (inferior->superior, anterior->posterior, right->left) axes, and the
    in-plane spacing (right->left, anterior->posterior) in mm."""
    already = np.allclose(volume.GetDirection(), np.eye(3).ravel())
    oriented = volume if already else sitk.DICOMOrient(volume, "LPS")
    spacing = oriented.GetSpacing()
    return sitk.GetArrayFromImage(oriented), (spacing[0], spacing[1])


def _thumbnail_shape(shape: tuple[int, int], spacing_x: float, spacing_y: float) -> tuple[int, int]:
    """(rows, columns) of about THUMBNAIL_PX on the longer side, with square pixels."""
    height_mm, width_mm = shape[0] * spacing_y, shape[1] * spacing_x
    scale = THUMBNAIL_PX / max(height_mm, width_mm)
    return max(1, round(height_mm * scale)), max(1, round(width_mm * scale))


def _resized(plane: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    zoom = (shape[0] / plane.shape[0], shape[1] / plane.shape[1])
    return ndimage.zoom(plane, zoom, order=order, mode="nearest", grid_mode=True)


def _windowed(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    scaled = np.nan_to_num((plane - low) / (high - low), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * (_GREYS - 1)).astype(np.uint8)
