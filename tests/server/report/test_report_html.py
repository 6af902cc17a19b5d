"""The HTML report: every figure drawn from results.json, and readable offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedrad.client.data import SiteData
from fedrad.common.cli import app
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.server.report.html import PLOTLY_JS, write_report
from fedrad.server.results import write_results
from fedrad.server.study import StudyProtocol
from fedrad.simulations.compare import compare
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(federation=FederationSettings(min_cell_size=3, histogram_bins=200))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    tables = write_site_feature_tables(tmp_path_factory.mktemp("sites"), STUDY, site_shift=2.0)
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    results = StudyProtocol(in_process_transport(sites, STUDY), STUDY, log=lambda _: None).run()
    reference = pooled_reference(tables, STUDY)
    results["metrics"]["pooled_reference"] = reference["metrics"]["federated"] | {
        "model": reference["model"]
    }
    results["comparison"] = compare(results, tables, STUDY)
    return json.loads(json.dumps(results, default=float))  # as read back from results.json


def test_report_draws_every_figure_from_the_results(results, tmp_path: Path):
    page = write_report(results, tmp_path / "report.html").read_text()
    for title in (
        "On sites the model never saw",
        "Per site, on its held-out cases",
        "Calibration (slope",
        "Batch effect per feature",
    ):
        assert title in page
    for site in results["metrics"]["per_site"]:
        assert f'"{site}"' in page  # a bar per site
    slope = results["metrics"]["federated"]["calibration"]["slope"]
    assert f"slope {slope:.2f}" in page
    assert f"{results['metrics']['federated']['auc']:.3f}" in page


def test_report_opens_offline(results, tmp_path: Path):
    page = write_report(results, tmp_path / "report.html").read_text()
    assert f"<script src='{PLOTLY_JS}'>" in page
    assert "cdn.plot.ly" not in page and "https://" not in page.split("<body")[0]
    assert (tmp_path / PLOTLY_JS).stat().st_size > 1_000_000  # the library itself


def test_show_writes_the_report_from_a_results_file(results, tmp_path: Path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = CliRunner().invoke(app, ["show", str(path), "--html", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    assert "On sites the model never saw" in (tmp_path / "r.html").read_text()
    assert "harmonization adds" in " ".join(out.output.split())


def test_results_file_is_strict_json_with_undefined_figures_as_null(tmp_path: Path):
    path = tmp_path / "results.json"
    write_results({"auc": float("nan"), "per_site": {"s": [0.5, float("inf")]}}, path)

    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "auc": None,
        "per_site": {"s": [0.5, None]},
    }
