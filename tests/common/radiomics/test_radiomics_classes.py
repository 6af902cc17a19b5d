"""FedRad's reorganized pyradiomics feature classes give pyradiomics' values (==).

`compute_features` discretizes once for every class, keeps first-order percentiles for
their second use and runs GLCM's diagonal sums and MCC in fewer operations
(common/radiomics/feature_classes.py, firstorder.py, glcm.py); every value must still equal what
`RadiomicsFeatureExtractor.computeFeatures` returns. The images cover what changes the
code path: missing gray levels, empty angles (a one-slice ROI), a flat ROI,
one angle (GLCM weighting), large and small bin counts.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from fedrad.common.radiomics.feature_classes import compute_features
from fedrad.common.radiomics.glcm import FastGLCM, _q_by_bands, _q_by_pairs

CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def volume(seed: int, shape=(9, 14, 12), levels: float = 200.0) -> tuple[sitk.Image, sitk.Image]:
    """A smooth-plus-noise image with a gap in its intensities, and a blob mask."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    smooth = np.sin(x / 3.0) + np.cos(y / 4.0) + z / shape[0]
    array = levels * (smooth + 0.4 * rng.normal(size=shape))
    array[array > levels] += 3 * levels  # bins between the two groups stay empty
    radius = np.linalg.norm((np.indices(shape).T - np.array(shape) / 2).T, axis=0)
    mask = (radius < min(shape) / 2.2).astype(np.uint8)
    image, labels = sitk.GetImageFromArray(array), sitk.GetImageFromArray(mask)
    image.SetSpacing((0.8, 1.1, 2.5))
    labels.CopyInformation(image)
    return image, labels


def one_slice(image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """The ROI cut down to a single slice: GLCM angles across slices are empty."""
    array = sitk.GetArrayFromImage(mask)
    array[: array.shape[0] // 2] = 0
    array[array.shape[0] // 2 + 1 :] = 0
    thin = sitk.GetImageFromArray(array)
    thin.CopyInformation(mask)
    return image, thin


def flat(image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    constant = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(image).shape, 7.0))
    constant.CopyInformation(image)
    return constant, mask


def pyradiomics(image, mask, settings: dict) -> dict[str, object]:
    extractor = RadiomicsFeatureExtractor(**settings)
    extractor.disableAllFeatures()
    for name in CLASSES:
        extractor.enableFeatureClassByName(name)
    return extractor, extractor.computeFeatures(image, mask, "original", **extractor.settings)


def same(ours: object, theirs: object) -> bool:
    ours, theirs = float(np.real(ours)), float(np.real(theirs))
    return ours == theirs or (math.isnan(ours) and math.isnan(theirs))


CASES = {
    "gaps": (volume(0), {"binWidth": 25}),
    "many_levels": (volume(1, (12, 16, 16)), {"binWidth": 5}),
    "few_levels": (volume(2), {"binCount": 4}),
    "one_slice": (one_slice(*volume(3)), {"binWidth": 10}),
    "flat": (flat(*volume(4)), {"binWidth": 25}),
    "one_angle": (volume(5), {"binWidth": 10, "weightingNorm": "euclidean"}),
}


@pytest.mark.parametrize("case", CASES)
def test_compute_features_equals_pyradiomics(case):
    (image, mask), settings = CASES[case]
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor, theirs = pyradiomics(image, mask, settings)
    ours = compute_features(
        image, mask, "original", extractor.enabledFeatures, **extractor.settings
    )
    assert ours.keys() == theirs.keys()
    different = {
        name: (ours[name], theirs[name]) for name in ours if not same(ours[name], theirs[name])
    }
    assert not different, different


@pytest.mark.parametrize("seed", range(6))
def test_fast_glcm_equals_pyradiomics_glcm_on_large_sparse_matrices(seed):
    from radiomics.glcm import RadiomicsGLCM

    image, mask = volume(10 + seed, (12, 16, 16), levels=120.0)
    settings = {"binWidth": 2 + seed, "label": 1}
    theirs = RadiomicsGLCM(image, mask, **settings).execute()
    ours = FastGLCM(image, mask, **settings).execute()
    assert ours.keys() == theirs.keys()
    assert all(same(ours[name], theirs[name]) for name in ours), {
        name: (ours[name], theirs[name]) for name in ours if not same(ours[name], theirs[name])
    }


def pyradiomics_q(glcm: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """`RadiomicsGLCM.getMCCFeatureValue`'s Q, as pyradiomics writes it."""
    eps = np.spacing(1)
    q = (glcm[:, :, None, 0, :] * glcm[:, None, :, 0, :]) / (
        px[:, :, None, 0, :] * py[:, None, :, 0, :] + eps
    )
    for gl in range(1, glcm.shape[1]):
        q += (glcm[:, :, None, gl, :] * glcm[:, None, :, gl, :]) / (
            px[:, :, None, 0, :] * py[:, None, :, gl, :] + eps
        )
    return q


@pytest.mark.parametrize("case", ["gaps", "many_levels", "one_slice", "sparse", "nan_angle"])
def test_both_ways_of_skipping_zero_terms_give_pyradiomics_q(case):
    if case == "sparse":
        image, mask = volume(10, (12, 16, 16), levels=120.0)
        settings = {"binWidth": 2}
    else:
        (image, mask), settings = CASES["gaps" if case == "nan_angle" else case]
    glcm_class = FastGLCM(image, mask, **{**settings, "label": 1})
    glcm_class._initCalculation()
    glcm = glcm_class.P_glcm.copy()
    if case == "nan_angle":
        glcm[..., 0] = np.nan  # an empty angle normalized by its zero sum
    px, py = glcm.sum(2, keepdims=True), glcm.sum(1, keepdims=True)
    expected = pyradiomics_q(glcm, px, py)
    for way in (_q_by_bands, _q_by_pairs):
        assert np.array_equal(way(glcm, px, py), expected, equal_nan=True), way.__name__
