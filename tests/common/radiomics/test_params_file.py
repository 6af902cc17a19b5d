"""pyradiomics parameter files read as FedRad extraction settings: pyradiomics' own example
files (tests/common/radiomics/pyradiomics_params, BSD-3) translate or are refused naming the
setting, every setting and image type pyradiomics knows is mapped or refused by name, and
the MR and CT examples extract exactly (==) what pyradiomics extracts with the file itself
(on a small simulated case: 1132, 960 and 1218 features)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import threadpoolctl
import yaml
from radiomics import getImageTypes
from radiomics.featureextractor import RadiomicsFeatureExtractor
from radiomics.schemas import __path__ as schema_folder

from fedrad.common.config import ConfigError, ExtractionSettings
from fedrad.common.radiomics.features import expected_columns, extract_case
from fedrad.common.radiomics.params_file import (
    FIXED,
    IMAGE_TYPES,
    NOT_OFFERED,
    OTHER_IMAGE_TYPES,
    SETTINGS,
    read_params_file,
    translate,
)
from fedrad.simulations.synth.cohort import simulate_case
from fedrad.simulations.synth.site import draw_site_profile

EXAMPLES = Path(__file__).parent / "pyradiomics_params"
GLCM_LEFT_OUT = {"glcm": ["MCC", "SumAverage"]}  # the examples list GLCM features without them


def translated(name: str) -> dict:
    return translate(read_params_file(EXAMPLES / name), EXAMPLES / name)


def refusal(params: dict) -> str:
    with pytest.raises(ConfigError) as refused:
        translate(params, Path("params.yaml"))
    assert str(refused.value).startswith("pyradiomics parameter file params.yaml:")
    return str(refused.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "exampleMR_3mm.yaml",
            {
                "bin_width": 5,
                "normalize": True,
                "normalize_scale": 100,
                "voxel_array_shift": 300,
                "resampled_spacing_mm": [2, 2, 2],
                "interpolator": "bspline",
                "filters": ["original", "log", "wavelet"],
                "log_sigmas_mm": [2.0, 3.0, 4.0, 5.0],
                "excluded_features": GLCM_LEFT_OUT,
            },
        ),
        ("exampleMR_5mm.yaml", {"resampled_spacing_mm": [3, 3, 3], "log_sigmas_mm": [3.0, 5.0]}),
        (
            "exampleCT.yaml",
            {"normalize": False, "crop_padding": 10, "voxel_array_shift": 1000, "bin_width": 25},
        ),
        (
            "Params.yaml",
            {"resampled_spacing_mm": None, "filters": ["original"], "bin_width": 25},
        ),
    ],
)
def test_example_files_within_fedrad_translate_to_its_keys(name, expected):
    keys = translated(name)
    assert {key: keys[key] for key in expected} == expected
    assert keys["feature_classes"] == ["firstorder", "shape", "glcm", "glrlm", "glszm", "gldm"]
    ExtractionSettings.model_validate(keys)


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("exampleMR_NoResampling.yaml", ["setting.force2D", "setting.preCrop"]),
        ("MR_2D_extraction.yaml", ["setting.force2D", "featureClass.shape2D", "0 keeps an axis"]),
        ("exampleVoxel.yaml", ["voxelSetting.kernelRadius", "voxelSetting.voxelBatch"]),
    ],
)
def test_example_files_beyond_fedrad_are_refused_naming_each_setting(name, refused):
    with pytest.raises(ConfigError) as error:
        translated(name)
    message = str(error.value)
    assert name in message.splitlines()[0]
    assert all(setting in message for setting in refused), message


def test_every_pyradiomics_setting_and_image_type_is_mapped_or_refused_by_name():
    schema = yaml.safe_load((Path(schema_folder[0]) / "paramSchema.yaml").read_text())
    assert set(SETTINGS) == set(schema["mapping"]["setting"]["mapping"])
    assert {*IMAGE_TYPES, *OTHER_IMAGE_TYPES} == set(getImageTypes())


@pytest.mark.parametrize(
    ("setting", "value"),
    [("label", 2), ("binCount", 32), ("force2D", True), ("weightingNorm", "manhattan")],
)
def test_a_setting_fedrad_fixes_is_refused_unless_at_its_value_with_the_reason(setting, value):
    base = {"featureClass": {"firstorder": None}}
    translate({**base, "setting": {setting: FIXED[setting][0]}}, Path("params.yaml"))
    message = refusal({**base, "setting": {setting: value}})
    assert f"setting.{setting}: {value!r} is not offered: {FIXED[setting][1]}" in message


def test_settings_of_filters_fedrad_lacks_and_their_image_types_are_refused():
    square = {"imageType": {"Square": {}}, "featureClass": {"shape": None}}
    message = refusal({**square, "setting": {"lbp2DRadius": 1}})
    assert "imageType.Square: FedRad's filters are Original, LoG, Wavelet" in message
    assert f"setting.lbp2DRadius: {NOT_OFFERED['lbp2DRadius']}" in message


def test_unknown_names_are_refused_with_the_closest_pyradiomics_name():
    message = refusal(
        {
            "settings": {},
            "setting": {"binwidth": 5},
            "featureClass": {"glcm": ["Contarst"], "firstorde": None},
        }
    )
    assert "settings: not a pyradiomics name; did you mean setting?" in message
    assert "setting.binwidth: not a pyradiomics name; did you mean binWidth?" in message
    assert "featureClass.glcm.Contarst: not a glcm feature; did you mean Contrast?" in message
    assert "featureClass.firstorde: not a pyradiomics name; did you mean firstorder?" in message


def test_a_filter_custom_setting_other_than_its_own_is_refused():
    message = refusal(
        {"imageType": {"LoG": {"sigma": [1.0], "binWidth": 5}}, "featureClass": {"glcm": None}}
    )
    assert "imageType.LoG.binWidth: FedRad applies one set of settings to every filter" in message


def test_left_out_settings_take_pyradiomics_defaults_and_filter_settings_come_from_setting():
    keys = translate(
        {
            "imageType": {"LoG": {}, "Wavelet": {"level": 2}},
            "featureClass": {"firstorder": []},
            "setting": {"sigma": [1.5], "wavelet": "haar"},
        },
        Path("params.yaml"),
    )
    assert keys["bin_width"] == 25 and keys["normalize"] is False and keys["crop_padding"] == 5
    assert keys["resampled_spacing_mm"] is None and keys["excluded_features"] == {}
    assert keys["filters"] == ["log", "wavelet"] and keys["log_sigmas_mm"] == [1.5]
    assert (keys["wavelet"], keys["wavelet_level"]) == ("haar", 2)


def test_a_file_naming_no_class_or_a_deprecated_feature_is_refused():
    assert "featureClass: none listed" in refusal({"setting": {"binWidth": 5}})
    message = refusal({"featureClass": {"shape": ["Sphericity", "Compactness1"]}})
    assert "featureClass.shape.Compactness1: deprecated in pyradiomics" in message


def test_a_value_fedrad_refuses_is_named_by_the_file_setting():
    message = refusal({"featureClass": {"glcm": None}, "setting": {"binWidth": -1}})
    assert "setting.binWidth: Input should be greater than 0" in message


@pytest.fixture(scope="module")
def small_case(tmp_path_factory) -> tuple[sitk.Image, sitk.Image, Path, Path]:
    """A simulated case on an anisotropic grid (so resampling interpolates), as files too:
    pyradiomics' extractor reads the image and mask from paths."""
    case = simulate_case(0, draw_site_profile(0, 1), 0, 32, ("flair",))

    def image(array: np.ndarray) -> sitk.Image:
        volume = sitk.GetImageFromArray(array)
        volume.SetSpacing(case.grid.spacing)
        volume.SetOrigin(case.grid.origin)
        return volume

    folder = tmp_path_factory.mktemp("case")
    flair, mask = image(case.images["flair"]), image(case.mask)
    sitk.WriteImage(flair, str(folder / "flair.nrrd"))
    sitk.WriteImage(mask, str(folder / "mask.nrrd"))
    return flair, mask, folder / "flair.nrrd", folder / "mask.nrrd"


