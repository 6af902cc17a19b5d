"""The limitations a study report states, each generated from what the run shows: small or
missing sites, suppressed cells, whether the figures are exact or noised, how far the
validation reaches, calibration, and what the comparison arms found."""

from __future__ import annotations

from fedrad.server.report.model import number

_CALIBRATED = (0.8, 1.25)  # a slope outside this is worth a sentence


def limitations(results: dict) -> list[str]:
    """One sentence per limitation the run shows, in the order a reader weighs them."""
    found = [*_sites(results), *_suppressed(results)]
    found += [_privacy(results), _validation(results), *_calibration(results)]
    found += _comparison(results)
    return [sentence for sentence in found if sentence]


def _sites(results: dict) -> list[str]:
    found = []
    for site in results.get("sites", []):
        if site.get("status") != "included":
            found.append(
                f"{site['name']} did not take part ({site.get('status')}: "
                f"{site.get('reason') or 'no reason recorded'})."
            )
        small = [
            label
            for label, count in (site.get("cases") or {}).items()
            if _suppressed_cell(count) and str(count).startswith("<")
        ]
        if small:
            found.append(
                f"{site['name']} has fewer than k cases of {', '.join(small)}: its cases count "
                "in the pooled figures, but it is too small for figures of its own."
            )
    return found


def _suppressed_cell(count) -> bool:
    """A census count sent as "<k" or ">=k" (with k's value), not exactly."""
    return isinstance(count, str) and count.startswith(("<", ">="))


def _suppressed(results: dict) -> list[str]:
    cells = sum(
        1
        for site in results.get("sites", [])
        for count in (site.get("cases") or {}).values()
        if _suppressed_cell(count)
    )
    withheld = [
        name
        for name, figures in (results.get("metrics") or {}).get("per_site", {}).items()
        if figures.get("status") != "evaluated"
        or figures.get("sensitivity") is None
        or figures.get("specificity") is None
    ]
    found = []
    k = (results.get("privacy") or {}).get("min_cell_size", "k")
    if cells:
        found.append(f"{cells} census cells are suppressed (below k = {k}, or shown as >=k).")
    if withheld:
        found.append(
            f"Per-site figures of {', '.join(withheld)} are withheld in part or whole (a cell "
            f"below k = {k}), so site-level heterogeneity is only partly visible."
        )
    return found


def _privacy(results: dict) -> str:
    privacy = results.get("privacy") or {}
    budget = privacy.get("differential_privacy")
    if budget:
        return (
            f"Differential privacy is on (epsilon {number(budget.get('epsilon'))}): the model "
            "and every pooled figure carry noise, so they differ from a central analysis."
        )
    return (
        "No differential privacy: the pooled figures are exact, and their totals over sites "
        "may hold cells below k (docs/privacy.md 7)."
    )


def _validation(results: dict) -> str:
    scheme = (results.get("validation") or {}).get("scheme")
    if scheme == "leave-one-site-out" or (results.get("comparison") or {}).get("on_unseen_sites"):
        included = sum(1 for s in results.get("sites", []) if s.get("status") == "included")
        return (
            f"Sites the model never saw are only the study's own {included}; no validation on "
            "an independent cohort or prospective data."
        )
    return (
        f"Validation is internal ({scheme}): every tested case comes from a site the model "
        "was trained on; no external validation."
    )


def _calibration(results: dict) -> list[str]:
    calibration = (results.get("metrics") or {}).get("federated", {}).get("calibration") or {}
    slope = calibration.get("slope")
    if not isinstance(slope, int | float) or _CALIBRATED[0] <= slope <= _CALIBRATED[1]:
        return []
    recalibrated = isinstance((results.get("model") or {}).get("recalibration"), dict)
    return [
        f"The out-of-fold calibration slope is {number(slope, 2)} (outside "
        f"{_CALIBRATED[0]}-{_CALIBRATED[1]}): predicted probabilities are "
        + ("too extreme" if slope < 1 else "too moderate")
        + ("; the released model is recalibrated (see the model)." if recalibrated else ".")
    ]


def _comparison(results: dict) -> list[str]:
    comparison = results.get("comparison")
    if not comparison:
        return [
            "No comparison arms were run (simulate --compare), so the gain of federation "
            "and harmonization over each site alone is not shown."
        ]
    return [
        f"On unseen sites, {name} adds {number(gain.get('auc'))} AUC: "
        + ("it does not help here." if (gain.get("auc") or 0) <= 0 else "it helps here.")
        for name, gain in (comparison.get("worth") or {}).items()
    ]
