"""Enhancing tumours with necrosis and oedema: glioblastoma-like and metastasis-like.

Every case draws a latent "glioma-likeness" t in [0, 1] from overlapping class-conditional
Beta distributions, and each imaging property is interpolated between a typical
metastasis (t = 0) and a typical high-grade glioma (t = 1), plus its own noise. Because
all class information passes through t, no combination of features can separate the
classes better than t does: some metastases are large, irregular and necrotic, some
gliomas small and round, as in real cohorts, and a good model lands near AUC 0.85.
Size and shape overlap more than texture and FLAIR signal (infiltrative vs vasogenic
oedema, rim and necrosis heterogeneity), which carry most of the class signal, as in the
radiomics literature on glioblastoma vs solitary metastasis; those features are also the
ones scanners change most (synth_site).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrad.simulations.synth.anatomy import BRAIN, VENTRICLE, Anatomy, smooth_noise
from fedrad.simulations.synth.site import Grid

ENHANCING, NECROSIS, OEDEMA = 1, 2, 3
NECROSIS_MIN_MM = 4.5  # a ~380 mm3 sphere: comfortably above synth.MIN_REGION_MM3
_HGG_LIKENESS = {True: (3.8, 1.8), False: (1.8, 3.8)}  # Beta(a, b) of t per class
_FINE_TEXTURE_MM, _FINE_SHARE, _FINE_VOXEL_MM3 = 0.8, 0.5, 8.0  # see _heterogeneity
_CORTEX = 0.8  # grey-matter weight above which oedema stops (vasogenic/infiltrative spares it)


@dataclass(frozen=True)
class Phenotype:
    """Imaging properties of one tumour; lengths in mm, the rest relative amplitudes."""

    radius: float  # mean radius of the enhancing core (rim + necrosis)
    irregularity: float  # low-order lobulation of the core surface
    rim_mm: float  # mean enhancing rim thickness
    rim_unevenness: float  # nodular thickening of the rim
    oedema_ratio: float  # mean oedema extent beyond the core, per core radius
    oedema_irregularity: float  # finger-like, infiltrative outline
    margin_mm: float  # width of the FLAIR fade at the oedema border (sharp for BM)
    infiltration: float  # FLAIR brightening of oedema next to the core
    rim_heterogeneity: float
    necrosis_heterogeneity: float
    oedema_heterogeneity: float
    enhancement: float  # contrast uptake, independent of class


def _lerp(bm: float, hgg: float, t: float) -> float:
    return bm + (hgg - bm) * t


def draw_phenotype(rng: np.random.Generator, is_hgg: bool) -> Phenotype:
    """Class-conditional, overlapping draw (see the module docstring)."""
    t = rng.beta(*_HGG_LIKENESS[is_hgg])

    def jitter(sigma: float) -> float:
        return float(np.exp(sigma * rng.standard_normal()))

    return Phenotype(
        radius=float(np.clip(np.exp(_lerp(np.log(9.0), np.log(21.0), t)) * jitter(0.25), 6.5, 28)),
        irregularity=min(_lerp(0.04, 0.24, t) * jitter(0.35), 0.35),
        rim_mm=_lerp(3.0, 5.5, t) * jitter(0.2),
        rim_unevenness=min(_lerp(0.09, 0.42, t) * jitter(0.3), 0.7),
        oedema_ratio=float(np.exp(_lerp(np.log(1.4), np.log(0.6), t))) * jitter(0.3),
        oedema_irregularity=min(_lerp(0.08, 0.38, t) * jitter(0.35), 0.6),
        margin_mm=_lerp(0.8, 3.5, t) * jitter(0.15),
        infiltration=_lerp(0.02, 0.25, t) * jitter(0.2),
        rim_heterogeneity=_lerp(0.05, 0.25, t) * jitter(0.15),
        necrosis_heterogeneity=_lerp(0.04, 0.18, t) * jitter(0.15),
        oedema_heterogeneity=_lerp(0.03, 0.18, t) * jitter(0.15),
        enhancement=jitter(0.12),
    )


@dataclass(frozen=True)
class DirectionalField:
    """A smooth random function on the unit sphere (sum of plane waves in direction space).

    Wave numbers up to ~3 give low-order, spherical-harmonic-like lobulation; higher ones
    give finer bumps. Roughly unit variance over directions.
    """

    waves: np.ndarray  # (n, 3) unit vectors
    numbers: np.ndarray  # (n,) wave numbers
    phases: np.ndarray  # (n,)
    weights: np.ndarray  # (n,)

    @classmethod
    def draw(cls, rng: np.random.Generator, terms: int, max_number: float) -> DirectionalField:
        waves = rng.standard_normal((terms, 3))
        weights = rng.uniform(0.5, 1.0, terms)
        return cls(
            waves=(waves / np.linalg.norm(waves, axis=1, keepdims=True)).astype(np.float32),
            numbers=rng.uniform(1.0, max_number, terms).astype(np.float32),
            phases=rng.uniform(0.0, 2 * np.pi, terms).astype(np.float32),
            weights=(weights / np.sqrt((weights**2).sum() / 2)).astype(np.float32),
        )

    def __call__(self, ux: np.ndarray, uy: np.ndarray, uz: np.ndarray) -> np.ndarray:
        total = np.zeros(np.broadcast_shapes(ux.shape, uy.shape, uz.shape), dtype=np.float32)
        for wave, number, phase, weight in zip(
            self.waves, self.numbers, self.phases, self.weights, strict=True
        ):
            total += weight * np.cos(number * (wave[0] * ux + wave[1] * uy + wave[2] * uz) + phase)
        return total


@dataclass(frozen=True)
class Shape:
    """The random outline functions of one tumour, fixed before it is placed."""

    core: DirectionalField
    lobules: DirectionalField
    rim: DirectionalField
    oedema: DirectionalField

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Shape:
        return cls(
            core=DirectionalField.draw(rng, terms=6, max_number=3.0),
            lobules=DirectionalField.draw(rng, terms=6, max_number=6.0),
            rim=DirectionalField.draw(rng, terms=5, max_number=4.0),
            oedema=DirectionalField.draw(rng, terms=5, max_number=3.0),
        )

    def core_radius(
        self, p: Phenotype, ux: np.ndarray, uy: np.ndarray, uz: np.ndarray
    ) -> np.ndarray:
        bumps = self.core(ux, uy, uz) + 0.35 * self.lobules(ux, uy, uz)
        return p.radius * np.maximum(1.0 + p.irregularity * bumps, 0.5)


@dataclass(frozen=True)
class Tumour:
    """A rendered tumour, on the sub-box `box` of the case grid."""

    box: tuple[slice, slice, slice]
    labels: np.ndarray  # uint8: 0 none, 1 enhancing rim, 2 necrosis, 3 oedema
    oedema_weight: np.ndarray  # soft FLAIR-oedema blend weight (wider than the label for HGG)
    infiltration: np.ndarray  # extra oedema signal next to the core
    textures: dict[int, np.ndarray]  # unit-variance heterogeneity field per region label
    phenotype: Phenotype


@dataclass(frozen=True)
class _Floors:
    """Minimum sizes on this grid, so that every region is present and resolvable."""

    necrosis: float
    shell: float  # thinnest rim and oedema extent

    @classmethod
    def of(cls, grid: Grid) -> _Floors:
        finest = min(grid.spacing)  # necrosis then spans a voxel and its in-plane neighbours
        return cls(necrosis=max(NECROSIS_MIN_MM, 1.1 * finest), shell=max(2.0, 1.05 * finest))


def _sphere_directions(count: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Near-uniform directions (Fibonacci sphere) to bound a tumour's outer radius."""
    k = np.arange(count) + 0.5
    uz = 1 - 2 * k / count
    ring = np.sqrt(1 - uz**2)
    angle = np.pi * (1 + 5**0.5) * k
    return ring * np.cos(angle), ring * np.sin(angle), uz


