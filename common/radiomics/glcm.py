"""pyradiomics' GLCM with its two slowest steps computed in fewer operations, same bits.

Both replacements perform, for every output element, the very floating-point operations
pyradiomics performs, in the same order, and only leave out additions of exact zeros:

- `pxAddy` / `pxSuby` (sums of the GLCM along its anti-diagonals / diagonals):
  pyradiomics sums a boolean selection per diagonal; with more than one angle numpy adds
  the selected entries one after the other, in row order, which is exactly what
  `bincount` does for all diagonals in one pass. With a single angle numpy sums pairwise,
  so pyradiomics' code runs.
- MCC's matrix Q(i, j) = sum over k of p(i, k) p(j, k) / (px(i) py(k) + eps): pyradiomics
  adds one full Ng x Ng term per k; a term is an exact +0 wherever p(i, k) or p(j, k) is
  zero, so only the others are added, in the same k order: per column over the band of
  rows where it is non-zero (dense GLCMs), or per pair of non-zero entries (sparse ones,
  where the pairs are far fewer than the band's elements). The eigenvalues are then
  computed exactly as pyradiomics does.
- cluster prominence and shade, sum(P (i + j - ux - uy)^n): the power (`pow`, the
  costliest step) is taken only where P is non-zero; elsewhere the term is a zero either
  way.

`tests/common/radiomics/test_radiomics_classes.py` checks them against pyradiomics (==) on
GLCMs with empty angles, missing gray levels, one angle and large sparse matrices.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from radiomics.glcm import RadiomicsGLCM

PAIR_COST = 5  # band elements that cost as much as one pair (measured on the benchmark)


class FastGLCM(RadiomicsGLCM):
    """RadiomicsGLCM; `_calculateCoefficients`, cluster sums and MCC reorganized, values
    identical."""

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

    def getClusterProminenceFeatureValue(self):  # noqa: N802 - pyradiomics' name
        return np.nanmean(self._cluster_sum(4), 1)

    def getClusterShadeFeatureValue(self):  # noqa: N802
        return np.nanmean(self._cluster_sum(3), 1)

    def _cluster_sum(self, power: int) -> np.ndarray:
        """pyradiomics' `sum(P * (i + j - ux - uy) ** power, (1, 2))`, the power taken only
        where P is non-zero: elsewhere the product is a zero, and the sum adds the same
        terms in the same order."""
        deviation, nonzero = self._cluster_terms
        powered = np.zeros(deviation.shape)
        np.power(deviation, power, out=powered, where=nonzero)
        return np.sum(self.P_glcm * powered, (1, 2))

    @cached_property
    def _cluster_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """(i + j - ux - uy, P != 0), shared by cluster prominence and shade."""
        c = self.coefficients
        return (c["i"] + c["j"])[None, :, :, None] - c["ux"] - c["uy"], self.P_glcm != 0

    def getMCCFeatureValue(self):  # noqa: N802
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
    """pyradiomics' Q, (1, Ng, Ng, angles), adding only terms that can be non-zero.

    Q(i, j, a) sums p(i, k, a) p(j, k, a) / (px(i, a) py(k, a) + eps) over k, in increasing
    k; a term with a zero p is +0 and leaves the sum as it is. Two ways to skip them, the
    cheaper one chosen by counting: bands of rows per column (dense GLCMs) or pairs of
    non-zero entries (sparse ones).
    """
    nonzero = glcm[0] != 0  # (i, k, angle); NaN (an empty angle) counts, and propagates
    pairs = np.sum(np.sum(nonzero, axis=0, dtype=np.int64) ** 2)
    rows = nonzero.any(axis=2)
    present = rows.any(axis=0)
    first = np.argmax(rows, axis=0)
    last = rows.shape[0] - 1 - np.argmax(rows[::-1], axis=0)
    band = np.sum(np.where(present, last - first + 1, 0) ** 2) * glcm.shape[3]
    if band > PAIR_COST * pairs:
        return _q_by_pairs(glcm, px, py)
    return _q_by_bands(glcm, px, py)


def _q_by_bands(glcm: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Q with each column's term added over the band of rows where the column is non-zero."""
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


def _q_by_pairs(glcm: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Q from every pair of non-zero entries sharing a column and angle.

    The pairs are listed column by column, and `bincount` adds in input order, so each
    Q(i, j, a) receives its terms in increasing k, as pyradiomics adds them.
    """
    eps = np.spacing(1)
    p = glcm[0]
    ng, _, angles = p.shape
    k, a, i = np.nonzero(p.transpose(1, 2, 0))  # entries by column, then angle, then row
    values = p[i, k, a]
    denominators = px[0, i, 0, a] * py[0, 0, k, a] + eps
    group = k * angles + a
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, group.size])
    partners = np.repeat(sizes, sizes)  # each entry pairs with every entry of its group
    first = np.repeat(np.arange(group.size), partners)
    offset = np.cumsum(partners) - partners - np.repeat(starts, sizes)
    second = np.arange(first.size) - np.repeat(offset, partners)
    terms = (values[first] * values[second]) / denominators[first]
    cells = (i * (ng * angles) + a)[first] + (i * angles)[second]
    q = np.bincount(cells, weights=terms, minlength=ng * ng * angles)
    return q.reshape(1, ng, ng, angles)
