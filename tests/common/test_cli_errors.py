"""Every `fedrad` command that reads a file ends in one sentence naming it, exit status 2,
never a traceback, whatever wrong file the user gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedrad.common.cli import app

YAML_SETTINGS = b"name: site01\nlabels: brats2021\n"
CSV_TABLE = b"case,score\nc1,0.5\n"

# command -> (its arguments with FILE where the file goes, a foreign file of the right
# kind of text). None can start anything even if the file were accepted: no keys, no
# feature table, no cohort.
COMMANDS = {
    "site check --study": (
        ["site", "check", "--labels", "brats2021", "--manifest", "m.csv", "--study", "FILE"],
        CSV_TABLE,
    ),
    "site check --site": (["site", "check", "--manifest", "m.csv", "--site", "FILE"], CSV_TABLE),
    "site check --manifest": (
        ["site", "check", "--labels", "brats2021", "--manifest", "FILE"],
        YAML_SETTINGS,
    ),
    "site extract --study": (
        ["site", "extract", "--out", "f.parquet", "--labels", "brats2021", "--manifest", "m.csv"]
        + ["--study", "FILE"],
        CSV_TABLE,
    ),
    "site extract --manifest": (
        ["site", "extract", "--out", "f.parquet", "--labels", "brats2021", "--manifest", "FILE"],
        YAML_SETTINGS,
    ),
    "site join --study": (
        ["site", "join", "--site-dir", "site", "--server", "x:1", "--study", "FILE"],
        CSV_TABLE,
    ),
    "simulate --study": (["simulate", "--out", "out", "--study", "FILE"], CSV_TABLE),
    "simulate --features-table": (
        ["simulate", "--out", "out", "--split-sites", "2", "--features-table", "FILE"],
        YAML_SETTINGS,
    ),
    "server start --study": (["server", "start", "--state", "state", "--study", "FILE"], CSV_TABLE),
    "show": (["show", "FILE"], CSV_TABLE),
}
KINDS = ["missing", "a folder", "a PNG", "a foreign text file", "invalid YAML", "an empty file"]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def given_file(folder: Path, kind: str, foreign: bytes) -> Path:
    """The wrong file of `kind` at folder/given.file (nothing there if `missing`)."""
    path = folder / "given.file"
    contents = {
        "a PNG": PNG,
        "a foreign text file": foreign,
        "invalid YAML": b"model: [ridge,\n",
        "an empty file": b"",
    }
    if kind == "a folder":
        path.mkdir()
    elif kind in contents:
        path.write_bytes(contents[kind])
    return path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_file_ends_in_a_sentence_naming_it_with_exit_2(
    tmp_path: Path, monkeypatch, command: str, kind: str
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("case_id,label,t1c,flair,mask\n")
    arguments, foreign = COMMANDS[command]
    path = given_file(tmp_path, kind, foreign)
    result = CliRunner().invoke(app, [str(path) if arg == "FILE" else arg for arg in arguments])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert str(path) in result.output


@pytest.mark.parametrize(
    ("kind", "sentence"),
    [
        ("missing", "error: there is no study config {path}"),
        ("a folder", "error: the study config {path} is a folder; give the file itself"),
        ("a PNG", "error: {path} is not a text file (an image or other binary file?), so not"),
        ("a foreign text file", "error: the study config {path} holds plain text rather than"),
        ("invalid YAML", "error: the study config {path} is not valid YAML: expected"),
        ("an empty file", "error: the study config {path} is empty"),
    ],
)
def test_each_wrong_study_file_is_named_for_what_it_is(tmp_path: Path, kind: str, sentence: str):
    path = given_file(tmp_path, kind, CSV_TABLE)
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--study", str(path)])
    assert sentence.format(path=path) in result.output


def test_a_user_error_raised_inside_a_command_becomes_its_sentence(tmp_path: Path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id;label;t1c;flair;mask\n")
    result = CliRunner().invoke(
        app, ["site", "check", "--manifest", str(manifest), "--study", str(tmp_path / "s.yaml")]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: there is no study config")


def test_a_file_where_an_output_folder_belongs_ends_in_a_sentence(tmp_path: Path):
    table = tmp_path / "table.csv"
    table.write_text("label,f1\n" + "".join(f"{c},{i}\n" for i, c in enumerate(["HGG", "BM"] * 6)))
    in_the_way = tmp_path / "out"
    in_the_way.write_text("")
    arguments = ["--features-table", str(table), "--split-sites", "2", "--out", str(in_the_way)]
    result = CliRunner().invoke(app, ["simulate", *arguments])
    assert result.exit_code == 2
    assert f"error: cannot use {in_the_way}: a file is in the way where a folder belongs" in (
        result.output
    )
