"""The study every command loads: `--study` and `--params` together, bad input exits 2."""

from pathlib import Path

import pytest
import typer

from fedrad.common.cli_support import load_study
from fedrad.common.config import StudyConfig

MR_3MM = Path(__file__).parent / "radiomics" / "pyradiomics_params" / "exampleMR_3mm.yaml"


def test_params_alone_apply_to_the_built_in_study():
    study = load_study(None, MR_3MM)
    assert study == StudyConfig().with_pyradiomics_params(MR_3MM)
    assert study.extraction.bin_width == 5 and study.extraction.sequences == ("t1c", "flair")


def test_a_params_file_fedrad_cannot_use_exits_2_naming_its_setting(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("featureClass: {glcm: }\nsetting: {force2D: true}\n")
    with pytest.raises(typer.Exit) as exit_:
        load_study(None, params)
    assert exit_.value.exit_code == 2
    assert "setting.force2D: True is not offered" in " ".join(capsys.readouterr().err.split())
