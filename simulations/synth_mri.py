"""From tissue maps to scanner images: MR contrast, point spread, bias field, Rician noise.

Contrasts are relative signal levels (white matter of T1-weighted sequences ~1) chosen to
match textbook appearances: enhancing rim bright on T1c, necrosis dark on T1c and bright on
T2, oedema bright on FLAIR/T2, CSF suppressed on FLAIR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from fedrad.simulations.synth_anatomy import BRAIN, CSF, SCALP, SKULL, VENTRICLE, Anatomy
from fedrad.simulations.synth_site import Grid, SiteProfile
from fedrad.simulations.synth_tumour import ENHANCING, NECROSIS, OEDEMA, Tumour

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


def _levels(sequence: str, site: SiteProfile) -> dict[str, float]:
    return {t: v * site.contrast[sequence][t] for t, v in CONTRAST[sequence].items()}


def _normal_tissue(levels: dict[str, float], anatomy: Anatomy) -> np.ndarray:
    """Signal of the tumour-free head."""
    lookup = np.zeros(6, dtype=np.float32)
    for code, tissue in ((SCALP, "scalp"), (SKULL, "skull"), (CSF, "csf"), (VENTRICLE, "csf")):
        lookup[code] = levels[tissue]
    image = lookup[anatomy.compartment]
    brain = anatomy.compartment == BRAIN
    grey = anatomy.grey[brain]
    image[brain] = grey * levels["grey"] + (1 - grey) * levels["white"]
    return image * (1 + _MICRO_TEXTURE * anatomy.micro)


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


def _rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise in both channels."""
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real**2 + imaginary**2)


def acquire(
    sequence: str,
    grid: Grid,
    anatomy: Anatomy,
    tumour: Tumour,
    site: SiteProfile,
    bias: np.ndarray,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """One sequence of one case as the site's scanner records it.

    Rounded to whole numbers, as scanners store integers (float32 dtype all the same).
    """
    levels = _levels(sequence, site)
    image = _normal_tissue(levels, anatomy)
    _add_tumour(image, sequence, levels, tumour)
    image = gaussian_filter(image, site.psf_voxels, truncate=3.0)
    scale = site.scale[sequence]
    sigma = site.noise * scale * levels["white"]
    signal = _rician(noise_rng, scale * image * bias, sigma)
    return np.rint(signal + site.offset[sequence] * scale).astype(np.float32)
