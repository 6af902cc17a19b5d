"""The terminal summary and report.html of every model kind, from recorded results files.

The inputs are the real results.json files the golden integration tests recorded: a ridge
run under each validation scheme, a lasso run (penalty chosen by cross-validation), an MLP
run (FedAvg) and a comparison run on synthetic MRI.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from rich.console import Console

from fedrad.server.report.html import write_report
from fedrad.server.report.model import facts
from fedrad.server.report.text import print_results

GOLDEN = Path(__file__).resolve().parents[2] / "integration" / "golden"
RECORDED = sorted(GOLDEN.glob("*.json"))


def recorded(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def summary(results: dict) -> str:
    console = Console(record=True, width=200, color_system=None)
    print_results(results, console)
    return console.export_text()


def test_every_model_kind_is_recorded():
    kinds = {json.loads(path.read_text())["model"]["kind"] for path in RECORDED}
    assert {"ridge-logistic", "lasso-logistic", "mlp"} <= kinds


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
def test_summary_and_report_render_every_recorded_run(path: Path, tmp_path: Path):
    results = json.loads(path.read_text())
    kind = results["model"]["kind"]

    text = summary(results)
    assert f"Model: {kind}" in text
    assert f"{results['metrics']['federated']['auc']:.3f}" in text

    page = write_report(results, tmp_path / "report.html").read_text()
    assert f"<h2>Model: {kind}" in page
    assert "Per site, on its held-out cases" in page


def test_mlp_summary_names_its_strategy_rounds_and_losses():
    results = recorded("table-mlp.json")
    text = summary(results)
    assert "Model: mlp trained by fedavg over 3 rounds on 8 features" in text
    assert "0.658 -> 0.633 -> 0.594" in text  # train_loss_by_round
    rows = dict(facts(results["model"]))
    assert rows["federated strategy"] == "fedavg"
    assert rows["rounds"] == "3"
    assert rows["hidden units"] == "16"
    assert rows["parameters"] == "161"
    assert "Newton" not in text and "coefficient" not in text


def test_mlp_report_draws_its_loss_by_round(tmp_path: Path):
    results = recorded("table-mlp.json")
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "Training loss by round" in page
    for loss in results["model"]["train_loss_by_round"]:
        assert repr(loss) in page  # the figure's data points
    assert "fedavg" in page
    assert "Coefficients" not in page


def test_lasso_summary_shows_its_chosen_lambda_and_sparsity():
    results = recorded("table-lasso.json")
    rows = dict(facts(results["model"]))
    assert rows["lasso lambda"] == (
        "0.01598, chosen by federated inner cross-validation (lowest mean deviance)"
    )
    assert rows["features"] == "8 (5 with a nonzero coefficient)"
    assert rows["Newton iterations"] == "8, converged"
    text = summary(results)
    assert "0.01598" in text and "5 with a nonzero coefficient" in text


def test_lasso_report_draws_its_penalty_path_at_the_chosen_lambda(tmp_path: Path):
    results = recorded("table-lasso.json")
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "chosen lambda 0.01598" in page
    assert "mean held-out deviance" in page
    for deviance in results["model"]["cross_validation"]["mean_deviance"]:
        assert repr(deviance) in page
    assert "Coefficients" in page


def test_lasso_with_a_fixed_penalty_says_so():
    model = recorded("table-lasso.json")["model"] | {"cross_validation": None}
    assert dict(facts(model))["lasso lambda"] == "0.01598, set in the study"


def test_ridge_summary_and_report_show_its_newton_fit(tmp_path: Path):
    results = recorded("table-ridge.json")
    rows = dict(facts(results["model"]))
    assert rows["Newton iterations"] == "7, converged"
    assert rows["ridge lambda"] == (
        "1, chosen by federated inner cross-validation (lowest mean deviance)"
    )
    assert rows["intercept"] == "-1.588"  # recalibrated
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "Coefficients" in page
    for name in results["model"]["coefficients"]:
        assert f'"{name}"' in page
    assert "Training loss by round" not in page


def test_a_fit_that_did_not_converge_is_flagged():
    model = recorded("table-ridge.json")["model"] | {"converged": False}
    assert dict(facts(model))["Newton iterations"] == "7, did NOT converge"


def test_a_model_kind_the_report_has_never_seen_is_still_rendered(tmp_path: Path):
    results = copy.deepcopy(recorded("table-ridge.json"))
    results["model"] = {"kind": "gradient-boosting", "trees": 120, "max_depth": 3}
    text = summary(results)
    assert "Model: gradient-boosting" in text
    assert "trees" in text and "120" in text and "max depth" in text
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "<h2>Model: gradient-boosting</h2>" in page and "<td>120</td>" in page


def test_comparison_run_keeps_its_comparison_figure(tmp_path: Path):
    results = recorded("mri-seed0-compare.json")
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "On sites the model never saw" in page
    features = len(results["model"]["coefficients"])
    assert f"<h2>Model: ridge-logistic on {features} features</h2>" in page


def test_undefined_figures_render_as_dashes(tmp_path: Path):
    results = copy.deepcopy(recorded("table-mlp.json"))
    federated = results["metrics"]["federated"]
    federated.update(auc=None, auc_ci=None, auc_error_bound=None, sensitivity=None)
    (auc_row,) = [line for line in summary(results).splitlines() if line.startswith("│ AUC ")]
    assert [cell.strip() for cell in auc_row.split("│")[1:4]] == ["AUC", "- ± - (bound)", "-"]
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "pooled AUC - (95% CI --" in page


def test_a_tuned_recalibrated_ridge_states_its_lambda_and_slopes_in_a_sentence_each():
    model = recorded("table-ridge.json")["model"]
    rows = dict(facts(model))
    assert rows["ridge lambda"] == (
        f"{model['ridge_lambda']:.4g}, chosen by federated inner cross-validation "
        "(lowest mean deviance)"
    )
    before, after = model["recalibration"]["slope"], model["recalibration"]["cross_fitted"]
    assert rows["calibration slope"] == (
        f"{before:.2f} out of fold before recalibration, {after['slope']:.2f} after "
        "(cross-fitted: each fold recalibrated on the others)"
    )
    unapplied = model | {"recalibration": {"applied": False, "reason": "no calibration line"}}
    assert dict(facts(unapplied))["calibration slope"] == "not recalibrated: no calibration line"
