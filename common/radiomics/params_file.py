"""A pyradiomics parameter file read as the FedRad extraction settings it stands for.

Radiomics groups keep their extraction in pyradiomics parameter files (`imageType`,
`featureClass`, `setting`, `voxelSetting`). FedRad translates such a file into its own
`extraction:` keys, so a study is the same study (same settings, same hash) whether it
names the file or writes the translation out; the file itself is not part of the study.
A setting the file leaves out means pyradiomics' default, as it does for pyradiomics.
What FedRad cannot honour is refused by name, with why, never extracted differently.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from fedrad.common.config import (
    FEATURE_CLASSES,
    SITK_INTERPOLATORS,
    ConfigError,
    ExtractionSettings,
)

SECTIONS = ("imageType", "featureClass", "setting", "voxelSetting")

# pyradiomics setting -> (FedRad key, pyradiomics' default, which the key takes when absent)
MAPPED = {
    "binWidth": ("bin_width", 25),
    "normalize": ("normalize", False),
    "normalizeScale": ("normalize_scale", 1),
    "voxelArrayShift": ("voxel_array_shift", 0),
    "resampledPixelSpacing": ("resampled_spacing_mm", None),
    "interpolator": ("interpolator", "sitkBSpline"),
    "padDistance": ("crop_padding", 5),
}
# read when given: it decides which grids are equal (site QC), not what a feature is
GEOMETRY_TOLERANCE = ("geometryTolerance", "geometry_tolerance")
FILTER_SETTINGS = {"sigma": "log_sigmas_mm", "wavelet": "wavelet", "level": "wavelet_level"}

_REGIONS = "FedRad builds each region's mask with label 1 from the site's label values"
_THREE_D = "FedRad extracts 3-D features only"
_RESEGMENT = "FedRad does not resegment regions by intensity"
# settings FedRad fixes: accepted at FedRad's value (pyradiomics' default unless said), else why
FIXED = {
    "label": (1, _REGIONS + " (regions are set under extraction.regions)"),
    "label_channel": (0, _REGIONS + " (one 3-D label map per case)"),
    "additionalInfo": (
        False,
        "diagnostics describe a site's own files and never leave it; FedRad keeps provenance",
    ),
    "minimumROIDimensions": (2, "FedRad checks regions with pyradiomics' default, 2"),
    "minimumROISize": (None, "FedRad's QC sets the smallest region: use min_region_voxels"),
    "correctMask": (
        False,
        "FedRad resamples a mask onto its image within mask_resample_tolerance_mm: set that",
    ),
    "removeOutliers": (None, "FedRad normalizes without clipping outliers"),
    "binCount": (None, "FedRad bins by a fixed width (binWidth), the same bins at every site"),
    "distances": ([1], "FedRad's texture matrices pair neighbours at distance 1"),
    "force2D": (False, _THREE_D),
    "force2Ddimension": (0, _THREE_D + " (this applies with force2D)"),
    "resegmentRange": (None, _RESEGMENT),
    "resegmentMode": ("absolute", _RESEGMENT),
    "resegmentShape": (False, _RESEGMENT),
    "preCrop": (False, "FedRad crops around the regions itself (docs/extraction.md 5)"),
    "start_level": (0, "FedRad keeps every wavelet level from the first"),
    "symmetricalGLCM": (True, "FedRad's GLCM is symmetrical"),
    "weightingNorm": (None, "FedRad averages texture features over directions unweighted"),
    "gldm_a": (0, "FedRad's GLDM counts neighbours of equal grey level only"),
}
_NO_FILTER = "a setting of the {} filter, which FedRad does not have"
NOT_OFFERED = {
    "gradientUseSpacing": _NO_FILTER.format("Gradient"),
    **{name: _NO_FILTER.format("LBP2D") for name in ("lbp2DRadius", "lbp2DSamples", "lbp2DMethod")},
    **{
        name: _NO_FILTER.format("LBP3D")
        for name in ("lbp3DLevels", "lbp3DIcosphereRadius", "lbp3DIcosphereSubdivision")
    },
}
SETTINGS = (*MAPPED, GEOMETRY_TOLERANCE[0], *FILTER_SETTINGS, *FIXED, *NOT_OFFERED)
VOXEL_BASED = "FedRad extracts one value per region; voxel-based feature maps are not offered"

IMAGE_TYPES = {"Original": "original", "LoG": "log", "Wavelet": "wavelet"}
OTHER_IMAGE_TYPES = (
    "Square",
    "SquareRoot",
    "Logarithm",
    "Exponential",
    "Gradient",
    "LBP2D",
    "LBP3D",
)
CUSTOM = {"Original": (), "LoG": ("sigma",), "Wavelet": ("wavelet", "level", "start_level")}


def read_params_file(path: Path) -> dict:
    """The file's sections: JSON for a `.json` file (pyradiomics' `loadJSONParams`), else YAML."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read pyradiomics parameter file {path}: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"pyradiomics parameter file {path}: expected a mapping of sections")
    return data or {}


