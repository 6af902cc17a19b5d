"""`report.html` next to `results.json`: the figures a coordinator would rather look at.

Per-site performance, the reliability diagram, how much of each feature's variance was a
site effect before and after harmonization, (with `--compare`) every arm on unseen sites,
and the fitted model: its facts and curves, read from whatever the model dict holds, so
every kind of model is drawn. Plotly's JavaScript is written once beside the page
(`plotly.min.js`), so the report opens offline, e.g. on an aggregator without internet
access.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import plotly.graph_objects as go
from plotly.io import to_html
from plotly.offline import get_plotlyjs

from fedrad.server.report.model import Curve, curves, facts, headline, number
from fedrad.server.report.privacy import privacy_sentence

PLOTLY_JS = "plotly.min.js"
_LAYOUT = {"template": "plotly_white", "height": 380, "margin": {"t": 60, "b": 60}}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def per_site_figure(results: dict) -> go.Figure:
    """AUC, sensitivity and specificity of every evaluated site."""
    sites = {
        name: figures
        for name, figures in sorted(results["metrics"]["per_site"].items())
        if figures.get("status") == "evaluated"
    }
    figure = go.Figure(
        [
            go.Bar(name=label, x=list(sites), y=[figures.get(key) for figures in sites.values()])
            for key, label in (
                ("auc", "AUC"),
                ("sensitivity", "sensitivity"),
                ("specificity", "specificity"),
            )
        ]
    )
    return figure.update_layout(
        title="Per site, on its held-out cases", yaxis={"range": [0, 1]}, **_LAYOUT
    )


def reliability_figure(results: dict) -> go.Figure | None:
    """Observed HGG rate against mean predicted probability per calibration bin."""
    calibration = results["metrics"]["federated"].get("calibration")
    if not calibration:
        return None
    bins = [b for b in calibration["bins"] if b["count"] and _finite(b["mean_predicted"])]
    figure = go.Figure(
        [
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot"}),
            go.Scatter(
                x=[b["mean_predicted"] for b in bins],
                y=[b["observed_rate"] for b in bins],
                mode="markers+lines",
                name="bins (>= k cases of each class)",
                marker={"size": [6 + 2 * math.sqrt(b["count"]) for b in bins]},
                text=[f"{b['count']} cases" for b in bins],
            ),
        ]
    )
    slope, intercept = calibration.get("slope"), calibration.get("intercept")
    subtitle = (
        f" (slope {slope:.2f}, intercept {intercept:.2f})"
        if _finite(slope) and _finite(intercept)
        else ""
    )
    return figure.update_layout(
        title=f"Calibration{subtitle}",
        xaxis={"title": "mean predicted probability", "range": [0, 1]},
        yaxis={"title": "observed rate", "range": [0, 1]},
        **_LAYOUT,
    )


def harmonization_figure(results: dict) -> go.Figure | None:
    """Distribution of the per-feature batch-effect F statistic before and after ComBat."""
    per_feature = results.get("harmonization", {}).get("per_feature_f")
    if not per_feature:
        return None
    figure = go.Figure(
        [
            go.Box(y=[f for f in values.values() if _finite(f) and f > 0], name=stage)
            for stage, values in per_feature.items()
        ]
    )
    return figure.update_layout(
        title="Batch effect per feature (ANOVA F across batches, training cases)",
        yaxis={"type": "log", "title": "F"},
        **_LAYOUT,
    )


def comparison_figure(results: dict) -> go.Figure | None:
    """AUC (with its 95% CI) and balanced accuracy of every arm on unseen sites."""
    arms = results.get("comparison", {}).get("on_unseen_sites")
    if not arms:
        return None
    names = list(arms)
    auc = [arms[name]["auc"] for name in names]
    low, high = zip(*(arms[name]["auc_ci"] for name in names), strict=True)
    figure = go.Figure(
        [
            go.Bar(
                name="AUC",
                x=names,
                y=auc,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - a for h, a in zip(high, auc, strict=True)],
                    "arrayminus": [a - lo for a, lo in zip(auc, low, strict=True)],
                },
            ),
            go.Bar(
                name="balanced accuracy",
                x=names,
                y=[arms[name]["balanced_accuracy"] for name in names],
            ),
        ]
    )
    return figure.update_layout(
        title="On sites the model never saw (leave-one-site-out)",
        yaxis={"range": [0, 1]},
        **_LAYOUT,
    )


def curve_figure(curve: Curve) -> go.Figure:
    """One of the model's series: bars (e.g. coefficients) or a line (e.g. loss by round)."""
    if curve.bars:
        figure = go.Figure([go.Bar(x=curve.x, y=curve.y, orientation="h")])
        layout = _LAYOUT | {"height": max(_LAYOUT["height"], 120 + 22 * len(curve.y))}
        left = min(400, 20 + 7 * max((len(str(name)) for name in curve.y), default=0))
        layout["margin"] = _LAYOUT["margin"] | {"l": left}
    else:
        figure = go.Figure([go.Scatter(x=curve.x, y=curve.y, mode="markers+lines")])
        if curve.marked_x is not None:
            figure.add_vline(x=curve.marked_x, line_dash="dot")
        layout = _LAYOUT
    return figure.update_layout(
        title=curve.title,
        xaxis={"title": curve.x_title, "type": "log" if curve.log_x else "linear"},
        yaxis={"title": curve.y_title},
        showlegend=False,
        **layout,
    )