def _max_core_radius(shape: Shape, p: Phenotype) -> float:
    return float(shape.core_radius(p, *_sphere_directions()).max())


def _place(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, reach: float) -> np.ndarray:
    """A random voxel centre whose ball of radius `reach` lies (nearly) inside the brain."""
    room = np.maximum(anatomy.axes - reach - 2.0, 5.0)
    while True:
        offset = rng.uniform(-room, room)
        if ((offset / room) ** 2).sum() <= 1.0:
            centre = grid.nearest_voxel_centre(anatomy.centre + offset)
            if not _in_ventricle(grid, anatomy, centre):
                return centre


def _in_ventricle(grid: Grid, anatomy: Anatomy, centre: np.ndarray) -> bool:
    index = np.rint((centre - np.asarray(grid.origin)) / np.asarray(grid.spacing)).astype(int)
    return bool(anatomy.compartment[index[2], index[1], index[0]] == VENTRICLE)


def _box(grid: Grid, centre: np.ndarray, reach: float) -> tuple[slice, slice, slice]:
    """Voxel slices (z, y, x) of the grid within `reach` mm of `centre`."""
    origin, spacing = np.asarray(grid.origin), np.asarray(grid.spacing)
    low = np.floor((centre - reach - origin) / spacing).astype(int)
    high = np.ceil((centre + reach - origin) / spacing).astype(int) + 1
    nz, ny, nx = grid.shape
    (x0, y0, z0), (x1, y1, z1) = np.maximum(low, 0).tolist(), high.tolist()
    return slice(z0, min(z1, nz)), slice(y0, min(y1, ny)), slice(x0, min(x1, nx))


