"""Study configs: the shipped examples validate; a bad key is named."""

from pathlib import Path

import pytest

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
    assert study.updated(model={"ridge_lambda": 1.0}).study_hash == study.study_hash


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