@pytest.mark.parametrize("name", ["exampleMR_3mm.yaml", "exampleMR_5mm.yaml", "exampleCT.yaml"])
def test_an_example_file_extracts_what_pyradiomics_extracts_with_it(small_case, name):
    flair, mask, flair_file, mask_file = small_case
    params = EXAMPLES / name
    settings = ExtractionSettings.model_validate(
        {**translated(params.name), "sequences": ["flair"], "regions": {"enhancing": "enhancing"}}
    )
    with threadpoolctl.threadpool_limits(1):
        ours = extract_case({"flair": flair}, {"flair": mask}, {"enhancing": (1,)}, settings)
        theirs = RadiomicsFeatureExtractor(str(params)).execute(str(flair_file), str(mask_file))
    assert set(ours) == expected_columns(settings, ["flair"], ["enhancing"])
    theirs = {
        key: float(np.real(value))
        for key, value in theirs.items()
        if not key.startswith("diagnostics_")
    }
    ours = {
        name.removeprefix("flair_enhancing_").removeprefix("mask_enhancing_"): value
        for name, value in ours.items()
    }
    assert ours.keys() == theirs.keys() and len(ours) > 900
    assert all(math.isfinite(value) for value in ours.values())
    different = {name: (ours[name], theirs[name]) for name in ours if ours[name] != theirs[name]}
    assert not different, f"{len(different)} of {len(ours)} differ, e.g. {different}"


def test_a_json_file_is_read_as_json(tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{\n\t"featureClass": {"glcm": null},\n\t"setting": {"binWidth": 3}\n}\n')
    assert translate(read_params_file(params), params)["bin_width"] == 3


def test_a_section_or_filter_that_is_not_a_mapping_is_refused_naming_it():
    message = refusal(
        {"setting": [1], "imageType": {"LoG": [1.0]}, "featureClass": {"glcm": "Contrast"}}
    )
    assert "setting: expected a mapping of names to values" in message
    assert "imageType.LoG: give its custom settings as a mapping" in message
    assert "featureClass.glcm: give a list of feature names, or nothing" in message
