"""The study report of a small in-process study: the census as released, the ROC plot at
results.json's points, a checklist whose every item is filled from the run or left to the
study, no external URL, and a PDF printed by Debian's chromium when there is one."""

from __future__ import annotations

import copy
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedrad.client.data import SiteData
from fedrad.common.cli import app
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.stats.roc import Known
from fedrad.server.report.card import BUNDLE_FILE, card_html, roc_figure
from fedrad.server.report.checklist import TO_PROVIDE, catalogue, checklist
from fedrad.server.report.pdf import CHROMIUM
from fedrad.server.results import write_results
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.synth.features import write_site_feature_tables

K = 3
STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=K), validation={"scheme": "kfold", "folds": 3}
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """results.json of a study whose site02 has 2 positives (released as "<k")."""
    root = tmp_path_factory.mktemp("study")
    tables = write_site_feature_tables(
        root / "sites", STUDY, sizes=(150, 120, 160), positives=(60, 2, 70)
    )
    sites = [SiteData.load(path, name, STUDY) for name, path in tables.items()]
    results = StudyProtocol(in_process_transport(sites, STUDY), STUDY, log=lambda _: None).run()
    write_results(results, root / "out" / "results.json")
    return root / "out" / "results.json"


@pytest.fixture(scope="module")
def results(run) -> dict:
    return json.loads(run.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def page(results) -> str:
    return card_html(results)


def _row(page: str, first_cell: str) -> list[str]:
    match = re.search(rf"<tr><td>{re.escape(first_cell)}</td>(.*?)</tr>", page)
    assert match, first_cell
    return re.findall(r"<td>(.*?)</td>", match.group(1))


def test_the_census_is_shown_as_released(results, page):
    site02 = next(site for site in results["sites"] if site["name"] == "site02")
    assert f"<{K}" in site02["cases"].values()  # the study has a suppressed cell to show
    header = re.search(r"<tr><th>site</th><th>status</th>(.*?)<th>sequences", page).group(1)
    classes = re.findall(r"<th>(.*?)</th>", header)
    for site in results["sites"]:
        cells = _row(page, site["name"])[1 : 1 + len(classes)]
        released = [
            str(site["cases"][label]).replace("<", "&lt;").replace(">", "&gt;") for label in classes
        ]
        assert cells == released, site["name"]


def test_the_roc_plot_draws_results_json_points(results):
    figure = roc_figure(results)
    curve = next(trace for trace in figure.data if trace.name == "pooled, kfold")
    roc = results["metrics"]["federated"]["roc"]
    assert list(curve.x) == roc["fpr"] and list(curve.y) == roc["tpr"]
    assert len(roc["fpr"]) >= 5 and roc["cells_at_least"] == K


def test_results_json_roc_reveals_no_new_cell_below_k(results):
    """Attack from results.json alone: its ROC points, reliability bins, class totals and
    confusion counts read as cumulative counts on the grid; every cell with a ROC point
    (other than an edge already public) as an end holds >= k of each class."""
    federated = results["metrics"]["federated"]
    n1, n0 = federated["n_positive"], federated["n_negative"]
    bins = STUDY.federation.histogram_bins
    roc = federated["roc"]
    public = [Known(0, 0, n1, n0), Known(bins, bins, 0, 0)]
    reliability = federated["calibration"]["bins"]
    for m in range(1, len(reliability)):
        above = reliability[m:]
        positives = sum((b["observed_rate"] or 0) * b["count"] for b in above)
        negatives = sum(b["count"] for b in above) - positives
        edge = round(reliability[m]["from"] * bins)  # merged tenths start on a tenth
        public.append(Known(edge, edge, positives, negatives))
    thresholds = [fit["threshold"] for fit in results["validation"]["fits"]]
    low, high = int(min(thresholds) * bins), -int(-max(thresholds) * bins)
    tp, fp = federated["sensitivity"] * n1, (1 - federated["specificity"]) * n0
    public.append(Known(low, high, tp, fp))
    edges = {q.low for q in public if q.low == q.high}
    points = [
        Known(edge, edge, tpr * n1, fpr * n0)
        for edge, fpr, tpr in (
            (bins if t is None else round(t * bins), fpr, tpr)
            for t, fpr, tpr in zip(roc["threshold"], roc["fpr"], roc["tpr"], strict=True)
        )
        if edge not in edges
    ]
    assert points  # the curve adds points to what the reliability bins show
    for point in points:
        for other in public + points:
            if other == point:
                continue
            assert not other.low <= point.low <= other.high, (point, other)
            for cell in (point.positives - other.positives, point.negatives - other.negatives):
                assert abs(cell) > K - 0.5, (point, other)


def test_every_checklist_item_is_filled_from_the_run_or_left_to_provide(results, page):
    items = checklist(results)
    assert len(items) == len(catalogue()["items"]) >= 100
    filled = [item for item in items if item.value is not None]
    assert len(filled) >= 40
    for item in filled:
        assert item.source and item.value.strip()
        root = item.source.split(",")[0].split(".")[0].split("[")[0].strip()
        assert root in results or item.source.startswith("generated"), item
    assert {item.status for item in items} == {"filled", TO_PROVIDE}
    ethics = next(i for i in items if (i.guideline, i.item) == ("TRIPOD+AI", "17"))
    assert ethics.status == TO_PROVIDE
    for item in items:
        row = re.search(
            rf"<tr data-item='{re.escape(item.guideline)} {re.escape(item.item)}' "
            rf"data-status='([^']+)'>(.*?)</tr>",
            page,
        )
        assert row and row.group(1) == item.status, item


def test_values_come_from_the_run(results):
    items = {(i.guideline, i.item): i for i in checklist(results)}
    census = items["TRIPOD+AI", "20b"].value
    for site in results["sites"]:
        for label, count in site["cases"].items():
            assert f"{label} {count}" in census
    auc = results["metrics"]["federated"]["auc"]
    assert f"AUC {auc:.3f}" in items["CLAIM", "28"].value
    assert results["study"]["extraction_hash"] in items["TRIPOD+AI", "9b"].value


def test_turning_differential_privacy_on_changes_the_items_it_touches(results):
    noised = copy.deepcopy(results)
    noised["privacy"]["differential_privacy"] = {"epsilon": 4.2, "delta": 1e-5}
    before = {(i.guideline, i.item): i.value for i in checklist(results)}
    after = {(i.guideline, i.item): i.value for i in checklist(noised)}
    changed = {key for key in before if before[key] != after[key]}
    assert ("CLAIM", "12") in changed and "epsilon 4.200" in after["CLAIM", "12"]
    assert "no differential privacy" in before["CLAIM", "12"]
    assert ("TRIPOD+AI", "26") in changed  # the limitations say so too


def test_recalibration_fills_the_updating_items_when_the_model_has_it(results):
    plain = copy.deepcopy(results)
    plain["model"].pop("recalibration", None)  # a model released as fitted
    items = {(i.guideline, i.item): i for i in checklist(plain)}
    assert items["TRIPOD+AI", "24"].status == TO_PROVIDE
    recalibrated = copy.deepcopy(plain)
    recalibrated["model"]["recalibration"] = {"intercept": 0.1, "slope": 0.93}
    items = {(i.guideline, i.item): i for i in checklist(recalibrated)}
    assert "slope 0.930" in items["TRIPOD+AI", "24"].value
    assert "Recalibration" in card_html(recalibrated, plotly_src="/static/plotly.min.js")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_page_loads_nothing_from_the_network(page):
    links = _Links()
    links.feed(page)
    assert not [url for url in links.urls if re.match(r"(https?:)?//", url)]
    assert "url(http" not in page and "cdn.plot.ly" not in page.split("<body")[1]
    assert len(page.split("</head>")[0]) > 1_000_000  # Plotly's library itself, inline


def test_the_command_writes_the_report_and_links_a_bundle_beside_the_results(run, tmp_path):
    (run.parent / BUNDLE_FILE).write_bytes(b"a bundle")
    try:
        out = tmp_path / "card" / "report.html"
        result = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
        assert result.exit_code == 0, result.output
        href = os.path.relpath(run.parent / BUNDLE_FILE, out.parent)
        assert f"<a href='{href}'>" in out.read_text(encoding="utf-8")
    finally:
        (run.parent / BUNDLE_FILE).unlink()


def test_the_command_names_a_file_that_is_not_results(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("[]")
    result = CliRunner().invoke(app, ["report", str(bad), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert str(bad) in result.output and "not a FedRad results.json" in result.output


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser: {CHROMIUM} is missing")
def test_the_pdf_is_printed_by_chromium(run, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--pdf"])
    assert result.exit_code == 0, result.output
    pdf = out.with_suffix(".pdf")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000


def test_the_report_from_the_store_is_the_report_from_the_file(run, results, tmp_path):
    from fedrad.server.store.engine import open_store, store_url
    from fedrad.server.store.writer import RunWriter

    engine = open_store(store_url(tmp_path))
    writer = RunWriter(engine, "simulation", log=lambda _: None)
    writer.start(STUDY)
    writer.finished(results)
    run_id = writer.run_id
    engine.dispose()
    database = str(tmp_path / "runs.db")
    pages = {}
    for name, arguments in (
        ("file", [str(run)]),
        ("store", [str(run_id), "--store", database]),
    ):
        out = tmp_path / f"{name}.html"
        result = CliRunner().invoke(app, ["report", *arguments, "--out", str(out)])
        assert result.exit_code == 0, result.output
        pages[name] = re.sub(
            r'id="[0-9a-f-]{36}"|"[0-9a-f-]{36}"', "", out.read_text(encoding="utf-8")
        )
    assert pages["store"] == pages["file"]
    wrong = CliRunner().invoke(app, ["report", "newest", "--store", database])
    assert wrong.exit_code == 2 and "give the run's number" in wrong.output