def translate(params: Mapping, source: Path) -> dict:
    """FedRad's extraction keys for pyradiomics `params`; a ConfigError names every setting of
    `source` FedRad cannot honour, one line each, with why."""
    problems = _unknown(params, SECTIONS, "")
    sections = {name: _section(params, name, problems) for name in SECTIONS}
    settings = sections["setting"]
    problems += _unknown(settings, SETTINGS, "setting.")
    problems += [f"voxelSetting.{name}: {VOXEL_BASED}" for name in sections["voxelSetting"]]
    translated = _settings(settings, problems)
    translated |= _image_types(sections["imageType"], settings, problems)
    translated |= _feature_classes(sections["featureClass"], problems)
    if not problems:
        problems += _invalid_values(translated)
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigError(f"pyradiomics parameter file {source}: FedRad cannot use\n{lines}")
    return translated


def with_params_file(extraction: Mapping, params_path: Path, study: str) -> dict:
    """A study's `extraction` keys as written, with those `params_path` translates to; a key
    both give differently is refused, naming both (`study` says where the keys come from)."""
    translated = translate(read_params_file(params_path), params_path)
    clashes = [
        f"extraction.{key}: {extraction[key]!r} in {study}, but {params_path} gives {value!r}"
        for key, value in translated.items()
        if key in extraction and extraction[key] != value
    ]
    if clashes:
        raise ConfigError(
            "the study's extraction settings and its pyradiomics parameter file disagree "
            "(set each in one place):\n" + "\n".join(f"  {clash}" for clash in clashes)
        )
    return {**extraction, **translated}


def _section(params: Mapping, name: str, problems: list[str]) -> Mapping:
    """A section's names and values; empty when absent, or when not a mapping (said why)."""
    section = params.get(name) or {}
    if isinstance(section, Mapping):
        return section
    problems.append(f"{name}: expected a mapping of names to values")
    return {}


def _unknown(section: Mapping, known: tuple[str, ...], prefix: str) -> list[str]:
    return [
        f"{prefix}{name}: not a pyradiomics name{_did_you_mean(name, known)}"
        for name in section
        if name not in known
    ]


