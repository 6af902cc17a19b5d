"""The short-way `nanmean` and `sum` give numpy's bits; only pyradiomics' methods are re-bound."""

import warnings

import numpy as np
import pytest
from radiomics import imageoperations
from radiomics.firstorder import RadiomicsFirstOrder
from radiomics.glcm import RadiomicsGLCM

from fedrad.common.radiomics.glcm import FastGLCM
from fedrad.common.radiomics.lean_numpy import (
    _array_max,
    _array_min,
    bin_image,
    delete,
    lean,
    nanmean,
    nanmedian,
    nanpercentile,
    rebound,
)
from fedrad.common.radiomics.lean_numpy import sum as lean_sum

RNG = np.random.default_rng(0)
# magnitudes spread over 12 decades, so any change in summation order shows in the bits
WIDE = RNG.normal(size=(6, 40, 13)) * 10.0 ** RNG.integers(-6, 6, size=(6, 40, 13))
ARRAYS = {
    "angles": WIDE[0, :1],  # (1, 13), as pyradiomics' per-angle features
    "long rows": WIDE.reshape(6, -1),  # pairwise summation along a contiguous axis
    "3-D": WIDE,
    "transposed": WIDE.transpose(2, 0, 1),
    "strided": WIDE[:, ::3, 1::2],
    "scalar-like": np.array(2.5),
}
CASES = [
    (name, axis)
    for name, array in ARRAYS.items()
    for axis in (None, 0, 1, -1, (0, 1))
    if axis is None or array.ndim > max(np.atleast_1d(axis))
]


def _same(ours, theirs) -> bool:
    """Equal in type, shape and every bit."""
    return (
        type(ours) is type(theirs)
        and np.shape(ours) == np.shape(theirs)
        and np.asarray(ours).tobytes() == np.asarray(theirs).tobytes()
    )


@pytest.mark.parametrize(("name", "axis"), CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_nanmean_and_sum_equal_numpy_bit_for_bit(name, axis):
    array = ARRAYS[name]
    assert _same(nanmean(array, axis), np.nanmean(array, axis))
    assert _same(lean_sum(array, axis), np.sum(array, axis))
    assert _same(lean_sum(array, axis, keepdims=True), np.sum(array, axis, keepdims=True))


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.0, np.nan, 3.0]]),
        np.zeros((0, 13)),
        np.arange(12).reshape(3, 4),  # integers: numpy's own mean
        [[1.0, 2.0], [3.0, 4.0]],  # a list
        np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0]),
    ],
    ids=["nan", "empty", "int", "list", "masked"],
)
def test_anything_else_is_numpy_s_own_answer(array):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the empty mean warns, in both
        ours, theirs = (
            nanmean(array, 1 if np.ndim(array) > 1 else None),
            np.nanmean(array, 1 if np.ndim(array) > 1 else None),
        )
    assert _same(ours, theirs)
    assert _same(lean_sum(array), np.sum(array))


def test_only_pyradiomics_methods_using_numpy_are_rebound():
    glcm_methods = rebound(FastGLCM)
    assert "getContrastFeatureValue" in glcm_methods
    assert glcm_methods["getContrastFeatureValue"].__globals__["numpy"] is lean
    # FedRad's own code, and pyradiomics' code that FedRad overrides, stay as they are
    assert "getMCCFeatureValue" not in glcm_methods
    assert "_calculateCoefficients" not in glcm_methods
    assert RadiomicsGLCM.getContrastFeatureValue.__globals__["numpy"] is np  # untouched
    moment = rebound(RadiomicsFirstOrder)["_moment"]
    assert isinstance(moment, staticmethod)
    assert moment.__func__.__globals__["numpy"] is lean


@pytest.mark.parametrize("voxels", [1, 2, 7, 600, 601, 1500])
@pytest.mark.parametrize("axis", [1, None], ids=str)
def test_percentiles_and_median_equal_numpy_s_nan_aware_ones(voxels, axis):
    values = RNG.normal(size=(1, voxels)) * 100  # first order's target voxels: one row
    for q in (10, 25, 50, 75, 90):
        assert _same(nanpercentile(values, q, axis=axis), np.nanpercentile(values, q, axis=axis))
    assert _same(nanmedian(values, axis), np.nanmedian(values, axis))
    values[0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one voxel, all NaN: both warn
        assert _same(nanpercentile(values, 25, axis=axis), np.nanpercentile(values, 25, axis=axis))
        assert _same(nanmedian(values, axis), np.nanmedian(values, axis))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize(
    "positions",
    [
        np.array([], dtype=int),
        np.array([0, 3]),
        np.array([4, -1, 2]),
        np.array([2]),
        (np.array([1, 2]),),
    ],
    ids=["none", "two", "negative", "single", "tuple"],
)
def test_delete_equals_numpy_in_values_and_memory_order(order, axis, positions):
    array = np.asarray(WIDE[:, :5, :6], order=order)
    ours, theirs = delete(array, positions, axis), np.delete(array, positions, axis)
    assert _same(ours, theirs)
    assert (ours.flags.c_contiguous, ours.flags.f_contiguous) == (
        theirs.flags.c_contiguous,
        theirs.flags.f_contiguous,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize(
    "settings", [{"binWidth": 25}, {"binWidth": 0.3}, {"binCount": 16}], ids=str
)
def test_bin_image_equals_pyradiomics(dtype, settings):
    image = (RNG.normal(size=(6, 9, 11)) * 80 - 30).astype(dtype)
    mask = RNG.random((6, 9, 11)) < 0.4
    for region in (mask, np.zeros_like(mask) | (image == image.flat[5])):  # any, and flat
        ours, ours_edges = bin_image(image, region, **settings)
        theirs, their_edges = imageoperations.binImage(image, region, **settings)
        assert np.array_equal(ours, theirs)
        assert np.array_equal(ours_edges, their_edges)


@pytest.mark.parametrize(
    "values",
    [
        np.array([3.0, -0.0, 0.0, 7.5, -2.25]),
        np.array([5, 2, 9], dtype=np.int64),
        np.array([1.0, np.nan, -4.0]),  # NaN: Python's own answer
        [4.0, 1.0],
        np.array([[1.0, 2.0]]),
    ],
    ids=["floats", "ints", "nan", "list", "2-D"],
)
def test_array_min_and_max_equal_python_s(values):
    for ours, theirs in ((_array_min, min), (_array_max, max)):
        mine, python = ours(values), theirs(values)
        assert np.array_equal(mine, python, equal_nan=True) and type(mine) is type(python)
