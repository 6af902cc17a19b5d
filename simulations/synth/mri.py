"""From tissue maps to scanner images: MR contrast, point spread, slices, bias field, noise.

Contrasts are relative signal levels (white matter of T1-weighted sequences ~1) chosen to
match textbook appearances: enhancing rim bright on T1c, necrosis dark on T1c and bright on
T2, oedema bright on FLAIR/T2, CSF suppressed on FLAIR. Each site's protocol changes them
(see synth_site). A sequence acquired as 2-D thick slices averages the signal over each
slice (partial volume), gets its noise per slice, and is interpolated back onto the case
grid, as when a 2-D FLAIR is registered to a 3-D T1c; every sequence then goes through the
site's in-plane reconstruction filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from fedrad.simulations.synth.anatomy import BRAIN, CSF, SCALP, SKULL, VENTRICLE, Anatomy
from fedrad.simulations.synth.site import Grid, Protocol, SiteProfile
from fedrad.simulations.synth.tumour import ENHANCING, NECROSIS, OEDEMA, Tumour

CONTRAST: dict[str, dict[str, float]] = {
    "t1c": {"scalp": 1.25, "skull": 0.08, "csf": 0.30, "grey": 0.78, "white": 1.00,
            "enhancing": 1.90, "necrosis": 0.32, "oedema": 0.72},
    "flair": {"scalp": 0.95, "skull": 0.06, "csf": 0.12, "grey": 0.92, "white": 0.72,
              "enhancing": 1.10, "necrosis": 0.85, "oedema": 1.45},
    "t2": {"scalp": 0.90, "skull": 0.05, "csf": 1.90, "grey": 0.95, "white": 0.62,
           "enhancing": 1.05, "necrosis": 1.60, "oedema": 1.45},
    "t1": {"scalp": 1.30, "skull": 0.08, "csf": 0.28, "grey": 0.74, "white": 1.00,
           "enhancing": 0.72, "necrosis": 0.38, "oedema": 0.66},
}  # fmt: skip
_MICRO_TEXTURE = 0.03  # normal tissue inhomogeneity
_BIAS_LENGTH_MM = 90.0
_RECONSTRUCTION_SIGMA = 1.0  # voxels: width of the in-plane smoothing / sharpening kernel


@dataclass(frozen=True)
class BiasField:
    """Smooth multiplicative receive-coil inhomogeneity, shared by a case's sequences."""

    strength: float
    direction: np.ndarray  # unit (x, y, z)
    curvature: float

    @classmethod
    def for_case(cls, rng: np.random.Generator, site: SiteProfile) -> BiasField:
        """The site's field, slightly turned by this patient's position in the coil."""
        direction = np.asarray(site.bias_direction) + 0.2 * rng.standard_normal(3)
        return cls(site.bias_strength, direction / np.linalg.norm(direction), site.bias_curvature)

    def __call__(self, grid: Grid) -> np.ndarray:
        z, y, x = (axis / _BIAS_LENGTH_MM for axis in grid.axes())
        dx, dy, dz = self.direction.tolist()
        linear = dx * x + dy * y + dz * z
        radial = x**2 + y**2 + z**2
        return np.exp(self.strength * linear + self.curvature * radial)


def tissue_levels(sequence: str, protocol: Protocol) -> dict[str, float]:
    """Signal levels under a site's protocol: each contrast to white matter raised to a power.

    Powers scale a contrast's size but keep every level positive and every contrast's sign
    (grey darker than white on T1, oedema brighter on FLAIR). Skull and CSF signal are
    jittered, scalp fat follows fat saturation.
    """
    base = CONTRAST[sequence]
    white = base["white"]
    powers = {
        "grey": protocol.grey_white,
        "oedema": protocol.lesion,
        "necrosis": protocol.lesion,
        "enhancing": protocol.enhancement if sequence == "t1c" else protocol.lesion,
    }
    levels = {t: white * (v / white) ** powers.get(t, 1.0) for t, v in base.items()}
    for tissue, factor in protocol.tissue.items():
        levels[tissue] *= factor
    levels["scalp"] *= protocol.fat
    return levels


def _normal_tissue(levels: dict[str, float], anatomy: Anatomy) -> np.ndarray:
    """Signal of the tumour-free head."""
    lookup = np.zeros(6, dtype=np.float32)
    for code, tissue in ((SCALP, "scalp"), (SKULL, "skull"), (CSF, "csf"), (VENTRICLE, "csf")):
        lookup[code] = levels[tissue]
    image = lookup[anatomy.compartment]
    brain = anatomy.compartment == BRAIN
    grey = anatomy.grey[brain]
    image[brain] = grey * levels["grey"] + (1 - grey) * levels["white"]
    image *= 1 + _MICRO_TEXTURE * anatomy.micro
    return image


