"""numpy as pyradiomics' feature code uses it, with `nanmean` and `sum` taking the short way.

pyradiomics ends nearly every texture feature with `numpy.nanmean(values, 1)` over the
angles and sums with `numpy.sum`: some 300 calls per filtered image x region, on arrays
of a few dozen values, where numpy's argument handling costs more than the arithmetic
(`nanmean` 27 us, of which the mean itself needs 12). The two functions here do the same
arithmetic on the same arrays - the same bits - and hand anything else (NaN, keywords,
other types) to numpy. `rebound` gives a pyradiomics class methods that see this module
as `numpy`; pyradiomics itself is left untouched.
"""

from __future__ import annotations

import importlib
import inspect
import types
from functools import cache

import numpy as np

lean = types.ModuleType("numpy", "numpy, with the short ways of fedrad.common.lean_numpy")
lean.__dict__.update(np.__dict__)


def nanmean(a, axis=None, *args, **kwargs):
    """`numpy.nanmean` for a non-empty, NaN-free float64 array: its sum over a copy, over
    the count.

    numpy replaces NaN in a copy, sums the copy and divides by the count of non-NaN
    entries; without NaN that count is the number of entries per result. The copy keeps
    numpy's memory layout, on which the order of the summation depends.
    """
    if (
        args
        or kwargs
        or type(a) is not np.ndarray
        or a.dtype != np.float64
        or a.size == 0
        or np.isnan(a).any()
    ):
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


lean.nanmean = nanmean
lean.sum = sum


@cache
def _lean_globals(module: str) -> dict:
    """A pyradiomics module's namespace with `numpy` bound to `lean`."""
    return {**vars(importlib.import_module(module)), "numpy": lean}


def rebound(cls: type) -> dict[str, object]:
    """The methods `cls` takes from pyradiomics that use numpy, re-bound to `lean`.

    Methods a FedRad class overrides are its own and stay as they are.
    """
    methods = {}
    for name in dir(cls):
        attribute = inspect.getattr_static(cls, name)
        function = attribute.__func__ if isinstance(attribute, staticmethod) else attribute
        if not (
            isinstance(function, types.FunctionType)
            and function.__module__.startswith("radiomics.")
            and "numpy" in function.__code__.co_names
        ):
            continue
        copy = types.FunctionType(
            function.__code__,
            _lean_globals(function.__module__),
            function.__name__,
            function.__defaults__,
            function.__closure__,
        )
        copy.__kwdefaults__ = function.__kwdefaults__
        copy.__qualname__ = function.__qualname__
        methods[name] = staticmethod(copy) if isinstance(attribute, staticmethod) else copy
    return methods
