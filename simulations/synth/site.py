"""Scanner profiles of synthetic sites and the voxel grids they acquire on.

Sites differ the way real multi-vendor MRI does, and by enough to change radiomics
features after resampling and per-image z-score normalization (Carre et al., Sci Rep
10:12340, 2020; Orlhac et al., Eur Radiol 31:2272, 2021): field strength (1.5 T or 3 T)
and with it the noise level, the bias-field strength and the contrast uptake; 3-D
near-isotropic or 2-D thick-slice protocols per sequence; in-plane resolution and
field of view; the reconstruction filter (smoothing or edge enhancement); the tissue
contrasts each protocol's timing gives; intensity scale and offset; and the share of
gliomas among the site's patients. These are the batch effects that harmonization has
to remove and that make single-site models fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEQUENCES = ("t1c", "flair", "t2", "t1")  # every sequence the generator can simulate
TISSUES = ("scalp", "skull", "csf", "grey", "white", "enhancing", "necrosis", "oedema")
FIELD_OF_VIEW_MM = 192.0  # nominal through-plane coverage; in-plane FOV is size x spacing
_SITE_STREAM = 1  # first entry of the seed tuple of a site's profile draw

# Share of sites that acquire each sequence as a 2-D thick-slice series (the others use a
# 3-D near-isotropic one), and the 2-D slice thickness range in mm. BraTS (Menze et al.,
# IEEE TMI 34:1993, 2015): T1c mostly 3-D ~1 mm, T2 and FLAIR 2-D with 2-6 mm slices.
_TWO_D_SHARE = {"t1c": 0.35, "flair": 0.7, "t2": 0.8, "t1": 0.6}
_TWO_D_SLICE_MM = (3.5, 6.0)
_JITTERED = ("skull", "csf", "enhancing", "necrosis", "oedema")  # +-8% per protocol
_FAT_SATURATION_SHARE = {"t1c": 0.4, "flair": 0.3, "t2": 0.2, "t1": 0.0}


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
class Protocol:
    """How one site acquires one sequence."""

    slice_mm: float  # 2-D slice thickness (mm); 0 for a 3-D acquisition on the case grid
    slice_gap: float  # gap between 2-D slices, as a fraction of the thickness
    fat: float  # scalp-fat signal relative to the reference (~0.25 with fat saturation)
    grey_white: float  # grey-white matter contrast relative to the reference protocol
    lesion: float  # oedema/necrosis contrast to white matter, relative to the reference
    enhancement: float  # gadolinium enhancement of the rim (contrast agent, delay, field)
    tissue: dict[str, float]  # multiplicative jitter of skull, CSF and tumour tissue signal


@dataclass(frozen=True)
class SiteProfile:
    """One site's scanner and referral characteristics, fixed for all its cases."""

    number: int  # 1-based
    field_tesla: float  # 1.5 or 3.0
    inplane_mm: float  # at size 96; scaled by 96 / size so the anatomy stays the same
    isotropy: float  # slice / in-plane spacing of a 3-D acquisition
    hgg_fraction: float
    label_phase: float  # where the site's HGG/BM sequence starts (see case_is_hgg)
    noise: float  # Rician sigma relative to white-matter signal, per acquired voxel
    bias_strength: float
    bias_direction: tuple[float, float, float]
    bias_curvature: float
    psf_voxels: float  # Gaussian point spread of the acquisition, in voxels of each axis
    reconstruction: float  # in-plane filter: < 0 smooths (apodization), > 0 sharpens
    scale: dict[str, float]
    offset: dict[str, float]  # as a fraction of the scale
    protocols: dict[str, Protocol]

    @property
    def name(self) -> str:
        return f"site{self.number:02d}"

    def grid(self, size: int) -> Grid:
        """The case grid: size x size in-plane, slices of the site's T1c series.

        A 3-D T1c is near-isotropic at every size; a 2-D T1c keeps its slice thickness in
        mm (but never finer than in-plane), as thick-slice protocols do at any matrix size.
        Every sequence is registered to this grid, as sites do before extraction.
        """
        inplane = self.inplane_mm * 96.0 / size
        slice_mm = max(self.protocols["t1c"].slice_mm, self.isotropy * inplane)
        slices = max(8, round(FIELD_OF_VIEW_MM / slice_mm))
        return Grid(shape=(slices, size, size), spacing=(inplane, inplane, slice_mm))

    def case_is_hgg(self, index: int) -> bool:
        """Whether case `index` (0-based) is a glioma.

        A low-discrepancy sequence: every prefix of the site's cases holds the site's HGG
        fraction to within one case, and a case's label does not depend on how many cases
        are generated.
        """
        before = np.floor(index * self.hgg_fraction + self.label_phase)
        return bool(np.floor((index + 1) * self.hgg_fraction + self.label_phase) > before)