def _add_tumour(image: np.ndarray, sequence: str, levels: dict[str, float], tumour: Tumour) -> None:
    """Blend oedema into the parenchyma and overwrite the core, in place."""
    p = tumour.phenotype
    region = image[tumour.box]
    oedema = levels["oedema"] * (
        1 + p.oedema_heterogeneity * tumour.textures[OEDEMA] + tumour.infiltration
    )
    weight = tumour.oedema_weight
    region[...] = (1 - weight) * region + weight * oedema
    uptake = p.enhancement if sequence == "t1c" else 1.0  # gadolinium shows on T1c only
    for label, level, heterogeneity in (
        (ENHANCING, levels["enhancing"] * uptake, p.rim_heterogeneity),
        (NECROSIS, levels["necrosis"], p.necrosis_heterogeneity),
    ):
        inside = tumour.labels == label
        region[inside] = level * (1 + heterogeneity * tumour.textures[label][inside])


@dataclass(frozen=True)
class SliceStack:
    """A 2-D multi-slice acquisition over the case grid's z range.

    `profile` (slices x grid planes) averages grid planes over each slice's thickness
    (a rectangular slice profile); `back` (grid planes x slices) interpolates the slices
    linearly onto the grid planes, as registration to the case grid does.
    """

    profile: np.ndarray
    back: np.ndarray

    @classmethod
    def of(cls, protocol: Protocol, grid: Grid, rng: np.random.Generator) -> SliceStack | None:
        """The stack of a 2-D protocol, or None when its slices are no thicker than the grid's
        (then the sequence is acquired on the grid itself). The stack's position relative to
        the patient is random."""
        spacing_z = grid.spacing[2]
        thickness = protocol.slice_mm
        if thickness <= 1.05 * spacing_z:
            return None
        nz = grid.shape[0]
        planes = (np.arange(nz) - (nz - 1) / 2) * spacing_z  # plane centres, mm
        step = thickness * (1 + protocol.slice_gap)
        first = planes[0] - rng.uniform(0.0, thickness / 2)  # every slice meets a plane
        count = math.floor((planes[-1] + thickness / 2 - first) / step) + 1
        centres = first + step * np.arange(count)
        low = np.maximum(centres[:, None] - thickness / 2, planes[None, :] - spacing_z / 2)
        high = np.minimum(centres[:, None] + thickness / 2, planes[None, :] + spacing_z / 2)
        overlap = np.maximum(high - low, 0.0)
        profile = overlap / np.maximum(overlap.sum(axis=1, keepdims=True), 1e-9)
        position = np.clip((planes - centres[0]) / step, 0.0, count - 1.0)
        below = np.minimum(np.floor(position).astype(int), count - 2)
        back = np.zeros((nz, count))
        back[np.arange(nz), below] = 1.0 - (position - below)
        back[np.arange(nz), below + 1] = position - below
        return cls(profile.astype(np.float32), back.astype(np.float32))

    def acquire(self, volume: np.ndarray) -> np.ndarray:
        return _along_z(self.profile, volume)

    def to_grid(self, slices: np.ndarray) -> np.ndarray:
        return _along_z(self.back, slices)


def _along_z(weights: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Planes of `weights @ volume` along z; sparse sums (each output plane mixes a few
    input planes), which beat a BLAS product with threads competing for busy cores."""
    out = np.empty((weights.shape[0], *volume.shape[1:]), dtype=np.float32)
    for k, row in enumerate(weights):
        (planes,) = np.nonzero(row)
        out[k] = row[planes[0]] * volume[planes[0]]
        for j in planes[1:]:
            out[k] += row[j] * volume[j]
    return out


def _rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise in both channels."""
    channels = rng.standard_normal((2, *signal.shape), dtype=np.float32)
    channels *= np.float32(sigma)
    channels[0] += signal
    np.square(channels, out=channels)
    return np.sqrt(channels[0] + channels[1])


def reconstruct(image: np.ndarray, strength: float) -> np.ndarray:
    """The scanner's in-plane image filter: blends towards a Gaussian-smoothed copy for
    strength < 0 (k-space apodization; -1 is the smoothed image) and away from it for
    strength > 0 (unsharp-mask edge enhancement), on every slice."""
    if strength == 0.0:
        return image
    smooth = gaussian_filter(
        image, (0.0, _RECONSTRUCTION_SIGMA, _RECONSTRUCTION_SIGMA), truncate=3.0
    )
    return np.maximum(image + strength * (image - smooth), 0.0)


def acquire(
    sequence: str,
    grid: Grid,
    anatomy: Anatomy,
    tumour: Tumour,
    site: SiteProfile,
    bias: np.ndarray,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """One sequence of one case as the site's scanner records it, on the case grid.

    Rounded to whole numbers, as scanners store integers (float32 dtype all the same).
    """
    protocol = site.protocols[sequence]
    levels = tissue_levels(sequence, protocol)
    image = _normal_tissue(levels, anatomy)
    _add_tumour(image, sequence, levels, tumour)
    image = gaussian_filter(image, site.psf_voxels, truncate=3.0)
    scale = site.scale[sequence]
    signal = scale * image * bias
    stack = SliceStack.of(protocol, grid, noise_rng)
    if stack is not None:
        signal = stack.acquire(signal)
    sigma = site.noise * scale * levels["white"]
    recorded = reconstruct(_rician(noise_rng, signal, sigma), site.reconstruction)
    if stack is not None:
        recorded = stack.to_grid(recorded)
    return np.rint(recorded + site.offset[sequence] * scale).astype(np.float32)
