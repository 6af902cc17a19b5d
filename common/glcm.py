"""pyradiomics' GLCM with its two slowest steps computed in fewer operations, same bits.

Both replacements perform, for every output element, the very floating-point operations
pyradiomics performs, in the same order, and only leave out additions of exact zeros:

- `pxAddy` / `pxSuby` (sums of the GLCM along its anti-diagonals / diagonals):
  pyradiomics sums a boolean selection per diagonal; with more than one angle numpy adds
  the selected entries one after the other, in row order, which is exactly what
  `bincount` does for all diagonals in one pass. With a single angle numpy sums pairwise,
  so pyradiomics' code runs.
- MCC's matrix Q(i, j) = sum over k of p(i, k) p(j, k) / (px(i) py(k) + eps): pyradiomics
  adds one full Ng x Ng term per k; a term is an exact +0 outside the rows where column k
  of the GLCM is non-zero, so only that band is added (about half of the additions are
  left on the benchmark's GLCMs, far fewer on large sparse ones). The eigenvalues are
  then computed exactly as pyradiomics does.

`tests/test_radiomics_classes.py` checks both against pyradiomics (==) on GLCMs with empty
angles, missing gray levels, one angle and large sparse matrices.
"""

from __future__ import annotations

import numpy as np
from radiomics.glcm import RadiomicsGLCM


class FastGLCM(RadiomicsGLCM):
    """RadiomicsGLCM; `_calculateCoefficients` and MCC reorganized, values identical."""

    def _calculateCoefficients(self) -> None:  # noqa: N802 - pyradiomics' name
        nv, _, _, angles = self.P_glcm.shape
        if nv != 1 or angles < 2:
            super()._calculateCoefficients()
            return
        ng = self.coefficients["Ng"]
        eps = np.spacing(1)
        gray = self.coefficients["grayLevels"].astype("float")
        i, j = np.meshgrid(gray, gray, indexing="ij", sparse=True)
        glcm = self.P_glcm
        self.coefficients.update(
            eps=eps,
            i=i,
            j=j,
            kValuesSum=np.arange(2, (ng * 2) + 1, dtype="float"),
            kValuesDiff=np.arange(0, ng, dtype="float"),
            px=glcm.sum(2, keepdims=True),
            py=glcm.sum(1, keepdims=True),
            ux=np.sum(i[None, :, :, None] * glcm, (1, 2), keepdims=True),
            uy=np.sum(j[None, :, :, None] * glcm, (1, 2), keepdims=True),
            pxAddy=_diagonal_sums(glcm, (i + j - 2).astype(int), 2 * ng - 1),
            pxSuby=_diagonal_sums(glcm, np.abs(i - j).astype(int), ng),
            HXY=(-1) * np.sum((glcm * np.log2(glcm + eps)), (1, 2)),
        )

    def getMCCFeatureValue(self):  # noqa: N802 - pyradiomics' name
        """pyradiomics' MCC with Q accumulated over the non-zero band of each GLCM column."""
        if self.P_glcm.shape[0] != 1:
            return super().getMCCFeatureValue()
        q = _mcc_q(self.P_glcm, self.coefficients["px"], self.coefficients["py"])
        eigenvalues = np.linalg.eigvals(q.transpose((0, 3, 1, 2)))
        eigenvalues.sort()
        if eigenvalues.shape[2] < 2:
            return 1  # flat region
        mcc = np.sqrt(eigenvalues[:, :, -2])
        return np.nanmean(mcc, 1).real


def _diagonal_sums(glcm: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """(1, count, angles): entries of glcm[0] summed per `index` (Ng x Ng), in row order.

    Laid out as pyradiomics' `numpy.array([...]).transpose((1, 0, 2))`, because later
    reductions over it follow its memory order.
    """
    angles = glcm.shape[3]
    bins = (index[:, :, None] * angles + np.arange(angles)).ravel()
    sums = np.bincount(bins, weights=glcm[0].ravel(), minlength=count * angles)
    return sums.reshape(count, 1, angles).transpose((1, 0, 2))


def _mcc_q(glcm: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """pyradiomics' Q, (1, Ng, Ng, angles), adding each column's term on its non-zero band.

    NaN entries (an empty angle) count as non-zero, so they propagate as in pyradiomics.
    """
    eps = np.spacing(1)
    q = np.zeros(glcm.shape)
    nonzero = (glcm[0] != 0).any(axis=2)  # (Ng rows, Ng columns)
    for column in range(glcm.shape[2]):
        rows = np.flatnonzero(nonzero[:, column])
        if rows.size == 0:
            continue
        band = slice(rows[0], rows[-1] + 1)
        q[:, band, band, :] += (glcm[:, band, None, column, :] * glcm[:, None, band, column, :]) / (
            px[:, band, None, 0, :] * py[:, None, :, column, :] + eps
        )
    return q
