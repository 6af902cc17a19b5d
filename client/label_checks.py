"""Does a mask look like the label convention its site declared?

A wrong convention swaps tissues and breaks nothing: every region is still a set of
voxels. Two properties of brain tumour segmentations hold whatever the numbering, so a
mask that contradicts them under the declared meanings is flagged, naming its case:

- oedema surrounds the tumour core: a larger share of a label meaning oedema's surface
  touches the tissue around the tumour than of a label meaning enhancing tumour or
  necrosis (measured: 78% against 8% and 4% on the real glioma, 70% against 20% on the
  real metastasis, at least 65 points apart on 180 synthetic masks);
- enhancing tumour is the part that takes up contrast: on T1c its median intensity is
  above that of every other tumour label.

Not used: volumes (a metastasis's core can outweigh its oedema, as the real case
BraTS-MET-00110-000's does), and depth below the tumour's edge (where oedema spares the
cortex the enhancing rim reaches the edge: 10% of synthetic masks had oedema "deeper"
than their rim), nor any order between necrosis and enhancing tumour (BraTS' label 1
includes non-enhancing tumour at the rim).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

OEDEMA = frozenset({"oedema"})
ENHANCING = frozenset({"enhancing"})
CORE = frozenset({"enhancing", "necrosis"})
T1C_NAMES = ("t1c", "t1ce", "t1gd")  # study sequence names read as contrast-enhanced T1

_ADVICE = "is the site's label convention right for this mask?"


def convention_problems(
    mask: sitk.Image,
    images: dict[str, sitk.Image],
    masks: dict[str, sitk.Image],
    meaning: dict[int, frozenset[str]],
    min_voxels: int,
) -> list[str]:
    """Reasons the mask contradicts `meaning` (label value -> tissues); labels with fewer
    than `min_voxels` voxels are not judged. `masks` holds the mask on each image's grid."""
    box = _box(sitk.GetArrayViewFromImage(mask))
    labels = sitk.GetArrayViewFromImage(mask)[box]
    values, counts = np.unique(labels, return_counts=True)
    present = {
        int(value): meaning[int(value)]
        for value, count in zip(values, counts, strict=True)
        if int(value) in meaning and count >= min_voxels
    }
    problems = _oedema_inside_core(labels, present)
    t1c = next((name for name in T1C_NAMES if name in images and name in masks), None)
    if t1c is not None:
        on_grid = sitk.GetArrayViewFromImage(masks[t1c])
        box = _box(on_grid)
        image = sitk.GetArrayViewFromImage(images[t1c])[box]
        problems += _enhancing_not_brightest(t1c, image, on_grid[box], present)
    return problems


def _box(labels: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the non-zero voxels (a whole-volume pass per axis is cheaper
    than selecting from 9 million voxels per label)."""
    box = []
    for axis in range(labels.ndim):
        hit = np.flatnonzero(np.any(labels, axis=tuple(a for a in range(labels.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0))
    return tuple(box)


def _tissues(tissues: frozenset[str]) -> str:
    return ", ".join(sorted(tissues))


def _oedema_inside_core(labels: np.ndarray, present: dict[int, frozenset[str]]) -> list[str]:
    oedema = [value for value, tissues in present.items() if tissues == OEDEMA]
    core = [value for value, tissues in present.items() if tissues <= CORE]
    if not oedema or not core:
        return []
    share = _outside_contact(labels, [*oedema, *core])
    return [
        f"label {outer} (oedema) touches the tissue around the tumour less than label {inner} "
        f"({_tissues(present[inner])}): {share[outer]:.0%} vs {share[inner]:.0%} of its "
        f"surface, but oedema surrounds the tumour core; {_ADVICE}"
        for outer in oedema
        for inner in core
        if share[outer] <= share[inner]
    ]


def _outside_contact(labels: np.ndarray, values: list[int]) -> dict[int, float]:
    """Share of each label's surface (the face neighbours outside it) that lies outside the
    tumour (the union of `values`); padded, so that the volume's edge counts as outside."""
    padded = np.pad(labels, 1)
    outside = ~np.isin(padded, values)
    cross = ndimage.generate_binary_structure(3, 1)
    shares = {}
    for value in values:
        region = padded == value
        surface = ndimage.binary_dilation(region, cross) & ~region
        shares[value] = float(np.count_nonzero(surface & outside) / np.count_nonzero(surface))
    return shares


def _enhancing_not_brightest(
    sequence: str, image: np.ndarray, labels: np.ndarray, present: dict[int, frozenset[str]]
) -> list[str]:
    median = {
        value: float(np.median(voxels))
        for value in present
        if (voxels := image[labels == value]).size  # a resampled mask may lose a label
    }
    enhancing = [value for value in median if present[value] == ENHANCING]
    others = [value for value in median if not present[value] & ENHANCING]
    return [
        f"on {sequence}, label {bright} (enhancing) is not brighter than label {other} "
        f"({_tissues(present[other])}): median {median[bright]:.4g} vs {median[other]:.4g}, "
        f"but enhancing tumour is the part that takes up contrast; {_ADVICE}"
        for bright in enhancing
        for other in others
        if median[bright] <= median[other]
    ]
