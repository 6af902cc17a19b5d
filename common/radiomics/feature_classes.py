"""pyradiomics' feature classes on one image x region, discretizing the image once.

`RadiomicsFeatureExtractor.computeFeatures` builds every enabled class from the image and
mask, and each class reads both into arrays, discretizes the image (`_applyBinning`) and
finds its feature names by introspection: six times the same work per filtered image x
region. Here it is done once and handed to each class; everything after - matrices,
coefficients, features - is pyradiomics' own code on the same arrays, so the values are
identical (==). The shared arrays are read-only: a class writing into them would fail
loudly instead of corrupting the next class's input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import SimpleITK as sitk
from radiomics import getFeatureClasses, imageoperations
from radiomics.base import RadiomicsFeaturesBase

from fedrad.common.radiomics.firstorder import FastFirstOrder
from fedrad.common.radiomics.glcm import FastGLCM

# same values as pyradiomics' classes, fewer operations
FASTER = {"firstorder": FastFirstOrder, "glcm": FastGLCM}


@dataclass(frozen=True)
class Discretized:
    """What every intensity class of pyradiomics derives from its inputs before its matrix."""

    mask: np.ndarray  # boolean, voxels of the label
    binned: np.ndarray  # the image's bin numbers inside the mask, 0 outside
    gray_levels: np.ndarray  # bin numbers present in the mask
    ng: int  # highest bin number present


def discretize(image: sitk.Image, mask: sitk.Image, settings: Mapping) -> Discretized:
    """`RadiomicsFeaturesBase.__init__` + `_applyBinning` (pyradiomics' `binImage`), once."""
    inside = sitk.GetArrayFromImage(mask) == settings.get("label", 1)
    binned, _ = imageoperations.binImage(sitk.GetArrayFromImage(image), inside, **settings)
    gray_levels = np.unique(binned[inside])
    for array in (inside, binned, gray_levels):
        array.flags.writeable = False
    return Discretized(inside, binned, gray_levels, int(np.max(gray_levels)))


@cache
def shared_class(name: str) -> type[RadiomicsFeaturesBase]:
    """pyradiomics' class `name`, taking its mask and discretization from a `Discretized`."""
    pyradiomics_class = getFeatureClasses()[name]
    base = FASTER.get(name, pyradiomics_class)
    names = pyradiomics_class.getFeatureNames()

    class Shared(base):
        def __init__(self, image: sitk.Image, mask: sitk.Image, shared: Discretized, **kwargs):
            self._shared = shared
            super().__init__(image, mask, **kwargs)

        @classmethod
        def getFeatureNames(cls) -> dict[str, bool]:  # noqa: N802 - pyradiomics' name
            return names

        def _initSegmentBasedCalculation(self) -> None:  # noqa: N802
            self.maskArray = self._shared.mask

        def _applyBinning(self, matrix: np.ndarray) -> np.ndarray:  # noqa: N802
            self.coefficients["grayLevels"] = self._shared.gray_levels
            self.coefficients["Ng"] = self._shared.ng
            return self._shared.binned

    # pyradiomics' classes log to `radiomics.<module>`, which FedRad keeps at ERROR
    Shared.__name__ = pyradiomics_class.__name__
    Shared.__module__ = pyradiomics_class.__module__
    return Shared


def compute_features(
    image: sitk.Image,
    mask: sitk.Image,
    image_type: str,
    enabled: Mapping[str, Sequence[str] | None],
    **settings,
) -> dict[str, object]:
    """== `RadiomicsFeatureExtractor.computeFeatures(image, mask, image_type, **settings)` for
    an extractor whose `enabledFeatures` is `enabled`."""
    classes = [name for name in enabled if not name.startswith("shape")]
    if not classes:
        return {}
    shared = discretize(image, mask, settings)
    values: dict[str, object] = {}
    for name in classes:
        instance = shared_class(name)(image, mask, shared, **settings)
        for feature in enabled[name] or ():
            instance.enableFeatureByName(feature)
        for feature, value in instance.execute().items():
            values[f"{image_type}_{name}_{feature}"] = value
    return values
