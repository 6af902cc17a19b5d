"""pyradiomics' first-order class computing its percentiles and central moments once.

The class reports the 10th and 90th percentiles and asks for them again for the robust
mean absolute deviation, asks for the 25th and 75th for the interquartile range, and
computes the second central moment for both skewness and kurtosis: `nanpercentile` and
`_moment` are among its costliest calls. Here the four percentiles come from one numpy
call (the same order statistics, interpolated with the same arithmetic; only the sign of
a percentile that is exactly zero can differ, and -0.0 == 0.0) and each moment from
pyradiomics' own `_moment`, kept for the second use.
"""

from __future__ import annotations

import numpy as np
from radiomics.firstorder import RadiomicsFirstOrder

PERCENTILES = (10, 25, 75, 90)  # every percentile the class reports or derives a feature from


class FastFirstOrder(RadiomicsFirstOrder):
    """RadiomicsFirstOrder with its percentiles and central moments computed once."""

    def __init__(self, inputImage, inputMask, **kwargs):  # noqa: N803 - pyradiomics' names
        self._percentiles: dict[int, np.ndarray] = {}
        self._moments: dict[int, np.ndarray] = {}
        super().__init__(inputImage, inputMask, **kwargs)

    def get10PercentileFeatureValue(self):  # noqa: N802 - pyradiomics' name
        return self._percentile(10)

    def get90PercentileFeatureValue(self):  # noqa: N802
        return self._percentile(90)

    def getInterquartileRangeFeatureValue(self):  # noqa: N802
        return self._percentile(75) - self._percentile(25)

    def _percentile(self, q: int) -> np.ndarray:
        """pyradiomics' `numpy.nanpercentile(self.targetVoxelArray, q, axis=1)`."""
        if not self._percentiles:
            values = np.nanpercentile(self.targetVoxelArray, PERCENTILES, axis=1)
            self._percentiles = dict(zip(PERCENTILES, values, strict=True))
        return self._percentiles[q]

    def _moment(self, a: np.ndarray, moment: int = 1) -> np.ndarray:
        """pyradiomics' `_moment`, a fresh copy each time (its callers write into it)."""
        if a is not self.targetVoxelArray:
            return RadiomicsFirstOrder._moment(a, moment)
        if moment not in self._moments:
            self._moments[moment] = RadiomicsFirstOrder._moment(a, moment)
        return self._moments[moment].copy()
