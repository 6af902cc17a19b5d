"""The manifest read whatever its delimiter, and its missing columns named with the close
header the site wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedrad.client.manifest import ManifestError, manifest_delimiter, read_manifest

SEQUENCES = ("t1c", "flair")
ROWS = [["case_id", "label", "t1c", "flair", "mask"], ["c1", "HGG", "a t1.nii", "b.nii", "m.nii"]]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_a_manifest_is_read_with_the_delimiter_it_uses(tmp_path: Path, delimiter: str):
    path = tmp_path / "manifest.csv"
    path.write_text("".join(delimiter.join(row) + "\n" for row in ROWS))
    (entry,) = read_manifest(path, SEQUENCES)
    assert entry.case_id == "c1" and entry.images["t1c"] == tmp_path / "a t1.nii"
    assert manifest_delimiter(path) == delimiter


def test_a_missing_column_names_the_delimiter_read_and_the_close_header(tmp_path: Path):
    path = tmp_path / "manifest.csv"
    path.write_text("case_id;label;T1c;flair;mask\nc1;HGG;a.nii;b.nii;m.nii\n")
    with pytest.raises(ManifestError) as error:
        read_manifest(path, SEQUENCES)
    assert str(error.value).startswith(
        f"manifest {path} lacks column(s) ['t1c'] (did you mean 'T1c' for 't1c'?); read as "
        "semicolon-separated, its columns are ['case_id', 'label', 'T1c', 'flair', 'mask']"
    )


def test_a_semicolon_manifest_with_decimal_commas_keeps_its_values(tmp_path: Path):
    path = tmp_path / "manifest.csv"
    path.write_text("case_id;label;t1c;flair;mask;age\nc1;HGG;a.nii;b.nii;m.nii;61,5\n")
    (entry,) = read_manifest(path, SEQUENCES, clinical=["age"])
    assert entry.clinical == {"age": "61,5"}
