"""pyradiomics' first-order class computing each percentile once.

`getRobustMeanAbsoluteDeviationFeatureValue` asks again for the 10th and 90th
percentiles the class has already reported, and `nanpercentile` is among the class's
costliest calls. The values are pyradiomics' own calls, kept for the second use.
"""

from __future__ import annotations

import numpy as np
from radiomics.firstorder import RadiomicsFirstOrder

from fedrad.common.lean_numpy import nanpercentile


class FastFirstOrder(RadiomicsFirstOrder):
    """RadiomicsFirstOrder with its 10th and 90th percentiles computed once."""

    def __init__(self, inputImage, inputMask, **kwargs):  # noqa: N803 - pyradiomics' names
        self._percentiles: dict[int, np.ndarray] = {}
        super().__init__(inputImage, inputMask, **kwargs)

    def get10PercentileFeatureValue(self):  # noqa: N802 - pyradiomics' name
        return self._percentile(10)

    def get90PercentileFeatureValue(self):  # noqa: N802
        return self._percentile(90)

    def _percentile(self, q: int) -> np.ndarray:
        """pyradiomics' `numpy.nanpercentile(self.targetVoxelArray, q, axis=1)`, kept
        (the short way of `lean_numpy`, same bits)."""
        if q not in self._percentiles:
            self._percentiles[q] = nanpercentile(self.targetVoxelArray, q, axis=1)
        return self._percentiles[q]
