"""Radiomic features of one case: every pyradiomics call of FedRad goes through here.

The values are those of `RadiomicsFeatureExtractor.execute(image, region_mask)` with the
study's settings - pyradiomics' own functions, in the same order - but what `execute`
repeats for every sequence x region is done once: reading the files, building the region
masks, normalizing each sequence, the B-spline prefilter of resampling (`resampling`),
each region's resampled grid and its checks (per mask, not per sequence), shape per
region, the region's cropped mask; diagnostics are skipped, and the bounding box
`checkMask` finds with whole-image statistics is found on the region's box. The feature
classes run through `feature_classes`: one discretization per filtered image x region for
all of them, and GLCM / first-order steps reorganized without changing a bit. So every
feature equals (==) plain pyradiomics, with one exception: without resampling, pyradiomics
filters the whole image once per region, FedRad filters a working volume around the
regions once per sequence (`working_volume`); wavelet features stay identical, LoG
features agree within float32 rounding of the LoG (tested at 1e-9 relative).

The rest of the code sees SimpleITK images in and `{column name: float}` out, named by
the feature-table contract; shape features, which depend on the mask only, are named with
the pseudo-sequence `mask`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics import getFeatureClasses, imageoperations
from radiomics.featureextractor import RadiomicsFeatureExtractor

from fedrad.common.config import ExtractionSettings
from fedrad.common.feature_table import feature_name
from fedrad.common.radiomics.feature_classes import compute_features
from fedrad.common.radiomics.resampling import RegionResampler
from fedrad.common.radiomics.working_volume import (
    Box,
    label_box,
    log_margin,
    union_box,
    wavelet_margin,
    window,
)

SHAPE_CLASS = "shape"
SHAPE_SEQUENCE = "mask"  # shape depends on the region only, not on any sequence

# pyradiomics logs INFO/WARNING per call: keep the terminal for FedRad, and skip building
# log records nobody reads
radiomics.setVerbosity(logging.ERROR)
logging.getLogger("radiomics").setLevel(logging.ERROR)


def make_extractor(settings: ExtractionSettings) -> RadiomicsFeatureExtractor:
    """A pyradiomics extractor with exactly the study's settings, filters and classes."""
    extractor = RadiomicsFeatureExtractor(**settings.pyradiomics_settings())
    extractor.disableAllImageTypes()  # `Original` is on by default; the study may leave it out
    extractor.enableImageTypes(**settings.pyradiomics_image_types())
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**enabled_features(settings))
    return extractor


def enabled_features(settings: ExtractionSettings) -> dict[str, list[str]]:
    """pyradiomics' `enabledFeatures` of the study: class -> its features, [] for all of them
    (every non-deprecated one), or the named ones when the study leaves some out."""
    return {
        name: extracted_features(settings, name) if name in settings.excluded_features else []
        for name in settings.feature_classes
    }


def extracted_features(settings: ExtractionSettings, name: str) -> list[str]:
    """The features of class `name` the study extracts: the non-deprecated ones it keeps."""
    excluded = settings.excluded_features.get(name, ())
    return [feature for feature in class_features(name) if feature not in excluded]


def filter_names(settings: ExtractionSettings) -> list[str]:
    """pyradiomics' names of the images the study's filters yield, e.g. `log-sigma-1-0-mm-3D`."""
    names = []
    for name in settings.filters:
        if name == "original":
            names.append("original")
        elif name == "log":
            names += [
                f"log-sigma-{str(sigma).replace('.', '-')}-mm-3D"
                for sigma in settings.log_sigmas_mm
            ]
        else:
            details = [a + b + c for a in "LH" for b in "LH" for c in "LH" if a + b + c != "LLL"]
            for level in range(1, settings.wavelet_level + 1):
                prefix = "wavelet" if level == 1 else f"wavelet{level}"
                names += [f"{prefix}-{detail}" for detail in details]
            last = "wavelet" if settings.wavelet_level == 1 else f"wavelet{settings.wavelet_level}"
            names.append(f"{last}-LLL")
    return names


def expected_columns(
    settings: ExtractionSettings,
    sequences: Sequence[str],
    regions: Sequence[str],
    shape: bool = True,
) -> set[str]:
    """Every feature column a case must yield for these sequences and regions (and, with
    `shape`, the regions' shape features)."""
    intensity = [
        f"{name}_{feature}"
        for name in settings.feature_classes
        if name != SHAPE_CLASS
        for feature in extracted_features(settings, name)
    ]
    columns = {
        f"{sequence}_{region}_{image}_{feature}"
        for sequence in sequences
        for region in regions
        for image in filter_names(settings)
        for feature in intensity
    }
    if shape and SHAPE_CLASS in settings.feature_classes:
        columns |= {
            f"{SHAPE_SEQUENCE}_{region}_original_{SHAPE_CLASS}_{feature}"
            for region in regions
            for feature in extracted_features(settings, SHAPE_CLASS)
        }
    return columns