def _offsets(
    grid: Grid, centre: np.ndarray, box: tuple[slice, slice, slice]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical offsets (dz, dy, dx) from `centre` of the box's voxels, broadcastable."""
    cx, cy, cz = centre.tolist()  # Python floats keep the arrays float32
    z, y, x = grid.axes()
    return z[box[0]] - cz, y[:, box[1]] - cy, x[:, :, box[2]] - cx


@dataclass(frozen=True)
class _Outline:
    """Per-voxel geometry of a tumour in its box: distances and region radii (mm)."""

    distance: np.ndarray  # from the tumour centre
    core: np.ndarray  # outer radius of the enhancing rim in each voxel's direction
    necrosis: np.ndarray  # inner radius of the rim
    beyond: np.ndarray  # signed distance past the oedema outline (< 0 inside)
    extent: np.ndarray  # oedema thickness beyond the core


def _outline(
    rng: np.random.Generator,
    grid: Grid,
    shape: Shape,
    p: Phenotype,
    offsets: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> _Outline:
    """Lobulated core, uneven rim, and an oedema outline made ragged by 3-D noise."""
    floors = _Floors.of(grid)
    dz, dy, dx = offsets
    distance = np.sqrt(dx**2 + dy**2 + dz**2)
    safe = np.maximum(distance, 1e-6)
    ux, uy, uz = dx / safe, dy / safe, dz / safe
    core = np.maximum(shape.core_radius(p, ux, uy, uz), floors.necrosis + floors.shell)
    rim = np.maximum(p.rim_mm * (1 + p.rim_unevenness * shape.rim(ux, uy, uz)), floors.shell)
    ragged = 0.3 * shape.oedema(ux, uy, uz) + smooth_noise(rng, grid, distance.shape, 5.0)
    extent = np.maximum(
        p.oedema_ratio * p.radius * (1 + p.oedema_irregularity * ragged), floors.shell
    )
    return _Outline(
        distance=distance,
        core=core,
        necrosis=np.clip(core - rim, floors.necrosis, core - floors.shell),
        beyond=distance - (core + extent),
        extent=extent,
    )


def _labels(outline: _Outline, in_brain: np.ndarray, oedema_allowed: np.ndarray) -> np.ndarray:
    labels = np.zeros(outline.distance.shape, dtype=np.uint8)
    labels[(outline.beyond <= 0) & oedema_allowed] = OEDEMA
    labels[(outline.distance <= outline.core) & in_brain] = ENHANCING
    labels[(outline.distance <= outline.necrosis) & in_brain] = NECROSIS
    return labels


def render_tumour(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, p: Phenotype) -> Tumour:
    """Place the tumour at a random brain location and rasterize its regions.

    Oedema stays in parenchyma and spares the cortex; its FLAIR signal fades over
    `margin_mm` around the label border (a sharp margin for metastases, a wide
    infiltrative one for gliomas) and brightens towards the core.
    """
    shape = Shape.draw(rng)
    shell = _Floors.of(grid).shell
    core_max = _max_core_radius(shape, p)
    oedema_max = p.oedema_ratio * p.radius * (1 + 2.5 * p.oedema_irregularity)
    centre = _place(rng, grid, anatomy, core_max + shell)
    box = _box(grid, centre, core_max + oedema_max + 5 * p.margin_mm + shell)
    outline = _outline(rng, grid, shape, p, _offsets(grid, centre, box))

    compartment = anatomy.compartment[box]
    in_brain = (compartment == BRAIN) | (compartment == VENTRICLE)
    oedema_allowed = (compartment == BRAIN) & (anatomy.grey[box] < _CORTEX)
    fade = 1.0 / (1.0 + np.exp(np.clip(outline.beyond / p.margin_mm, -30.0, 30.0)))
    past_core = np.maximum(outline.distance - outline.core, 0.0)
    falloff = np.exp(-past_core / np.maximum(0.5 * outline.extent, 1.0))
    crop = outline.distance.shape
    return Tumour(
        box=box,
        labels=_labels(outline, in_brain, oedema_allowed),
        oedema_weight=(fade * oedema_allowed).astype(np.float32),
        infiltration=(p.infiltration * falloff).astype(np.float32),
        textures={
            ENHANCING: _heterogeneity(rng, grid, crop, sigma_mm=2.5),
            NECROSIS: _heterogeneity(rng, grid, crop, sigma_mm=3.0),
            OEDEMA: _heterogeneity(rng, grid, crop, sigma_mm=4.0),
        },
        phenotype=p,
    )


def _heterogeneity(
    rng: np.random.Generator, grid: Grid, shape: tuple, sigma_mm: float
) -> np.ndarray:
    """Tissue heterogeneity: a coarse field plus a fine one at the scale of a voxel.

    A voxel averages the fine component over its volume, so coarser grids see less of it
    (amplitude ~ 1 / sqrt(voxel volume) beyond _FINE_VOXEL_MM3), as larger voxels smooth
    texture in real scans (Mayerhoefer et al., Med Phys 36:1236, 2009). Unit variance on
    fine grids.
    """
    coarse = smooth_noise(rng, grid, shape, sigma_mm)
    fine = smooth_noise(rng, grid, shape, _FINE_TEXTURE_MM)
    averaging = min(1.0, np.sqrt(_FINE_VOXEL_MM3 / grid.voxel_volume))
    coarse *= np.sqrt(1.0 - _FINE_SHARE)
    coarse += np.float32(np.sqrt(_FINE_SHARE) * averaging) * fine
    return coarse


def region_counts(tumour: Tumour) -> dict[int, int]:
    """Voxels per region label."""
    return {label: int((tumour.labels == label).sum()) for label in (ENHANCING, NECROSIS, OEDEMA)}
