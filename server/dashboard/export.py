"""A run's metrics as one CSV: pooled, per-site and per-fit figures, each with its 95% CI
where the run has one, and every round's deviance or loss. A figure that is not a number
(calibration bins, a status) is kept as JSON text, so nothing is lost on the way out."""

from __future__ import annotations

import csv
import io
import json

from fedrad.server.dashboard.views import RunView

COLUMNS = ["scope", "subject", "step", "name", "value", "ci_low", "ci_high"]


def metrics_csv(view: RunView) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_figure_rows("pooled", "", view.metrics["federated"]))
    for scope, group in (("site", "per_site"), ("fit", "fits")):
        for subject, figures in view.metrics[group].items():
            writer.writerows(_figure_rows(scope, subject, figures))
    for phase in view.phases:
        for row in phase["rounds"]:
            step = row.get("iteration", row.get("round"))
            for name, value in row.items():
                if name not in {"fit", "phase", "iteration", "round"}:
                    writer.writerow(["round", row["fit"], step, name, _cell(value), "", ""])
    return out.getvalue()


def _figure_rows(scope: str, subject: str, figures: dict) -> list[list]:
    rows = []
    for name, value in figures.items():
        if name.endswith("_ci") and name[: -len("_ci")] in figures:
            continue  # written beside its figure
        low, high = figures.get(f"{name}_ci") or ("", "")
        rows.append([scope, subject, "", name, _cell(value), _cell(low), _cell(high)])
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
