"""Where to crop an image so a filter sees around each region what it sees on the whole image.

Without resampling, pyradiomics filters (LoG, wavelet) the entire image once per region.
FedRad filters once per sequence, on the regions' joint bounding box plus a margin wide
enough that cropping changes nothing the features read:

- wavelet (pyradiomics' stationary transform, periodic at the edges) is a finite filter:
  a margin of its support gives bit-identical values inside the box. Its periodic wrap
  joins both ends of an axis, so an axis whose margin would reach the image edge is kept
  whole, wrapping exactly as on the full image.
- LoG (ITK's recursive Gaussian) has infinite but exponentially decaying support; at
  `LOG_MARGIN_SIGMAS` sigmas the crop's effect is far below float32 rounding of its output
  (measured: identical voxels from 20 sigmas on). Each sigma gets its own window, that
  many of its own sigmas wide. An axis is clipped at the image edge, where both
  computations see the same boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pywt
import SimpleITK as sitk

LOG_MARGIN_SIGMAS = 25.0

Box = tuple[np.ndarray, np.ndarray]  # inclusive (lower, upper) voxel index, x-y-z order


def log_margin(sigma_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxels of context per axis for a LoG of width `sigma_mm`."""
    return np.array([math.ceil(LOG_MARGIN_SIGMAS * sigma_mm / step) for step in spacing])


def wavelet_margin(wavelet: str, level: int) -> np.ndarray:
    """pyradiomics re-applies the level-1 transform `level` times: supports add up."""
    return np.full(3, pywt.Wavelet(wavelet).dec_len * level)


def label_box(mask: sitk.Image, label: int) -> Box | None:
    """Index box (x, y, z) of the voxels carrying `label`, or None if there are none."""
    inside = sitk.GetArrayViewFromImage(mask) == label
    if not inside.any():
        return None
    spans = [np.flatnonzero(inside.any(axis=other)) for other in ((0, 1), (0, 2), (1, 2))]
    return np.array([span[0] for span in spans]), np.array([span[-1] for span in spans])


def union_box(boxes: Sequence[Box]) -> Box:
    lower = np.min([box[0] for box in boxes], axis=0)
    upper = np.max([box[1] for box in boxes], axis=0)
    return lower, upper


def window(box: Box, margin: np.ndarray, size: Sequence[int], periodic: bool) -> Box:
    """The box grown by `margin`, clipped to the image (or, if `periodic`, whole axes)."""
    size = np.asarray(size)
    lower, upper = box[0] - margin, box[1] + margin
    if periodic:
        whole = (lower < 0) | (upper > size - 1)
        return np.where(whole, 0, lower), np.where(whole, size - 1, upper)
    return np.maximum(lower, 0), np.minimum(upper, size - 1)