def _did_you_mean(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _settings(settings: Mapping, problems: list[str]) -> dict:
    translated = {key: settings.get(name, default) for name, (key, default) in MAPPED.items()}
    interpolator = translated["interpolator"]
    by_sitk_name = {sitk_name: key for key, sitk_name in SITK_INTERPOLATORS.items()}
    if not isinstance(interpolator, str) or interpolator not in by_sitk_name:
        problems.append(
            f"setting.interpolator: {interpolator!r} is not offered; FedRad's are "
            f"{', '.join(by_sitk_name)} (by name)"
        )
    translated["interpolator"] = by_sitk_name.get(str(interpolator), interpolator)
    spacing = translated["resampled_spacing_mm"]
    if isinstance(spacing, list) and 0 in spacing:
        problems.append(
            "setting.resampledPixelSpacing: 0 keeps an axis' own spacing, which differs "
            "between sites; FedRad resamples every axis to a given spacing"
        )
    name, key = GEOMETRY_TOLERANCE
    if name in settings:
        translated[key] = settings[name]
    for name, (value, reason) in FIXED.items():
        if name in settings and settings[name] != value:
            problems.append(f"setting.{name}: {settings[name]!r} is not offered: {reason}")
    problems += [f"setting.{name}: {NOT_OFFERED[name]}" for name in settings if name in NOT_OFFERED]
    return translated


def _image_types(image_types: Mapping, settings: Mapping, problems: list[str]) -> dict:
    """`filters` and the filters' own keys; pyradiomics' custom settings of a filter override
    the `setting` section's, and no image type means Original alone."""
    problems += _unknown(image_types, (*IMAGE_TYPES, *OTHER_IMAGE_TYPES), "imageType.")
    enabled = [name for name in IMAGE_TYPES if name in image_types] or ["Original"]
    translated: dict = {"filters": [IMAGE_TYPES[name] for name in enabled]}
    for name in image_types:
        if name in OTHER_IMAGE_TYPES:
            problems.append(f"imageType.{name}: FedRad's filters are {', '.join(IMAGE_TYPES)}")
    for name in enabled:
        custom = image_types.get(name) or {}
        if not isinstance(custom, Mapping):
            problems.append(f"imageType.{name}: give its custom settings as a mapping, or {{}}")
            continue
        for key in custom:
            if key not in CUSTOM[name]:
                problems.append(
                    f"imageType.{name}.{key}: FedRad applies one set of settings to every "
                    f"filter, so a {name}-only {key} cannot be honoured (set it under `setting`)"
                )
        if custom.get("start_level", 0) != 0:
            problems.append(f"imageType.{name}.start_level: {FIXED['start_level'][1]}")
        own = {**settings, **custom}
        if name == "LoG":
            if not own.get("sigma"):
                problems.append("imageType.LoG: no sigma, so pyradiomics computes no LoG image")
            translated["log_sigmas_mm"] = own.get("sigma")
        if name == "Wavelet":
            translated["wavelet"] = own.get("wavelet", "coif1")
            translated["wavelet_level"] = own.get("level", 1)
    return translated


def _feature_classes(classes: Mapping, problems: list[str]) -> dict:
    """`feature_classes` (in FedRad's order) and `excluded_features`: a class listing some of
    its features leaves out the others, as pyradiomics does."""
    from radiomics import getFeatureClasses

    offered = getFeatureClasses()
    problems += _unknown(classes, tuple(offered), "featureClass.")
    if not classes:
        problems.append(
            "featureClass: none listed, which pyradiomics reads as every class, shape2D "
            f"included; {_THREE_D}, so list the classes"
        )
    excluded = {}
    for name, features in classes.items():
        if name == "shape2D":
            problems.append(f"featureClass.shape2D: {_THREE_D}")
        if name not in FEATURE_CLASSES or not features:
            continue
        if not isinstance(features, list):
            problems.append(f"featureClass.{name}: give a list of feature names, or nothing")
            continue
        names = offered[name].getFeatureNames()
        for feature in features:
            if not isinstance(feature, str) or feature not in names:
                problems.append(
                    f"featureClass.{name}.{feature}: not a {name} feature"
                    f"{_did_you_mean(feature, tuple(names))}"
                )
            elif names[feature]:
                problems.append(
                    f"featureClass.{name}.{feature}: deprecated in pyradiomics (it repeats "
                    "another feature), and FedRad extracts no deprecated feature"
                )
        left_out = [f for f, deprecated in names.items() if not deprecated and f not in features]
        if left_out:
            excluded[name] = left_out
    return {
        "feature_classes": [name for name in FEATURE_CLASSES if name in classes],
        "excluded_features": excluded,
    }


def _invalid_values(translated: Mapping) -> list[str]:
    """What ExtractionSettings refuses in the translation, named by the file's setting."""
    named = {key: f"setting.{name}" for name, (key, _) in MAPPED.items()}
    named |= {key: f"setting (or imageType).{name}" for name, key in FILTER_SETTINGS.items()}
    named[GEOMETRY_TOLERANCE[1]] = f"setting.{GEOMETRY_TOLERANCE[0]}"
    named |= {"filters": "imageType", "feature_classes": "featureClass"}
    try:
        ExtractionSettings.model_validate(translated)
    except ValidationError as exc:
        return [
            f"{named.get(str(error['loc'][0]) if error['loc'] else '', 'featureClass')}"
            f"{''.join(f'[{part}]' for part in error['loc'][1:])}: {error['msg']}"
            for error in exc.errors()
        ]
    return []