def _protocol(rng: np.random.Generator, sequence: str, tesla: float) -> Protocol:
    """Slice thickness and contrasts of one sequence at one site.

    Ranges: grey-white contrast differs by up to ~1.5x between spin-echo and gradient-echo
    (MPRAGE) T1 and between FLAIR variants; lesion and enhancement contrast by +-25-50%
    with TE/TI, contrast agent, dose and post-injection delay; enhancement is ~15%
    stronger at 3 T (Noebauer-Huhmann et al., Invest Radiol 37:114, 2002); some sites
    saturate fat on post-contrast T1 (and a few on FLAIR), which darkens the scalp and so
    moves every whole-image z-score.
    """
    two_d = rng.random() < _TWO_D_SHARE[sequence]
    slice_mm = float(rng.uniform(*_TWO_D_SLICE_MM)) if two_d else 0.0
    fat_saturated = rng.random() < _FAT_SATURATION_SHARE[sequence]
    return Protocol(
        slice_mm=slice_mm,
        slice_gap=float(rng.uniform(0.0, 0.2)) if two_d else 0.0,
        fat=float(
            rng.uniform(0.15, 0.35) if fat_saturated else np.exp(0.2 * rng.standard_normal())
        ),
        grey_white=float(rng.uniform(0.5, 1.5)),
        lesion=float(np.exp(rng.uniform(-0.45, 0.45))),
        enhancement=float(np.exp(rng.uniform(-0.45, 0.45)) * (1.15 if tesla > 2 else 1.0)),
        tissue={tissue: float(np.exp(0.08 * rng.standard_normal())) for tissue in _JITTERED},
    )


def draw_site_profile(seed: int, site: int) -> SiteProfile:
    """The profile of site number `site` (1-based), a pure function of (seed, site).

    Half the sites are 1.5 T, half 3 T. Noise: sigma 1.5-3.5% of white matter at 3 T and
    3.5-8% at 1.5 T (SNR roughly doubles with the field; BrainWeb simulates 1-9%, Kwan et
    al., IEEE TMI 18:1085, 1999). Bias field: log-slope 0.03-0.15 per 90 mm at 1.5 T and
    0.1-0.3 at 3 T, i.e. ~5-20% and ~15-50% across a 12 cm brain (BrainWeb: 0, 20, 40%;
    B1 inhomogeneity grows with the field). In-plane spacing 1.8-2.3 mm at size 96 (field
    of view 17-22 cm). Reconstruction: in-plane, from k-space apodization (a Gaussian of
    one voxel) to vendor edge enhancement (unsharp masking of the same width).
    """
    rng = np.random.default_rng((seed, _SITE_STREAM, site))
    tesla = 3.0 if rng.random() < 0.5 else 1.5
    high = tesla > 2
    direction = rng.standard_normal(3)
    return SiteProfile(
        number=site,
        field_tesla=tesla,
        inplane_mm=float(rng.uniform(1.8, 2.3)),
        isotropy=float(rng.uniform(1.0, 1.25)),
        hgg_fraction=float(rng.uniform(0.3, 0.7)),
        label_phase=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(0.015, 0.035) if high else rng.uniform(0.035, 0.08)),
        bias_strength=float(rng.uniform(0.1, 0.3) if high else rng.uniform(0.03, 0.15)),
        bias_direction=tuple(float(v) for v in direction / np.linalg.norm(direction)),
        bias_curvature=float(rng.uniform(-0.15, 0.15)),
        psf_voxels=float(rng.uniform(0.3, 0.6)),
        reconstruction=float(rng.uniform(-1.0, 1.0)),
        scale={seq: float(1000.0 * np.exp(rng.uniform(-0.7, 0.7))) for seq in SEQUENCES},
        offset={seq: float(rng.uniform(0.0, 0.08)) for seq in SEQUENCES},
        protocols={seq: _protocol(rng, seq, tesla) for seq in SEQUENCES},
    )
