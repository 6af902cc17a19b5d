"""Terminal tables of a study's results."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedrad.server.report.model import facts, headline, number
from fedrad.server.report.privacy import privacy_sentence


def _fmt(value, digits: int = 3) -> str:
    return number(value, digits)


def _share(value) -> str:
    text = _fmt(value)
    return text if text == "-" else f"{value:.0%}"


def _interval(values) -> str:
    return f"[{_fmt(values[0])}, {_fmt(values[1])}]" if values else "-"


def print_results(results: dict, console: Console) -> None:
    metrics = results["metrics"]
    federated = metrics["federated"]
    pooled = metrics.get("pooled_reference", {})

    scheme = escape(str(results["validation"]["scheme"]))
    table = Table(title=f"Performance on held-out cases ({scheme}): federated vs pooled reference")
    for column in ("metric", "federated", "95% CI", "pooled reference"):
        table.add_column(column)
    auc = f"{_fmt(federated.get('auc'))} ± {_fmt(federated.get('auc_error_bound'), 4)} (bound)"
    table.add_row("AUC", auc, _interval(federated.get("auc_ci")), _fmt(pooled.get("auc")))
    for key in ("sensitivity", "specificity"):
        table.add_row(
            key,
            _fmt(federated.get(key)),
            _interval(federated.get(f"{key}_ci")),
            _fmt(pooled.get(key)),
        )
    table.add_row(
        "balanced accuracy",
        _fmt(federated.get("balanced_accuracy")),
        "",
        _fmt(pooled.get("balanced_accuracy")),
    )
    console.print(table)

    sites = Table(title="Sites")
    for column in ("site", "status", "cases", "AUC", "sens", "spec", "note"):
        sites.add_column(column)
    for site in results["sites"]:
        cases = ", ".join(f"{label} {count}" for label, count in site.get("cases", {}).items())
        local = metrics["per_site"].get(site["name"], {})
        note = site.get("reason") or local.get("reason", "")
        sites.add_row(
            escape(str(site["name"])),
            escape(str(site.get("status", "-"))),
            escape(cases),
            _fmt(local.get("auc")),
            _fmt(local.get("sensitivity")),
            _fmt(local.get("specificity")),
            escape(str(note)),
        )
    console.print(sites)
    console.print(model_table(results["model"]))
    if line := compared_line(results):
        console.print(escape(line))
    if sentence := privacy_sentence(results):
        console.print(escape(sentence))
    harmonization = results.get("harmonization", {})
    if "before" in harmonization:
        key = "share_of_features_with_site_effect_p_lt_0.05"
        before = harmonization["before"].get(key)
        after = harmonization.get("after", {}).get(key)
        console.print(
            f"site effect (share of features with p<0.05): "
            f"{_share(before)} before, {_share(after)} after "
            f"{escape(str(harmonization.get('method', 'harmonization')))}"
        )


def compared_line(results: dict) -> str | None:
    """The model comparison in a line: each kind's AUC, and each pair's DeLong p."""
    comparison = results.get("model_comparison")
    if not comparison:
        return None
    aucs = ", ".join(f"{kind} AUC {_fmt(f.get('auc'))}" for kind, f in comparison["kinds"].items())
    pairs = "; ".join(
        f"{p['a']} vs {p['b']}: difference {_fmt(p.get('difference'))}, DeLong "
        + ("-" if p.get("p_value") is None else f"p = {p['p_value']:.3g}")
        for p in comparison["pairs"]
    )
    return f"models compared: {aucs}; {pairs}"


def model_table(model: dict) -> Table:
    """The fitted model, described from the keys its dict holds (any kind)."""
    table = Table(title=f"Model: {escape(headline(model))}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for label, value in facts(model):
        table.add_row(escape(label), escape(value))
    return table


def print_comparison(comparison: dict, console: Console) -> None:
    check = comparison["federated_vs_pooled"]
    verdict = "[green]agree[/green]" if check["agrees"] else "[yellow]differ[/yellow]"
    console.print(
        f"federated vs pooled ({check['validation']}): same model to "
        f"{check['max_coefficient_difference']:.1e}; AUC {_fmt(check['federated_auc'])} "
        f"(certified ± {check['federated_auc_bound']:.3f}) vs {_fmt(check['pooled_auc'])}: "
        f"difference {check['difference']:.4f} -> {verdict} at {check['agrees_within']}"
        + (" (by design: the study adds noise)" if check.get("noised") else "")
    )
    table = Table(title="On sites the model never saw")
    for column in ("arm", "AUC", "95% CI", "sens", "spec", "bal. acc", "epsilon"):
        table.add_column(column)
    for name, figures in comparison["on_unseen_sites"].items():
        table.add_row(
            name,
            _fmt(figures["auc"]),
            _interval(figures["auc_ci"]),
            _fmt(figures["sensitivity"]),
            _fmt(figures["specificity"]),
            _fmt(figures["balanced_accuracy"]),
            _fmt(figures.get("epsilon")),
        )
    console.print(table)
    worth = comparison["worth"]
    console.print(
        "on unseen sites, "
        + "; ".join(
            f"{name} adds {gain['auc']:+.3f} AUC and {gain['balanced_accuracy']:+.3f} "
            "balanced accuracy"
            for name, gain in worth.items()
        )
        + " (federated + ComBat against the arm without it; the differential privacy arm "
        "against federated + ComBat)"
    )
