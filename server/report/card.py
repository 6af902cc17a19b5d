"""The study report (model card) of a run: one self-contained HTML page a reviewer can judge.

Cohort per site as released, extraction and harmonization settings, validation design, ROC
and calibration plots, metrics with CIs, per-site and leave-one-site-out results, the model
(with its recalibration and bundle when the run has them), generated limitations, and the
reporting checklist (checklist.py). Plotly's script is the installed package's, written
inline (or served by the dashboard): the page loads nothing from the network.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import plotly.graph_objects as go
from plotly.io import to_html
from plotly.offline import get_plotlyjs

from fedrad.server.report.checklist import TO_PROVIDE, catalogue, checklist
from fedrad.server.report.html import (
    _LAYOUT,
    _stopped,
    comparison_figure,
    curve_figure,
    per_site_figure,
    reliability_figure,
)
from fedrad.server.report.limitations import limitations
from fedrad.server.report.model import curves, facts, headline, number
from fedrad.server.report.privacy import privacy_sentence

BUNDLE_FILE = "model.fedrad"  # the model bundle a study writes beside its results.json
_STYLE = (
    "body{font-family:sans-serif;max-width:1000px;margin:auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
    "text-align:left;vertical-align:top}.provide{color:#a60}"
    "@media print{.plotly-graph-div{break-inside:avoid}}"
)


def roc_figure(results: dict) -> go.Figure | None:
    """The pooled ROC curve at the points results.json publishes, and each comparison arm's
    on sites it never saw, when the run has them."""
    federated = results["metrics"]["federated"]
    if not federated.get("roc"):
        return None
    curves = {f"pooled, {results['validation']['scheme']}": federated["roc"]}
    arms = (results.get("comparison") or {}).get("on_unseen_sites") or {}
    curves |= {f"unseen sites: {name}": arm["roc"] for name, arm in arms.items() if arm.get("roc")}
    figure = go.Figure(
        [go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot"})]
        + [
            go.Scatter(
                x=roc["fpr"],
                y=roc["tpr"],
                mode="lines+markers",
                name=name,
                text=[f"threshold {number(t)}" for t in roc["threshold"]],
            )
            for name, roc in curves.items()
        ]
    )
    return figure.update_layout(
        title=f"ROC on held-out cases (pooled AUC {number(federated.get('auc'))})",
        xaxis={"title": "1 - specificity", "range": [0, 1]},
        yaxis={"title": "sensitivity", "range": [0, 1]},
        **_LAYOUT,
    )


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(value) -> str:
    if isinstance(value, float):
        return number(value)
    return "-" if value is None else str(value)


def _cohort(results: dict) -> str:
    classes = sorted({label for s in results["sites"] for label in (s.get("cases") or {})})
    failures = results.get("extraction_failures") or {}
    rows = [
        [site["name"], site.get("status")]
        + [(site.get("cases") or {}).get(label, "-") for label in classes]
        + [
            ", ".join(site.get("sequences_missing") or []) or "none",
            len(failures.get(site["name"], {})),
            site.get("reason") or "",
        ]
        for site in results["sites"]
    ]
    header = ["site", "status", *classes, "sequences missing", "refused at QC", "note"]
    return (
        "<h2 id='cohort'>Cohort per site</h2><p>Case counts as each site released them (a count "
        'below k is sent as "&lt;k").</p>' + _table(header, rows)
    )


def _settings(results: dict) -> str:
    config = results.get("study", {}).get("config", {})
    parts = []
    for section, title in (
        ("extraction", "Extraction"),
        ("harmonization", "Harmonization"),
        ("selection", "Feature selection"),
        ("validation", "Validation design"),
    ):
        values = config.get(section) or {}
        rows = [[key.replace("_", " "), _setting(value)] for key, value in values.items()]
        parts.append(f"<h3>{title}</h3>" + _table(["setting", "value"], rows))
    extraction_hash = results.get("study", {}).get("extraction_hash", "-")
    return (
        "<h2 id='settings'>Settings</h2>"
        f"<p>Extraction hash {html.escape(str(extraction_hash))} (every site "
        "extracted with this configuration).</p>" + "".join(parts)
    )


def _setting(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_setting(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def _metrics(results: dict) -> str:
    pooled = results["metrics"]["federated"]
    rows = [
        ["AUC", pooled.get("auc"), _interval(pooled.get("auc_ci"))],
        ["sensitivity", pooled.get("sensitivity"), _interval(pooled.get("sensitivity_ci"))],
        ["specificity", pooled.get("specificity"), _interval(pooled.get("specificity_ci"))],
        ["balanced accuracy", pooled.get("balanced_accuracy"), ""],
    ]
    calibration = pooled.get("calibration") or {}
    for key in ("slope", "intercept", "expected_calibration_error", "calibration_in_the_large"):
        if key in calibration:
            label = key.replace("_", " ")
            rows.append(
                [label if "calibration" in label else f"calibration {label}", calibration[key], ""]
            )
    return (
        "<h2 id='performance'>Performance on held-out cases "
        f"({html.escape(results['validation']['scheme'])})</h2>"
        f"<p>{pooled.get('n_positive', '-')} positive and {pooled.get('n_negative', '-')} "
        "negative test cases, pooled over every fit. AUC certified within "
        f"&plusmn;{number(pooled.get('auc_error_bound'), 4)} of the exact value (scores binned "
        "on the public grid).</p>" + _table(["metric", "value", "95% CI"], rows)
    )


def _interval(values) -> str:
    return f"{number(values[0])}-{number(values[1])}" if values else ""


def _compared(results: dict) -> str:
    """The study's model kinds side by side, and DeLong's test of each pair (model.compare)."""
    comparison = results.get("model_comparison")
    if not comparison:
        return ""
    kinds = [
        [
            kind,
            f.get("auc"),
            _interval(f.get("auc_ci")),
            f.get("sensitivity"),
            _interval(f.get("sensitivity_ci")),
            f.get("specificity"),
            _interval(f.get("specificity_ci")),
        ]
        for kind, f in comparison["kinds"].items()
    ]
    pairs = [
        [
            f"{p['a']} vs {p['b']}",
            p.get("difference"),
            _interval(p.get("difference_ci")),
            p.get("z"),
            number(p.get("p_value"), 4),
            p.get("note", ""),
        ]
        for p in comparison["pairs"]
    ]
    width = comparison["joint_grid"]["width"]
    return (
        "<h2 id='models-compared'>Models compared</h2><p>Every model fitted on the same folds, "
        "with the same harmonization and selection per fold, and evaluated as the study's "
        "model is (95% CIs). DeLong's test of each pair's AUC difference from the summed joint "
        f"histogram of their out-of-fold scores (bins of width {width:g}; its AUCs are those "
        "of the scores on that grid).</p>"
        + _table(
            ["model", "AUC", "95% CI", "sensitivity", "95% CI", "specificity", "95% CI"], kinds
        )
        + _table(["pair (a vs b)", "AUC a - b", "95% CI", "z", "DeLong p", "note"], pairs)
    )


def _per_site(results: dict) -> str:
    rows = [
        [
            name,
            f.get("status"),
            f.get("auc"),
            f.get("sensitivity"),
            f.get("specificity"),
            f.get("reason", ""),
        ]
        for name, f in sorted(results["metrics"]["per_site"].items())
    ]
    fits = [
        [
            fit["fit"],
            ", ".join(fit.get("training_sites", [])),
            fit.get("n_positive"),
            fit.get("n_negative"),
            fit.get("sensitivity"),
            fit.get("specificity"),
            fit.get("threshold"),
            fit.get("reason", ""),
        ]
        for fit in results["validation"].get("fits", [])
    ]
    text = (
        "<h2 id='per-site'>Per site</h2><p>Each site's own figures, as it released them (AUC to 2 "
        "decimals, rates on a public step, none with a cell below k).</p>"
        + _table(["site", "status", "AUC", "sensitivity", "specificity", "note"], rows)
    )
    text += "<h2 id='per-fit'>Per fit</h2>" + _table(
        [
            "fit",
            "trained on",
            "positives",
            "negatives",
            "sensitivity",
            "specificity",
            "threshold",
            "note",
        ],
        fits,
    )
    arms = (results.get("comparison") or {}).get("on_unseen_sites")
    if arms:
        text += "<h2 id='unseen'>Leave-one-site-out: sites the model never saw</h2>" + _table(
            ["arm", "AUC", "95% CI", "sensitivity", "specificity", "balanced accuracy"],
            [
                [
                    name,
                    a.get("auc"),
                    _interval(a.get("auc_ci")),
                    a.get("sensitivity"),
                    a.get("specificity"),
                    a.get("balanced_accuracy"),
                ]
                for name, a in arms.items()
            ],
        )
    return text


def _model(results: dict, bundle: str | None) -> str:
    model = results.get("model", {})
    rows = [[label, value] for label, value in facts(model)]
    text = f"<h2>Model: {html.escape(headline(model))}</h2>" + _table(["", ""], rows)
    recalibration = model.get("recalibration")
    if isinstance(recalibration, dict):
        text += "<h3>Recalibration</h3>" + _table(
            ["", ""], [[key.replace("_", " "), _setting(v)] for key, v in recalibration.items()]
        )
    if bundle is not None:
        text += (
            f"<p>Model bundle: <a href='{html.escape(bundle)}'>{html.escape(bundle)}</a> "
            "(beside this run's results.json; a site applies it with fedrad site predict).</p>"
        )
    return text


def _limitations(results: dict) -> str:
    items = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in limitations(results))
    return f"<h2 id='limitations'>Limitations</h2><ul>{items}</ul>"


def _checklist(results: dict) -> str:
    items = checklist(results)
    names = catalogue()["guidelines"]
    parts = [
        "<h2 id='checklist'>Reporting checklist</h2>"
        "<p>Each item filled from the run, with the value "
        "and where in results.json it comes from, or marked as the study's "
        f"<span class='provide'>{TO_PROVIDE}</span>.</p>"
    ]
    for guideline, title in names.items():
        rows = "".join(
            f"<tr data-item='{html.escape(item.guideline)} {html.escape(item.item)}' "
            f"data-status='{item.status}'><td>{html.escape(item.item)}</td>"
            f"<td>{html.escape(item.topic)}: {html.escape(item.asks)}</td>"
            + (
                f"<td>{html.escape(item.value)}</td><td>{html.escape(item.source)}</td>"
                if item.value is not None
                else f"<td class='provide'>{TO_PROVIDE}</td><td></td>"
            )
            + "</tr>"
            for item in items
            if item.guideline == guideline
        )
        parts.append(
            f"<h3>{html.escape(title)}</h3><table><tr><th>item</th><th>asks</th><th>from the "
            f"run</th><th>source</th></tr>{rows}</table>"
        )
    return "".join(parts)


def figures(results: dict) -> list[go.Figure]:
    drawn = [
        roc_figure(results),
        reliability_figure(results),
        per_site_figure(results),
        comparison_figure(results),
    ]
    drawn += [curve_figure(curve) for curve in curves(results.get("model", {}))]
    return [figure for figure in drawn if figure is not None]


def card_html(results: dict, plotly_src: str | None = None, bundle: str | None = None) -> str:
    """The report page; Plotly's script inline, or from `plotly_src` (the dashboard's own);
    `bundle` the link to the run's model bundle, if it has one."""
    script = (
        f"<script>{get_plotlyjs()}</script>"
        if plotly_src is None
        else f"<script src='{html.escape(plotly_src)}'></script>"
    )
    name = html.escape(str(results.get("study", {}).get("name", "")))
    if results.get("status") == "stopped":
        return _page(name, script, f"<h1>Study report: {name}</h1>{_stopped(results)}")
    plots = "\n".join(
        to_html(figure, include_plotlyjs=False, full_html=False, config={"displaylogo": False})
        for figure in figures(results)
    )
    body = (
        f"<h1>Study report: {name}</h1><p>{html.escape(privacy_sentence(results))}</p>"
        f"{_cohort(results)}{_settings(results)}{_metrics(results)}{_compared(results)}{plots}"
        f"{_per_site(results)}{_model(results, bundle)}{_limitations(results)}"
        f"{_checklist(results)}"
    )
    return _page(name, script, body)


def _page(name: str, script: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>FedRad study report: {name}</title><style>{_STYLE}</style>{script}</head>"
        f"<body>{body}</body></html>"
    )


def write_card(results: dict, path: Path, bundle: Path | None = None) -> Path:
    """Write the self-contained page to `path`, linking `bundle` relative to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    href = None
    if bundle is not None:
        href = Path(os.path.relpath(bundle.resolve(), path.parent.resolve())).as_posix()
    path.write_text(card_html(results, bundle=href), encoding="utf-8")
    return path