@cache
def class_features(name: str) -> tuple[str, ...]:
    """A class's non-deprecated features; pyradiomics finds them by introspection on every
    call, so ask once per process."""
    names = getFeatureClasses()[name].getFeatureNames()
    return tuple(feature for feature, deprecated in names.items() if not deprecated)


def region_mask(labels: sitk.Image, values: Sequence[int]) -> sitk.Image:
    """Binary (label 1) UInt32 mask of the voxels carrying any of `values`."""
    inside = np.isin(sitk.GetArrayViewFromImage(labels), values).astype(np.uint32)
    mask = sitk.GetImageFromArray(inside)
    mask.CopyInformation(labels)
    return mask


@dataclass(frozen=True)
class _RegionView:
    """A region as pyradiomics sees it after loading: image and mask grid, bounding box."""

    image: sitk.Image
    mask: sitk.Image
    bbox: np.ndarray  # pyradiomics order: (Lx, Ux, Ly, Uy, Lz, Uz)
    cropped_mask: sitk.Image  # the mask cut to `bbox`, the same for every filtered image

    @property
    def box(self) -> Box:
        return self.bbox[0::2], self.bbox[1::2]


def extract_case(
    images: Mapping[str, sitk.Image],
    masks: Mapping[str, sitk.Image],
    regions: Mapping[str, Sequence[int]],
    settings: ExtractionSettings,
    shape: bool = True,
) -> dict[str, float]:
    """Features of every sequence x region x filter, e.g. `t1c_enhancing_original_glcm_Contrast`,
    and, with `shape`, each region's shape features (from the first sequence's grid).

    `masks[sequence]` is the case's label map on that sequence's grid and `regions` maps each
    region to its label values. Raises what pyradiomics raises (e.g. a region that vanishes
    after resampling).
    """
    extractor = make_extractor(settings)
    binary: dict[int, dict[str, sitk.Image]] = {}  # per distinct label map (usually one)
    grids: dict[int, dict[str, _RegionView]] = {}  # its regions' resampled grids
    features: dict[str, float] = {}
    for index, (sequence, image) in enumerate(images.items()):
        labels = masks[sequence]
        if id(labels) not in binary:
            binary[id(labels)] = {
                region: region_mask(labels, values) for region, values in regions.items()
            }
        features.update(
            _sequence(
                extractor,
                sequence,
                image,
                binary[id(labels)],
                grids.setdefault(id(labels), {}),
                settings,
                shape=shape and index == 0,
            )
        )
    return features


def _sequence(
    extractor: RadiomicsFeatureExtractor,
    sequence: str,
    image: sitk.Image,
    masks: Mapping[str, sitk.Image],
    grids: dict[str, _RegionView],
    settings: ExtractionSettings,
    shape: bool,
) -> dict[str, float]:
    kwargs = extractor.settings.copy()
    if settings.normalize:
        image = imageoperations.normalizeImage(image, **kwargs)
    resampler = RegionResampler(image, kwargs)
    views = {
        region: _view(resampler, mask, grids, region, kwargs) for region, mask in masks.items()
    }
    features: dict[str, float] = {}
    for region, view in views.items():
        if shape:
            values = extractor.computeShape(view.image, view.mask, view.bbox, **kwargs)
            features.update(_named(SHAPE_SEQUENCE, region, values))
    for region, image_name, cropped, cropped_mask, args in _filtered(
        image, views, settings, kwargs
    ):
        enabled = extractor.enabledFeatures
        values = compute_features(cropped, cropped_mask, image_name, enabled, **args)
        features.update(_named(sequence, region, values))
    return features


def _view(
    resampler: RegionResampler,
    mask: sitk.Image,
    grids: dict[str, _RegionView],
    region: str,
    kwargs: dict,
) -> _RegionView:
    """What `execute` does between loading and filtering: resample (if asked), check the ROI.

    A region grid another sequence already resampled this mask onto (`grids`) is reused:
    its mask, box and checks are the same, only the image is resampled onto it.
    """
    image = resampler.image
    regrids = kwargs["resampledPixelSpacing"] is not None and resampler.regrids(mask)
    if regrids and region in grids:
        return replace(grids[region], image=resampler.onto(grids[region].mask))
    if kwargs["resampledPixelSpacing"] is not None:
        image, mask = resampler.resample(mask)
    bbox = _check_mask(image, mask, kwargs)
    _, cropped_mask = imageoperations.cropToTumorMask(image, mask, bbox)
    view = _RegionView(image, mask, bbox, cropped_mask)
    if regrids:
        grids[region] = view
    return view


