"""Study configs: the shipped examples validate; a bad key is named."""

import shutil
from pathlib import Path

import pytest
import yaml

from fedrad.common.config import ConfigError, StudyConfig

EXAMPLES = sorted((Path(__file__).parents[2] / "simulations" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_studies_validate(path):
    study = StudyConfig.from_yaml(path)
    assert study.validation.scheme in path.read_text()


def test_unknown_and_invalid_keys_are_named(tmp_path):
    bad = tmp_path / "study.yaml"
    bad.write_text("validation:\n  scheme: sometimes\nmodel:\n  ridge_lamda: 1\n")
    with pytest.raises(ConfigError) as error:
        StudyConfig.from_yaml(bad)
    assert "validation.scheme" in str(error.value)
    assert "model.ridge_lamda" in str(error.value)


def test_changing_any_setting_changes_the_study_hash():
    study = StudyConfig()
    assert study.updated(model={"ridge_lambda": 2.0}).study_hash != study.study_hash
    assert study.updated(model={"ridge_lambda": None}).study_hash == study.study_hash
    assert study.updated(model={"ridge_lambdas": [1.0, 10.0]}).study_hash != study.study_hash


def test_a_ridge_grid_is_kept_largest_first_and_needs_two_penalties():
    study = StudyConfig(model={"ridge_lambdas": [1.0, 10.0, 1.0, 0.1]})
    assert study.model.ridge_lambdas == (10.0, 1.0, 0.1)
    assert study.ridge_penalty is None and study.tunes_penalty
    with pytest.raises(ValueError, match="at least two distinct penalties"):
        StudyConfig(model={"ridge_lambdas": [3.0, 3.0]})
    noised = StudyConfig(differential_privacy={})  # each noised step its own release: fixed
    assert noised.ridge_penalty == 1.0 and not noised.tunes_penalty and not noised.recalibrates


@pytest.mark.parametrize("strategy", ["fedmedian", "fedtrimmedavg", "krum"])
def test_a_strategy_that_reads_each_sites_weights_is_refused_under_secure_aggregation(
    tmp_path, strategy
):
    study = tmp_path / "study.yaml"
    study.write_text(f"model:\n  kind: mlp\n  strategy: {strategy}\n")
    with pytest.raises(ConfigError) as error:
        StudyConfig.from_yaml(study)
    assert f"model.strategy: {strategy} needs each site's network weights" in str(error.value)
    assert "use fedavg or fedprox" in str(error.value)
    assert "federation.secure_aggregation: false" in str(error.value)
    plain = StudyConfig(
        model={"kind": "mlp", "strategy": strategy}, federation={"secure_aggregation": False}
    )
    assert plain.model.strategy == strategy


def test_the_mlp_step_bound_covers_what_each_strategy_makes_of_clipped_updates():
    clip = StudyConfig().model.mlp_update_clip
    bounds = {
        strategy: StudyConfig(
            model={"kind": "mlp", "strategy": strategy, "trim_fraction": 0.25},
            federation={"secure_aggregation": False},
        ).model.mlp_step_bound
        for strategy in ("fedavg", "fedprox", "krum", "fedmedian", "fedtrimmedavg")
    }
    assert bounds["fedavg"] == bounds["fedprox"] == bounds["krum"] == clip
    assert bounds["fedmedian"] == pytest.approx(clip * 2**0.5)
    assert bounds["fedtrimmedavg"] == pytest.approx(clip * 2**0.5)  # 1 / sqrt(1 - 2 * 0.25)


PYRADIOMICS_MR_3MM = (
    Path(__file__).parent / "radiomics" / "pyradiomics_params" / "exampleMR_3mm.yaml"
)
MR_3MM_KEYS = {  # its translation (tests/common/radiomics/test_params_file.py)
    "bin_width": 5,
    "normalize": True,
    "normalize_scale": 100,
    "voxel_array_shift": 300,
    "resampled_spacing_mm": [2, 2, 2],
    "interpolator": "bspline",
    "crop_padding": 5,
    "filters": ["original", "log", "wavelet"],
    "log_sigmas_mm": [2.0, 3.0, 4.0, 5.0],
    "wavelet": "coif1",
    "wavelet_level": 1,
    "feature_classes": ["firstorder", "shape", "glcm", "glrlm", "glszm", "gldm"],
    "excluded_features": {"glcm": ["MCC", "SumAverage"]},
}


def study_file(folder: Path, extraction: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(yaml.safe_dump({"extraction": extraction}))
    return folder / "study.yaml"


def test_a_study_naming_a_pyradiomics_file_is_the_study_written_with_its_translation(
    tmp_path, monkeypatch
):
    (tmp_path / "params").mkdir()
    shutil.copy(PYRADIOMICS_MR_3MM, tmp_path / "params" / "mr.yaml")
    named = study_file(
        tmp_path / "study", {"pyradiomics_params": "../params/mr.yaml", "sequences": ["flair"]}
    )
    written = study_file(tmp_path / "written", {**MR_3MM_KEYS, "sequences": ["flair"]})
    monkeypatch.chdir(tmp_path / "params")  # the path is the study file's, not the shell's
    study = StudyConfig.from_yaml(named)
    assert study == StudyConfig.from_yaml(written)
    assert study.study_hash == StudyConfig.from_yaml(written).study_hash
    assert study.extraction_hash != StudyConfig().extraction_hash


def test_a_study_without_left_out_features_keeps_its_hash():
    study = StudyConfig()
    assert "excluded_features" not in study.model_dump()["extraction"]
    assert study.updated(extraction={"excluded_features": {}}).study_hash == study.study_hash
    left_out = study.updated(extraction={"excluded_features": {"glcm": ["MCC"]}})
    assert left_out.study_hash != study.study_hash


@pytest.mark.parametrize(
    ("excluded", "message"),
    [
        ({"glrlm": ["RunEntropy"]}, "glrlm is not in feature_classes"),
        ({"glcm": ["SumVariance"]}, "['SumVariance'] not among the features FedRad extracts"),
        ({"firstorder": []}, "leave out some but not all"),
    ],
)
def test_left_out_features_must_be_features_the_study_extracts(excluded, message):
    with pytest.raises(ValueError) as error:
        StudyConfig().updated(extraction={"excluded_features": excluded})
    assert message in str(error.value)


def test_a_missing_pyradiomics_file_is_named_relative_to_the_study_file(tmp_path):
    study = study_file(tmp_path, {"pyradiomics_params": "params.yaml"})
    with pytest.raises(ConfigError) as error:
        StudyConfig.from_yaml(study)
    assert f"extraction.pyradiomics_params: no file {tmp_path / 'params.yaml'}" in str(error.value)
    assert "relative to the study file's folder" in str(error.value)


def test_a_study_setting_a_translated_key_otherwise_is_refused_naming_both(tmp_path):
    shutil.copy(PYRADIOMICS_MR_3MM, tmp_path / "mr.yaml")
    same = study_file(tmp_path / "same", {"pyradiomics_params": "../mr.yaml", "bin_width": 5})
    assert StudyConfig.from_yaml(same).extraction.bin_width == 5
    other = study_file(tmp_path / "other", {"pyradiomics_params": "../mr.yaml", "bin_width": 10})
    with pytest.raises(ConfigError) as error:
        StudyConfig.from_yaml(other)
    assert f"extraction.bin_width: 10 in {other}, but {tmp_path / 'other' / '../mr.yaml'}" in str(
        error.value
    )


def test_params_on_a_study_apply_where_it_sets_nothing_and_are_refused_where_it_differs(tmp_path):
    plain = StudyConfig.from_yaml(study_file(tmp_path / "a", {"sequences": ["flair"]}))
    applied = plain.with_pyradiomics_params(PYRADIOMICS_MR_3MM)
    assert applied.extraction.sequences == ("flair",) and applied.extraction.bin_width == 5
    assert applied.validation == plain.validation
    binned = StudyConfig.from_yaml(study_file(tmp_path / "b", {"bin_width": 3}))
    with pytest.raises(ConfigError) as error:
        binned.with_pyradiomics_params(PYRADIOMICS_MR_3MM)
    assert "extraction.bin_width: 3.0 in the study config" in str(error.value)


def test_an_unknown_key_is_answered_with_the_close_known_key_of_its_section(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(
        "modle: {}\nmodel:\n  ridge_lamda: 1\ndifferential_privacy:\n  noise_multipler: 1\n"
        "validation:\n  whatever: 1\n"
    )
    with pytest.raises(ConfigError) as error:
        StudyConfig.from_yaml(study)
    lines = str(error.value).splitlines()
    assert lines[0] == f"invalid study config {study}:"
    assert "  modle: Extra inputs are not permitted (did you mean 'model'?)" in lines
    assert "  model.ridge_lamda: Extra inputs are not permitted (did you mean 'ridge_lambda'?)" in (
        lines
    )
    assert (
        "  differential_privacy.noise_multipler: Extra inputs are not permitted "
        "(did you mean 'noise_multiplier'?)"
    ) in lines
    assert "  validation.whatever: Extra inputs are not permitted" in lines
