"""Scanner profiles of synthetic sites and the voxel grids they acquire on.

Sites differ the way real scanners and referral patterns do: voxel size and slice
thickness, intensity scale and offset, bias field, noise, slight protocol contrast
differences, and the share of gliomas among their patients. These are the batch
effects that harmonization has to remove and that make single-site models fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEQUENCES = ("t1c", "flair", "t2", "t1")  # every sequence the generator can simulate
TISSUES = ("scalp", "skull", "csf", "grey", "white", "enhancing", "necrosis", "oedema")
FIELD_OF_VIEW_MM = 192.0  # nominal through-plane coverage; in-plane FOV is size x spacing
_SITE_STREAM = 1  # first entry of the seed tuple of a site's profile draw


@dataclass(frozen=True)
class Grid:
    """A voxel grid centred on the scanner isocentre; numpy arrays are (z, y, x)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # (x, y, z) mm, SimpleITK order

    @property
    def origin(self) -> tuple[float, float, float]:
        """Physical (x, y, z) of voxel (0, 0, 0), so that the grid centre is at 0."""
        nz, ny, nx = self.shape
        return tuple(-(n - 1) / 2 * s for n, s in zip((nx, ny, nz), self.spacing, strict=True))

    @property
    def voxel_volume(self) -> float:
        return float(np.prod(self.spacing))

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical coordinates (mm) along z, y, x, shaped to broadcast over the grid."""
        nz, ny, nx = self.shape
        ox, oy, oz = self.origin
        sx, sy, sz = self.spacing
        z = (oz + sz * np.arange(nz, dtype=np.float32)).reshape(-1, 1, 1)
        y = (oy + sy * np.arange(ny, dtype=np.float32)).reshape(1, -1, 1)
        x = (ox + sx * np.arange(nx, dtype=np.float32)).reshape(1, 1, -1)
        return z, y, x

    def nearest_voxel_centre(self, point_xyz: np.ndarray) -> np.ndarray:
        """The voxel centre closest to a physical point (x, y, z), clipped to the grid."""
        nz, ny, nx = self.shape
        origin, spacing = np.asarray(self.origin), np.asarray(self.spacing)
        index = np.clip(np.rint((point_xyz - origin) / spacing), 0, np.array([nx, ny, nz]) - 1)
        return origin + index * spacing


@dataclass(frozen=True)
class SiteProfile:
    """One site's scanner and referral characteristics, fixed for all its cases."""

    number: int  # 1-based
    inplane_mm: float  # at size 96; scaled by 96 / size so the anatomy stays the same
    slice_mm: float  # at size 96, likewise
    hgg_fraction: float
    label_phase: float  # where the site's HGG/BM sequence starts (see case_is_hgg)
    noise: float  # Rician sigma relative to white-matter signal
    bias_strength: float
    bias_direction: tuple[float, float, float]
    bias_curvature: float
    psf_voxels: float  # Gaussian point spread, in voxels of each axis
    scale: dict[str, float]
    offset: dict[str, float]  # as a fraction of the scale
    contrast: dict[str, dict[str, float]]  # per sequence, per tissue multiplicative jitter

    @property
    def name(self) -> str:
        return f"site{self.number:02d}"

    def grid(self, size: int) -> Grid:
        """The site's acquisition grid: size x size in-plane, slices to cover the FOV."""
        factor = 96.0 / size
        slice_mm = self.slice_mm * factor
        slices = max(8, round(FIELD_OF_VIEW_MM / slice_mm))
        inplane = self.inplane_mm * factor
        return Grid(shape=(slices, size, size), spacing=(inplane, inplane, slice_mm))

    def case_is_hgg(self, index: int) -> bool:
        """Whether case `index` (0-based) is a glioma.

        A low-discrepancy sequence: every prefix of the site's cases holds the site's HGG
        fraction to within one case, and a case's label does not depend on how many cases
        are generated.
        """
        before = np.floor(index * self.hgg_fraction + self.label_phase)
        return bool(np.floor((index + 1) * self.hgg_fraction + self.label_phase) > before)


def draw_site_profile(seed: int, site: int) -> SiteProfile:
    """The profile of site number `site` (1-based), a pure function of (seed, site)."""
    rng = np.random.default_rng((seed, _SITE_STREAM, site))
    direction = rng.standard_normal(3)
    return SiteProfile(
        number=site,
        inplane_mm=float(rng.uniform(1.8, 2.2)),
        slice_mm=float(rng.uniform(2.0, 4.0)),
        hgg_fraction=float(rng.uniform(0.3, 0.7)),
        label_phase=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(0.015, 0.05)),
        bias_strength=float(rng.uniform(0.05, 0.3)),
        bias_direction=tuple(float(v) for v in direction / np.linalg.norm(direction)),
        bias_curvature=float(rng.uniform(-0.15, 0.15)),
        psf_voxels=float(rng.uniform(0.3, 0.55)),
        scale={seq: float(1000.0 * np.exp(rng.uniform(-0.7, 0.7))) for seq in SEQUENCES},
        offset={seq: float(rng.uniform(0.0, 0.08)) for seq in SEQUENCES},
        contrast={
            seq: {tissue: float(1.0 + 0.04 * rng.standard_normal()) for tissue in TISSUES}
            for seq in SEQUENCES
        },
    )
