"""A simple normal head: scalp, skull, CSF, ventricles, and grey/white-matter brain.

Realistic enough that whole-image intensity normalization, bias fields and the tumour's
surroundings behave as on real scans: the tumour sits in textured parenchyma, its oedema
spares the cortex and the ventricles, and the background is air with noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from fedrad.simulations.synth.site import Grid

AIR, SCALP, SKULL, CSF, VENTRICLE, BRAIN = range(6)
_BRAIN_AXES_MM = np.array([60.0, 73.0, 54.0])  # (x, y, z) semi-axes of an average brain
_MEAN_RADIUS_MM = 62.0  # converts normalized ellipsoid radius to mm outside the brain
_VENTRICLE_CENTRES_MM = np.array([[-6.0, 4.0, 10.0], [6.0, 4.0, 10.0]])
_VENTRICLE_AXES_MM = np.array([5.0, 20.0, 9.0])


@dataclass(frozen=True)
class Anatomy:
    """The normal head of one case on its grid."""

    compartment: np.ndarray  # uint8 codes AIR ... BRAIN
    grey: np.ndarray  # grey-matter weight in [0, 1] (0 outside the brain)
    micro: np.ndarray  # fine tissue texture, unit variance
    centre: np.ndarray  # brain centre (x, y, z) mm
    axes: np.ndarray  # brain semi-axes (x, y, z) mm


def smooth_noise(rng: np.random.Generator, grid: Grid, shape: tuple, sigma_mm: float) -> np.ndarray:
    """Gaussian random field with correlation length ~sigma_mm, unit variance, float32."""
    sigma = [sigma_mm / s for s in reversed(grid.spacing)]  # numpy axis order z, y, x
    field = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, truncate=3.0)
    return field / max(float(field.std()), 1e-6)


def _ellipsoid_radius(grid: Grid, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    (cx, cy, cz), (ax, ay, az) = centre.tolist(), axes.tolist()  # keep float32 arrays
    z, y, x = grid.axes()
    return np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2)


def _compartments(grid: Grid, radius: np.ndarray, ventricles: np.ndarray) -> np.ndarray:
    """Concentric shells by distance outside the brain surface, ventricles inside it."""
    outside_mm = (radius - 1.0) * _MEAN_RADIUS_MM
    compartment = np.full(grid.shape, AIR, dtype=np.uint8)
    compartment[outside_mm <= 15.0] = SCALP
    compartment[outside_mm <= 9.0] = SKULL
    compartment[outside_mm <= 3.0] = CSF
    compartment[radius <= 1.0] = BRAIN
    compartment[ventricles] = VENTRICLE
    return compartment


def _bounding_box(inside: np.ndarray) -> tuple[slice, ...]:
    """The smallest box (z, y, x slices) that holds every True voxel."""
    box = []
    for axis in range(inside.ndim):
        other = tuple(a for a in range(inside.ndim) if a != axis)
        (hits,) = np.nonzero(inside.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _grey_weight(rng: np.random.Generator, grid: Grid, radius: np.ndarray) -> np.ndarray:
    """Cortical ribbon with a gyral (noisy) inner border; white matter elsewhere.

    The gyral field is drawn on the brain's bounding box only, which saves most of its cost.
    """
    brain = _bounding_box(radius <= 1.0)
    gyri = smooth_noise(rng, grid, radius[brain].shape, sigma_mm=3.0)
    grey = np.zeros(grid.shape, dtype=np.float32)
    inner = radius[brain]
    grey[brain] = np.clip((inner - (0.87 + 0.05 * gyri)) / 0.03 + 0.5, 0.0, 1.0)
    grey[radius > 1.0] = 0.0
    return grey


def _micro_texture(rng: np.random.Generator, grid: Grid, head: np.ndarray) -> np.ndarray:
    """Fine tissue texture on the head's bounding box (air has no tissue to texture)."""
    box = _bounding_box(head)
    micro = np.zeros(grid.shape, dtype=np.float32)
    micro[box] = smooth_noise(rng, grid, micro[box].shape, sigma_mm=0.8)
    return micro


def render_anatomy(rng: np.random.Generator, grid: Grid) -> Anatomy:
    """A head of random size and position with grey/white texture and lateral ventricles."""
    scale = rng.normal(1.0, 0.04)
    centre = rng.normal(0.0, 3.0, size=3)
    axes = _BRAIN_AXES_MM * scale
    radius = _ellipsoid_radius(grid, centre, axes)
    ventricle_size = rng.uniform(0.8, 1.3)
    ventricles = np.zeros(grid.shape, dtype=bool)
    for offset in _VENTRICLE_CENTRES_MM:
        ventricles |= (
            _ellipsoid_radius(grid, centre + offset * scale, _VENTRICLE_AXES_MM * ventricle_size)
            <= 1.0
        )
    compartment = _compartments(grid, radius, ventricles)
    return Anatomy(
        compartment=compartment,
        grey=_grey_weight(rng, grid, radius),
        micro=_micro_texture(rng, grid, compartment != AIR),
        centre=centre,
        axes=axes,
    )
