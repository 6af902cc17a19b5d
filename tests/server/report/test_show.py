"""`fedrad show FILE`: every recorded run is shown; anything else is refused in one sentence
naming the file, with exit status 2 and no traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedrad.common.cli import app

GOLDEN = Path(__file__).resolve().parents[2] / "integration" / "golden"


def show(*args: str):
    return CliRunner().invoke(app, ["show", *args])


def assert_refused(out, path: Path, reason: str) -> None:
    assert out.exit_code == 2, out.output
    assert isinstance(out.exception, SystemExit)  # a clean exit, not an error raised
    assert "Traceback" not in out.output
    (line,) = out.output.strip().splitlines()  # one sentence, on one line
    assert line.startswith(f"Cannot show {path}: ") and line.endswith(".")
    assert reason in line


@pytest.mark.parametrize("name", ["table-mlp.json", "table-lasso.json", "mri-seed0-compare.json"])
def test_show_prints_and_draws_a_recorded_run(name: str, tmp_path: Path):
    page = tmp_path / "report.html"
    out = show(str(GOLDEN / name), "--html", str(page))
    assert out.exit_code == 0, out.output
    kind = json.loads((GOLDEN / name).read_text())["model"]["kind"]
    assert f"Model: {kind}" in out.output
    assert f"<h2>Model: {kind}" in page.read_text()


def test_show_of_an_mlp_run_names_its_strategy_and_draws_its_losses(tmp_path: Path):
    page = tmp_path / "report.html"
    out = show(str(GOLDEN / "table-mlp.json"), "--html", str(page))
    assert out.exit_code == 0, out.output
    assert "trained by fedavg over 3 rounds" in out.output
    assert "Training loss by round" in page.read_text()


def test_show_refuses_a_missing_file(tmp_path: Path):
    path = tmp_path / "nowhere" / "results.json"
    assert_refused(show(str(path)), path, "there is no such file")


def test_show_refuses_an_empty_file_saying_it_is_empty(tmp_path: Path):
    path = tmp_path / "results.json"
    path.write_text("\n")
    assert_refused(show(str(path)), path, "it is empty, so not a FedRad results.json")


def test_show_refuses_a_file_that_is_not_json(tmp_path: Path):
    path = tmp_path / "results.json"
    path.write_text("auc: 0.9\n")
    assert_refused(show(str(path)), path, "it is not JSON")


def test_show_refuses_a_binary_file(tmp_path: Path):
    path = tmp_path / "results.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    assert_refused(show(str(path)), path, "not a text file")


def test_show_refuses_a_directory_saying_it_is_a_folder(tmp_path: Path):
    assert_refused(show(str(tmp_path)), tmp_path, "it is a folder; give its results.json")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"hello": "world"}, "no 'metrics' section"),
        ([1, 2, 3], "it holds an array, not a JSON object"),
        ("results", "it holds a string"),
        ({"metrics": {"federated": {}, "per_site": {}}, "sites": []}, "no 'model' section"),
    ],
    ids=["other-object", "array", "string", "no-model"],
)
def test_show_refuses_json_that_is_not_a_results_file(content, reason: str, tmp_path: Path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(content))
    out = show(str(path))
    assert_refused(out, path, reason)
    assert out.output.strip().endswith("so it is not a FedRad results.json.")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda r: r.pop("validation"), "validation scheme"),
        (lambda r: r["metrics"].pop("per_site"), "per-site metrics"),
        (lambda r: r.update(sites=[{"status": "included"}]), "entry without a name"),
        (lambda r: r.update(comparison={"worth": {}}), "'comparison' section lacks"),
    ],
    ids=["no-validation", "no-per-site", "nameless-site", "partial-comparison"],
)
def test_show_refuses_a_damaged_results_file(damage, reason: str, tmp_path: Path):
    results = json.loads((GOLDEN / "table-ridge.json").read_text())
    damage(results)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert_refused(show(str(path)), path, reason)


def test_show_refuses_to_write_the_report_where_it_cannot(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = show(str(GOLDEN / "table-ridge.json"), "--html", str(blocker / "report.html"))
    assert out.exit_code == 2
    assert "Traceback" not in out.output
    assert f"Cannot write the report to {blocker / 'report.html'}" in out.output


def _stored(results: dict, tmp_path: Path) -> Path:
    """A runs.db holding one finished run whose results are `results`."""
    from fedrad.common.config import StudyConfig
    from fedrad.server.store.engine import open_store, store_url
    from fedrad.server.store.writer import RunWriter

    engine = open_store(store_url(tmp_path))
    writer = RunWriter(engine, "simulation", log=print)
    writer.start(StudyConfig())
    writer.finished(results)
    engine.dispose()
    return tmp_path / "runs.db"


def test_show_from_the_store_prints_and_draws_what_the_results_file_shows(tmp_path: Path):
    golden = GOLDEN / "table-lasso.json"
    database = _stored(json.loads(golden.read_text()), tmp_path)
    from_file = show(str(golden), "--html", str(tmp_path / "file.html"))
    from_store = show("--store", str(database), "--html", str(tmp_path / "store.html"))
    assert from_store.exit_code == 0, from_store.output
    assert from_store.output.replace("store.html", "file.html") == from_file.output
    assert _without_ids(tmp_path / "store.html") == _without_ids(tmp_path / "file.html")


def _without_ids(page: Path) -> str:
    """The page less the random ids Plotly gives each figure's element."""
    return re.sub(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "id", page.read_text()
    )


def test_show_refuses_a_store_without_that_run(tmp_path: Path):
    database = _stored(json.loads((GOLDEN / "table-lasso.json").read_text()), tmp_path)
    out = show("--store", str(database), "--run", "9")
    assert out.exit_code == 2
    assert "Cannot show run 9 of" in out.output and "has no results" in out.output


def test_show_asks_for_a_file_or_a_store(tmp_path: Path):
    out = show()
    assert out.exit_code == 2
    assert "one of the two" in out.output
