"""A feature table CSV is read with the delimiter it uses, and a column the options or the
study name but the table lacks is answered with the close header it has."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedrad.common.config import ConfigError, StudyConfig
from fedrad.simulations.feature_tables import read_table

ROWS = [
    ["Label", "site", "f1"],
    *[[label, "a", str(i)] for i, label in enumerate(["HGG", "BM"] * 3)],
]


def table(folder: Path, delimiter: str) -> Path:
    path = folder / "table.csv"
    path.write_text("".join(delimiter.join(row) + "\n" for row in ROWS))
    return path


def test_a_semicolon_table_is_read_as_such(tmp_path: Path):
    result = read_table(table(tmp_path, ";"), "Label", StudyConfig(), site_column="site")
    assert list(result.features.columns) == ["f1"] and len(result.rows) == 6


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        (
            ("label",),
            "--label-column 'label' is not a column of {path} (read as tab-separated) "
            "(did you mean 'Label'?)",
        ),
        (
            ("Label", "sites"),
            "--site-column 'sites' is not a column of {path} (read as "
            "tab-separated) (did you mean 'site'?)",
        ),
    ],
)
def test_a_missing_column_names_the_delimiter_and_the_close_header(
    tmp_path: Path, arguments: tuple[str, ...], sentence: str
):
    path = table(tmp_path, "\t")
    with pytest.raises(ConfigError) as error:
        read_table(path, arguments[0], StudyConfig(), *arguments[1:])
    assert str(error.value) == sentence.format(path=path)


def test_a_missing_clinical_column_is_answered_with_the_close_header(tmp_path: Path):
    study = StudyConfig(clinical={"sites": ["a", "b"]})
    with pytest.raises(ConfigError) as error:
        read_table(table(tmp_path, ","), "Label", study)
    assert "lacks the study's clinical/batch column(s) ['sites'] (did you mean 'site' for " in (
        str(error.value)
    )
