"""Resample an image onto each region's grid exactly as pyradiomics does, prefiltering once.

pyradiomics' `resampleImage` gives every region its own grid (the region's box plus
`padDistance`, on a lattice anchored at the mask's origin). With a B-spline interpolator,
ITK first computes the B-spline coefficients of the whole input image - for every region
again. Here they are computed once per image, and each region's grid is then filled by
ITK's B-spline *resampler*, which evaluates the same spline from those coefficients: the
voxels are bit-identical (tested against pyradiomics), at a fraction of the cost on large
volumes, where the decomposition of the whole image dominates (docs/extraction.md, section
6). Sequences sharing a mask share
its region grids: pyradiomics derives a region's grid from the mask alone, so after the
first sequence only the image is resampled (`onto`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from radiomics import imageoperations

from fedrad.common.radiomics.working_volume import label_box


class RegionResampler:
    """`resample(mask)` == `imageoperations.resampleImage(image, mask, **kwargs)`."""

    def __init__(self, image: sitk.Image, kwargs: dict):
        self.image = image
        self.kwargs = kwargs
        self._coefficients: sitk.Image | None = None

    def resample(self, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
        if not self.regrids(mask):
            return imageoperations.resampleImage(self.image, mask, **self.kwargs)
        settings = {**self.kwargs, "interpolator": sitk.sitkBSplineResampler}
        image, mask = imageoperations.resampleImage(self.coefficients, mask, **settings)
        return sitk.Cast(image, self.image.GetPixelID()), mask

    def regrids(self, mask: sitk.Image) -> bool:
        """Whether `resample` puts the region on a new grid with the B-spline: the grid then
        depends on the mask alone, and `onto` can fill it for another image."""
        return self.kwargs["interpolator"] == "sitkBSpline" and not self._keeps_spacing(mask)

    def onto(self, grid: sitk.Image) -> sitk.Image:
        """The image on `grid`, the resampled region mask `resample` returned for another
        image with the same mask: its image, without resampling and checking the mask again."""
        image = sitk.Resample(
            self.coefficients,
            grid,
            sitk.Transform(),
            sitk.sitkBSplineResampler,
            0.0,
            self.coefficients.GetPixelID(),
        )
        return sitk.Cast(image, self.image.GetPixelID())

    @property
    def coefficients(self) -> sitk.Image:
        """Cubic B-spline coefficients of the image, in double as ITK's interpolator keeps them."""
        if self._coefficients is None:
            decomposition = sitk.BSplineDecompositionImageFilter()
            decomposition.SetSplineOrder(3)
            self._coefficients = decomposition.Execute(sitk.Cast(self.image, sitk.sitkFloat64))
        return self._coefficients

    def _keeps_spacing(self, mask: sitk.Image) -> bool:
        """pyradiomics' shortcut: when the target spacing is the image's, it only resamples the
        mask and crops the image itself. Same test as `resampleImage` (axes the region spans
        with a single voxel keep the mask's spacing)."""
        target = np.asarray(self.kwargs["resampledPixelSpacing"], dtype=float)
        mask_spacing = np.array(mask.GetSpacing())
        target = np.where(target == 0, mask_spacing, target)
        box = label_box(mask, self.kwargs["label"])
        if box is not None:
            target = np.where(box[1] - box[0] + 1 != 1, target, mask_spacing)
        return bool(np.allclose(np.array(self.image.GetSpacing()), target))
