"""The run page's plots: a per-round plot per measure with a line per fit, drawn from the
store's rounds; none of results.json's figures for a study that stopped before any."""

from __future__ import annotations

from fedrad.server.dashboard.figures import (
    centroid_figure,
    fragment,
    results_figures,
    rounds_figures,
)


def _phase(fit: str, rows: list[dict]) -> dict:
    return {"kind": "fitted", "tag": fit, "rounds": rows}


def test_each_measure_gets_one_plot_and_each_fit_one_line():
    phases = [
        _phase("fold 1", [{"fit": "fold 1", "phase": "newton", "iteration": i, "deviance": d}
                          for i, d in ((1, 9.0), (2, 4.0))]),
        _phase("final", [{"fit": "final", "phase": "newton", "iteration": 1, "deviance": 7.0}]),
        _phase("mlp", [{"fit": "mlp", "phase": "mlp", "round": 1, "train_loss": 0.6}]),
    ]  # fmt: skip
    deviance, loss = rounds_figures(phases)
    assert [(line.name, list(line.x), list(line.y)) for line in deviance.data] == [
        ("fold 1", [1, 2], [9.0, 4.0]),
        ("final", [1], [7.0]),
    ]
    assert [line.name for line in loss.data] == ["mlp"]
    assert loss.layout.xaxis.title.text == "round"


def test_a_run_without_rounds_has_no_round_plot():
    assert rounds_figures([{"kind": "prepared", "tag": "fold 1", "rounds": []}]) == []


def test_a_stopped_study_has_no_results_figures():
    assert results_figures({"status": "stopped", "reason": "too few sites"}) == []


def test_a_fragment_relies_on_the_served_plotly_script_and_downloads_svg():
    (figure,) = rounds_figures(
        [_phase("final", [{"fit": "final", "iteration": 1, "deviance": 1.0}])]
    )
    html = fragment(figure)
    assert "Plotly.newPlot" in html and "cdn" not in html.lower()
    assert '"format": "svg"' in html


def test_site_centroids_are_drawn_before_and_after_harmonization_one_point_per_site():
    centroids = {
        "explained": [0.5, 0.2],
        "before": {"site01": [2.0, 1.0], "site02": [-2.0, 0.5]},
        "after": {"site01": [0.1, 0.0], "site02": [-0.1, 0.0]},
    }
    figure = centroid_figure({"harmonization": {"centroids": centroids}})
    assert [trace.name for trace in figure.data] == ["before harmonization", "after harmonization"]
    assert list(figure.data[0].x) == [2.0, -2.0] and list(figure.data[1].text) == [
        "site01",
        "site02",
    ]
    assert figure.layout.xaxis.title.text == "PC1 (50% of variance)"
    assert centroid_figure({"harmonization": {"method": "none"}}) is None


def test_the_run_page_draws_the_roc_curve_at_the_points_results_json_publishes():
    roc = {"threshold": [None, 0.6, 0.3, 0.0], "fpr": [0, 0.1, 0.4, 1], "tpr": [0, 0.5, 0.9, 1]}
    results = {
        "metrics": {"federated": {"auc": 0.8, "roc": roc}, "per_site": {}},
        "validation": {"scheme": "kfold"},
    }
    (figure,) = [f for f in results_figures(results) if f.layout.title.text.startswith("ROC")]
    (curve,) = [trace for trace in figure.data if trace.name == "pooled, kfold"]
    assert (list(curve.x), list(curve.y)) == (roc["fpr"], roc["tpr"])