def _model_section(model: dict) -> str:
    rows = "".join(
        f"<tr><th style='text-align: left; padding-right: 1em'>{html.escape(label)}</th>"
        f"<td>{html.escape(value)}</td></tr>"
        for label, value in facts(model)
    )
    return f"<h2>Model: {html.escape(headline(model))}</h2><table>{rows}</table>"


def _summary(results: dict) -> str:
    federated = results["metrics"]["federated"]
    low, high = federated.get("auc_ci") or (None, None)
    return (
        f"<p>Study <b>{html.escape(str(results.get('study', {}).get('name', '')))}</b>, "
        f"validation {html.escape(str(results['validation']['scheme']))}: pooled AUC "
        f"{number(federated.get('auc'))} (95% CI {number(low)}-{number(high)}, certified "
        f"within &plusmn;{number(federated.get('auc_error_bound'))} of the exact value), "
        f"sensitivity {number(federated.get('sensitivity'))}, specificity "
        f"{number(federated.get('specificity'))}.</p>"
        f"<p>{html.escape(privacy_sentence(results))}</p>"
    )


def _stopped(results: dict) -> str:
    """A study that could not run has no figures: why it stopped, and each site's state."""
    rows = "".join(
        f"<tr><td>{html.escape(str(site.get('name', '')))}</td>"
        f"<td>{html.escape(str(site.get('status', '')))}</td>"
        f"<td>{html.escape(str(site.get('reason', '')))}</td></tr>"
        for site in results.get("sites", [])
    )
    return (
        f"<p>The study stopped: {html.escape(str(results.get('reason', '')))}</p>"
        "<table><tr><th>site</th><th>status</th><th>reason</th></tr>"
        f"{rows}</table>"
    )


def write_report(results: dict, path: Path) -> Path:
    """Write the report page and, beside it, Plotly's JavaScript; return the page's path."""
    if results.get("status") == "stopped":
        return _write_page(path, _stopped(results))
    figures = [
        figure
        for figure in (
            comparison_figure(results),
            per_site_figure(results),
            reliability_figure(results),
            harmonization_figure(results),
        )
        if figure is not None
    ]
    model = results.get("model", {})
    charts = "\n".join(
        to_html(figure, include_plotlyjs=False, full_html=False) for figure in figures
    )
    model_charts = "\n".join(
        to_html(curve_figure(curve), include_plotlyjs=False, full_html=False)
        for curve in curves(model)
    )
    return _write_page(path, f"{_summary(results)}{charts}{_model_section(model)}{model_charts}")


def _write_page(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>FedRad results</title>"
        f"<script src='{PLOTLY_JS}'></script></head>"
        "<body style='font-family: sans-serif; max-width: 1000px; margin: auto'>"
        f"<h1>FedRad results</h1>{body}</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path
