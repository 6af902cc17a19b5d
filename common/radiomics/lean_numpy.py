"""numpy as pyradiomics' feature code uses it, with some functions taking the short way.

pyradiomics ends nearly every texture feature with `numpy.nanmean(values, 1)` over the
angles and sums with `numpy.sum`: some 300 calls per filtered image x region, on arrays
of a few dozen values, where numpy's argument handling costs more than the arithmetic
(`nanmean` 27 us, of which the mean itself needs 12); first order's percentiles and
median walk NaN-aware paths row by row; the texture matrices drop empty gray levels with
`numpy.delete`; the discretization finds its bin range with Python's `min` / `max`,
one numpy scalar at a time. The functions here do the same arithmetic on the same arrays -
the same bits - and hand anything else (NaN, keywords, other types) to numpy or Python.
`rebound` gives a pyradiomics class methods that see this module as `numpy`, `bin_image`
is pyradiomics' `binImage` with numpy's `min` / `max`; pyradiomics itself is left
untouched.
"""

from __future__ import annotations

import builtins
import inspect
import types

import numpy as np
from radiomics import imageoperations

lean = types.ModuleType("numpy", "numpy, with the short ways of fedrad.common.radiomics.lean_numpy")
lean.__dict__.update(np.__dict__)


def nanmean(a, axis=None, *args, **kwargs):
    """`numpy.nanmean` for a non-empty, NaN-free float64 array: its sum over a copy, over
    the count.

    numpy replaces NaN in a copy, sums the copy and divides by the count of non-NaN
    entries; without NaN that count is the number of entries per result. The copy keeps
    numpy's memory layout, on which the order of the summation depends.
    """
    if args or kwargs or not _nan_free_floats(a):
        return np.nanmean(a, axis, *args, **kwargs)
    total = np.add.reduce(np.array(a, subok=True, copy=True), axis)
    count = np.intp(a.size // total.size)
    if isinstance(total, np.ndarray):
        return np.divide(total, count, out=total, casting="unsafe")
    return total.dtype.type(total / count)


def sum(a, axis=None, dtype=None, out=None, keepdims=np._NoValue, **kwargs):  # noqa: A001
    """`numpy.sum` for an ndarray: the `add.reduce` it ends in, without its wrapper."""
    if kwargs or type(a) is not np.ndarray:
        return np.sum(a, axis, dtype, out, keepdims=keepdims, **kwargs)
    if keepdims is np._NoValue:
        return np.add.reduce(a, axis, dtype, out)
    return np.add.reduce(a, axis, dtype, out, keepdims=keepdims)


def nanpercentile(a, q, axis=None, *args, **kwargs):
    """`numpy.nanpercentile` of a NaN-free float64 array: `numpy.percentile`, which
    partitions and interpolates the same values without visiting them one row at a time."""
    if args or kwargs or not _nan_free_floats(a):
        return np.nanpercentile(a, q, axis, *args, **kwargs)
    return np.percentile(a, q, axis)


def nanmedian(a, axis=None, *args, **kwargs):
    """`numpy.nanmedian` of a NaN-free float64 array: `numpy.median` (what numpy's masked
    median falls back to when nothing is masked)."""
    if args or kwargs or not _nan_free_floats(a):
        return np.nanmedian(a, axis, *args, **kwargs)
    return np.median(a, axis)


def delete(arr, obj, axis=None):
    """`numpy.delete` of an array of integer positions along an axis: the boolean mask numpy
    builds for that case, indexed directly. numpy copies a single position differently
    (and keeps Fortran order there), so that case, and any other, goes to numpy."""
    if (
        type(arr) is not np.ndarray
        or type(obj) is not np.ndarray
        or obj.dtype.kind not in "iu"
        or obj.size == 1
        or not isinstance(axis, int)
    ):
        return np.delete(arr, obj, axis)
    axis = np.lib.array_utils.normalize_axis_index(axis, arr.ndim)
    keep = np.ones(arr.shape[axis], dtype=bool)
    keep[obj,] = False
    return arr[(slice(None),) * axis + (keep,)]


def _nan_free_floats(a) -> bool:
    """A non-empty float64 ndarray without NaN (infinities are fine): where the short ways
    apply."""
    return (
        type(a) is np.ndarray
        and a.dtype == np.float64
        and a.size > 0
        and not np.logical_or.reduce(np.isnan(a), axis=None)
    )


for _function in (nanmean, sum, nanpercentile, nanmedian, delete):
    setattr(lean, _function.__name__, _function)


def rebind(function: types.FunctionType, **names) -> types.FunctionType:
    """A copy of `function` whose global `names` are replaced (e.g. `numpy=lean`)."""
    copy = types.FunctionType(
        function.__code__,
        {**function.__globals__, **names},
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    return copy


def rebound(cls: type) -> dict[str, object]:
    """The methods `cls` takes from pyradiomics that use numpy, re-bound to `lean`.

    Methods a FedRad class overrides are its own and stay as they are.
    """
    methods = {}
    for name in dir(cls):
        attribute = inspect.getattr_static(cls, name)
        function = attribute.__func__ if isinstance(attribute, staticmethod) else attribute
        if (
            isinstance(function, types.FunctionType)
            and function.__module__.startswith("radiomics.")
            and "numpy" in function.__code__.co_names
        ):
            copy = rebind(function, numpy=lean)
            methods[name] = staticmethod(copy) if isinstance(attribute, staticmethod) else copy
    return methods


def _array_min(values, *args, **kwargs):
    """Python's `min`; of a 1-D numeric array without NaN taken by numpy, which gives the
    same element without walking the array one numpy scalar at a time."""
    if args or kwargs or not _is_plain_vector(values):
        return builtins.min(values, *args, **kwargs)
    return np.minimum.reduce(values)


def _array_max(values, *args, **kwargs):
    """Python's `max`, as `_array_min`."""
    if args or kwargs or not _is_plain_vector(values):
        return builtins.max(values, *args, **kwargs)
    return np.maximum.reduce(values)


def _is_plain_vector(values) -> bool:
    return (
        type(values) is np.ndarray
        and values.ndim == 1
        and values.size > 0
        and values.dtype.kind in "iuf"
        and not (values.dtype.kind == "f" and np.logical_or.reduce(np.isnan(values)))
    )


# pyradiomics' discretization, its bin edges found with `_array_min` / `_array_max`: the
# builtins took 0.7 ms per filtered image x region on the benchmark's regions
bin_image = rebind(
    imageoperations.binImage,
    getBinEdges=rebind(imageoperations.getBinEdges, min=_array_min, max=_array_max),
)
