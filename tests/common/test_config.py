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