def _check_mask(image: sitk.Image, mask: sitk.Image, kwargs: dict) -> np.ndarray:
    """pyradiomics' `checkMask` bounding box, computed on the region's box only.

    `checkMask` gathers intensity statistics over the whole image to find the bounding box,
    for every sequence x region, which on a large volume costs more than the region's
    features (docs/extraction.md, section 6); on the region's box it finds the same box,
    shifted, and raises the same errors.
    """
    found = label_box(mask, kwargs["label"])
    if found is None:
        return imageoperations.checkMask(image, mask, **kwargs)[0]  # pyradiomics words it
    lower, upper = found
    box = tuple(slice(int(lo), int(up) + 1) for lo, up in zip(lower, upper, strict=True))
    bbox, _ = imageoperations.checkMask(image[box], mask[box], **kwargs)
    bbox[0::2] += lower
    bbox[1::2] += lower
    return bbox


def _filtered(
    image: sitk.Image, views: Mapping[str, _RegionView], settings: ExtractionSettings, kwargs: dict
) -> Iterator[tuple[str, str, sitk.Image, sitk.Image, dict]]:
    """(region, image name, cropped image, cropped mask, settings) for every filtered image."""
    for type_name, custom in settings.pyradiomics_image_types().items():
        args = {**kwargs, **custom}
        generate = getattr(imageoperations, f"get{type_name}Image")
        if settings.resampling or type_name == "Original":
            # each region has its own grid (resampled) or the original voxels need no filter
            for region, view in views.items():
                for filtered, name, inner in generate(view.image, view.mask, **args):
                    yield region, name, *_crop_from(filtered, np.zeros(3, int), view), inner
            continue
        box = union_box([view.box for view in views.values()])
        for (lower, upper), call_args in _working_windows(type_name, box, image, settings, args):
            volume = image[
                tuple(slice(int(lo), int(up) + 1) for lo, up in zip(lower, upper, strict=True))
            ]
            for filtered, name, inner in generate(volume, None, **call_args):
                for region, view in views.items():
                    yield region, name, *_crop_from(filtered, lower, view), inner


def _working_windows(
    type_name: str, box: Box, image: sitk.Image, settings: ExtractionSettings, args: dict
) -> Iterator[tuple[Box, dict]]:
    """(window, settings) of each filter call on the regions' joint `box`: one LoG call per
    sigma, each with its own margin (the widest sigma's would make the narrow ones filter up
    to three times the voxels), one wavelet call."""
    size = image.GetSize()
    if type_name == "LoG":
        for sigma in settings.log_sigmas_mm:
            margin = log_margin(sigma, image.GetSpacing())
            yield window(box, margin, size, periodic=False), {**args, "sigma": [sigma]}
    else:
        margin = wavelet_margin(settings.wavelet, settings.wavelet_level)
        yield window(box, margin, size, periodic=True), args


def _crop_from(
    filtered: sitk.Image, origin: np.ndarray, view: _RegionView
) -> tuple[sitk.Image, sitk.Image]:
    """The region's box out of a filtered image whose voxel (0, 0, 0) is the region grid's
    `origin`, on the grid pyradiomics' `cropToTumorMask` gives (its mask is cut once).

    Cut from the voxel array: the same voxels as SimpleITK's slicing, in a fifth of the
    time (a filter pipeline per crop, 144 crops per case)."""
    lower, upper = view.box[0] - origin, view.box[1] - origin
    box = tuple(slice(int(lo), int(up) + 1) for lo, up in zip(lower, upper, strict=True))
    cropped = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(filtered)[box[::-1]])
    cropped.CopyInformation(view.cropped_mask)
    return cropped, view.cropped_mask


def _named(sequence: str, region: str, values: Mapping[str, object]) -> dict[str, float]:
    return {_column(sequence, region, key): _real(value) for key, value in values.items()}


@cache
def _column(sequence: str, region: str, key: str) -> str:
    """The table column of a pyradiomics key; the same 13k names recur for every case."""
    filter_name, _ = key.split("_", 1)
    return feature_name(sequence, region, filter_name, key)


def _real(value: object) -> float:
    """Shape axis lengths can come back complex (eigenvalues of a symmetric matrix via `eig`,
    pyradiomics issue #843); their imaginary part is rounding noise, so keep the real part."""
    return float(np.real(value))
