"""Radiomic features of one case: every pyradiomics call of FedRad goes through here.

Keeping pyradiomics behind this module means the rest of the code sees only SimpleITK
images in and `{column name: float}` out, named by the feature-table contract.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from fedrad.common.config import ConfigError, ExtractionSettings
from fedrad.common.feature_table import feature_name

FILTER = "original"  # image filters (LoG, wavelet) come later
SHAPE_CLASS = "shape"

radiomics.setVerbosity(40)  # pyradiomics logs INFO/WARNING per call; keep the terminal for FedRad


def check_feature_classes(settings: ExtractionSettings) -> None:
    """Refuse unknown feature classes up front: pyradiomics itself only logs a warning."""
    known = radiomics.getFeatureClasses()
    unknown = [name for name in settings.feature_classes if name not in known]
    if unknown:
        raise ConfigError(
            f"extraction.feature_classes: unknown pyradiomics class(es) {unknown}; "
            f"known: {sorted(known)}"
        )


def _extractor(settings: ExtractionSettings, classes: list[str]) -> RadiomicsFeatureExtractor:
    extractor = RadiomicsFeatureExtractor(**settings.pyradiomics_settings())
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")
    extractor.disableAllFeatures()
    for name in classes:
        extractor.enableFeatureClassByName(name)
    return extractor


def extract_case(
    images: Mapping[str, sitk.Image], mask: sitk.Image, settings: ExtractionSettings
) -> dict[str, float]:
    """Features of every sequence x region, e.g. `t1c_enhancing_original_glcm_Contrast`.

    Shape depends only on the mask, so it is computed once per region, on the first study
    sequence, and named with that sequence. Raises whatever pyradiomics raises (e.g. a region
    that vanishes after resampling).
    """
    intensity = [name for name in settings.feature_classes if name != SHAPE_CLASS]
    first = _extractor(settings, list(settings.feature_classes))
    others = _extractor(settings, intensity) if intensity else None
    features: dict[str, float] = {}
    for index, sequence in enumerate(settings.sequences):
        extractor = first if index == 0 else others
        if extractor is None:
            continue
        for region, label in settings.regions.items():
            result = extractor.execute(images[sequence], mask, label=label)
            for key, value in result.items():
                features[feature_name(sequence, region, FILTER, key)] = _real(value)
    return features


def _real(value: object) -> float:
    """Shape axis lengths can come back complex (eigenvalues of a symmetric matrix via `eig`,
    pyradiomics issue #843); their imaginary part is rounding noise, so keep the real part."""
    return float(np.real(value))
