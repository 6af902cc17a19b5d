"""The reporting checklist of a study report: each item of checklist.yaml (TRIPOD+AI, CLAIM,
RQS) filled from the run, with the value and the results.json key it comes from, or marked
as the study's to provide. A rule fills an item only from what the run holds; a rule that
finds nothing leaves the item to the study."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

import yaml

from fedrad.server.report.limitations import limitations
from fedrad.server.report.model import number

TO_PROVIDE = "to provide"
Filled = tuple[str, str] | None  # (value, where in the run it comes from)


@dataclass(frozen=True)
class Item:
    guideline: str
    item: str
    topic: str
    asks: str
    value: str | None
    source: str | None

    @property
    def status(self) -> str:
        return "filled" if self.value is not None else TO_PROVIDE


def catalogue() -> dict:
    """checklist.yaml as shipped in the package: guidelines and items."""
    text = (files("fedrad.server.report") / "checklist.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def checklist(results: dict) -> list[Item]:
    """Every item of the catalogue, filled from `results` where its rule finds a value."""
    items = []
    for entry in catalogue()["items"]:
        rule = RULES.get(entry.get("fill", ""))
        filled = rule(results) if rule is not None else None
        value, source = filled if filled is not None else (None, None)
        items.append(
            Item(
                entry["guideline"], str(entry["item"]), entry["topic"], entry["asks"], value, source
            )
        )
    return items


# -- the rules --------------------------------------------------------------------------------
def _config(results: dict, section: str) -> dict:
    return (results.get("study") or {}).get("config", {}).get(section) or {}


def _included(results: dict) -> list[dict]:
    return [site for site in results.get("sites", []) if site.get("status") == "included"]


def _sites(results: dict) -> Filled:
    sites = results.get("sites") or []
    if not sites:
        return None
    names = ", ".join(site["name"] for site in sites)
    return f"{len(sites)} sites ({names}), {len(_included(results))} included", "sites"


def _census(results: dict) -> Filled:
    sites = results.get("sites") or []
    if not sites:
        return None
    rows = "; ".join(
        f"{site['name']}: "
        + ", ".join(f"{label} {count}" for label, count in (site.get("cases") or {}).items())
        for site in sites
    )
    return f"cases per class and site as released (counts below k shown as such): {rows}", (
        "sites[].cases"
    )


def _extraction(results: dict) -> Filled:
    extraction = _config(results, "extraction")
    if not extraction:
        return None
    spacing = extraction.get("resampled_spacing_mm")
    value = (
        f"pyradiomics on sequences {', '.join(extraction.get('sequences', []))}, regions "
        f"{', '.join(extraction.get('regions', {}))}; feature classes "
        f"{', '.join(extraction.get('feature_classes', []))}; filters "
        f"{', '.join(extraction.get('filters', []))}; bin width {extraction.get('bin_width')}; "
        f"resampled to {spacing} mm ({extraction.get('interpolator')}); extraction hash "
        f"{results['study'].get('extraction_hash', '-')}"
    )
    return value, "study.config.extraction, study.extraction_hash"


def _preprocessing(results: dict) -> Filled:
    extraction, harmonization = _config(results, "extraction"), _config(results, "harmonization")
    if not extraction:
        return None
    normalize = (
        f"intensities normalized (scale {extraction.get('normalize_scale')})"
        if extraction.get("normalize")
        else "intensities not normalized"
    )
    method = harmonization.get("method", "none")
    combat = (
        f"features harmonized by federated ComBat across batches '{harmonization.get('batch')}'"
        f" (parametric {harmonization.get('parametric')}, empirical Bayes "
        f"{harmonization.get('empirical_bayes')}), fitted on training cases only"
        if method == "combat"
        else "no harmonization"
    )
    return (
        f"{normalize}; resampled to {extraction.get('resampled_spacing_mm')} mm; regions under "
        f"{extraction.get('min_region_voxels')} voxels refused at QC; {combat}; model inputs "
        "standardized by the pooled training means and standard deviations",
        "study.config.extraction, study.config.harmonization",
    )


def _features(results: dict) -> Filled:
    selection, settings = results.get("selection") or {}, _config(results, "selection")
    if not selection and not settings:
        return None
    kept = selection.get("kept")
    chosen = f"{len(kept)} features kept" if isinstance(kept, list) else "features kept"
    return (
        f"{chosen} of {selection.get('non_constant', '-')} non-constant: Welch screen "
        f"({settings.get('screen')}) to {settings.get('candidates')} candidates, redundancy "
        f"|r| > {settings.get('redundancy_threshold')} removed, at most "
        f"{settings.get('max_features')}; fitted on training cases of each fit only",
        "selection, study.config.selection",
    )


def _model(results: dict) -> Filled:
    model, settings = results.get("model") or {}, _config(results, "model")
    if not model:
        return None
    kind = model.get("kind", settings.get("kind"))
    if kind == "mlp":
        detail = (
            f"{settings.get('hidden_units')} hidden units, {settings.get('strategy')} over "
            f"{settings.get('rounds')} rounds, {settings.get('local_epochs')} local epochs, "
            f"learning rate {settings.get('learning_rate')}, batch {settings.get('batch_size')}"
        )
    elif kind == "lasso-logistic":
        detail = f"L1 penalty {number(model.get('lasso_lambda'), 4)} by federated inner CV"
    else:
        detail = f"ridge penalty {number(model.get('ridge_lambda', settings.get('ridge_lambda')))}"
    return (
        f"{kind}, {detail}, fitted federatedly (exact Newton on summed terms for the linear "
        "models)",
        "model, study.config.model",
    )


def _validation(results: dict) -> Filled:
    validation, settings = results.get("validation") or {}, _config(results, "validation")
    scheme = validation.get("scheme")
    if scheme is None:
        return None
    detail = {
        "kfold": f"{settings.get('folds')}-fold cross-validation within every site, every case "
        "tested once, figures pooled over the folds' out-of-fold scores",
        "leave-one-site-out": "leave-one-site-out: each site tested by a model trained on the "
        "others",
        "holdout": f"a held-out fraction of {settings.get('holdout_fraction')} of every site",
        "single-site": "one site's cases",
    }.get(scheme, scheme)
    return f"{detail}; {len(validation.get('fits', []))} fits", "validation"


def _partition_level(results: dict) -> Filled:
    scheme = (results.get("validation") or {}).get("scheme")
    if scheme is None:
        return None
    level = "site" if scheme == "leave-one-site-out" else "case (within each site)"
    return f"partitions disjoint at the {level} level", "validation.scheme"


def _heterogeneity(results: dict) -> Filled:
    method = _config(results, "harmonization").get("method")
    if method is None:
        return None
    site_effect = (results.get("harmonization") or {}).get("before", {})
    key = "share_of_features_with_site_effect_p_lt_0.05"
    after = (results.get("harmonization") or {}).get("after", {})
    return (
        f"harmonization {method}; share of features with a site effect (p<0.05) "
        f"{number(site_effect.get(key))} before, {number(after.get(key))} after; each site's "
        "own figures reported",
        "study.config.harmonization, harmonization, metrics.per_site",
    )


def _metrics(results: dict) -> Filled:
    pooled = (results.get("metrics") or {}).get("federated") or {}
    if pooled.get("auc") is None:
        return None
    low, high = pooled.get("auc_ci") or (None, None)
    return (
        f"AUC {number(pooled['auc'])} (95% CI {number(low)}-{number(high)}), sensitivity "
        f"{number(pooled.get('sensitivity'))}, specificity {number(pooled.get('specificity'))}, "
        "calibration slope/intercept and reliability bins",
        "metrics.federated",
    )


def _uncertainty(results: dict) -> Filled:
    pooled = (results.get("metrics") or {}).get("federated") or {}
    if not pooled.get("auc_ci"):
        return None
    return (
        "95% CIs: AUC by DeLong's variance from the summed histograms (certified within "
        f"{number(pooled.get('auc_error_bound'), 4)} of the exact AUC), rates by Wilson",
        "metrics.federated.auc_ci, sensitivity_ci, specificity_ci",
    )


def _discrimination(results: dict) -> Filled:
    metrics = _metrics(results)
    scheme = (results.get("validation") or {}).get("scheme")
    if metrics is None:
        return None
    return f"{metrics[0]}; resampling: {scheme}", "metrics.federated, validation.scheme"


def _calibration(results: dict) -> Filled:
    calibration = ((results.get("metrics") or {}).get("federated") or {}).get("calibration")
    if not calibration or calibration.get("slope") is None:
        return None
    return (
        f"slope {number(calibration['slope'])}, intercept {number(calibration['intercept'])}, "
        f"expected calibration error {number(calibration.get('expected_calibration_error'))}, "
        "on out-of-fold scores",
        "metrics.federated.calibration",
    )


def _recalibration(results: dict) -> Filled:
    recalibration = (results.get("model") or {}).get("recalibration")
    if not isinstance(recalibration, dict):
        return None
    return ", ".join(f"{k} {_value(v)}" for k, v in recalibration.items()), "model.recalibration"


def _value(value) -> str:
    return number(value) if isinstance(value, float) else str(value)


def _threshold(results: dict) -> Filled:
    model = results.get("model") or {}
    if "threshold" not in model:
        return None
    return (
        f"probability of the positive class; threshold {number(model['threshold'])} "
        f"({model.get('threshold_rule', 'rule not recorded')})",
        "model.threshold, model.threshold_rule",
    )


def _class_balance(results: dict) -> Filled:
    pooled = (results.get("metrics") or {}).get("federated") or {}
    if pooled.get("n_positive") is None:
        return None
    return (
        f"{pooled['n_positive']} positive and {pooled['n_negative']} negative test cases; no "
        f"resampling; threshold at the pooled training prevalence",
        "metrics.federated.n_positive, n_negative, model.threshold_rule",
    )


def _sample_size(results: dict) -> Filled:
    balance = _class_balance(results)
    if balance is None:
        return None
    return f"{balance[0].split(';')[0]} (how the size was arrived at: the study's to say)", (
        "metrics.federated.n_positive, n_negative"
    )


def _missing(results: dict) -> Filled:
    sites = results.get("sites") or []
    if not sites:
        return None
    lacking = [
        f"{s['name']} lacks {', '.join(s['sequences_missing'])}"
        for s in sites
        if s.get("sequences_missing")
    ]
    failures = results.get("extraction_failures") or {}
    refused = sum(len(cases) for cases in failures.values())
    return (
        (f"{'; '.join(lacking)}; " if lacking else "no site lacks a study sequence; ")
        + f"{refused} cases refused at QC/extraction (named at their site), none imputed",
        "sites[].sequences_missing, extraction_failures",
    )


def _flow(results: dict) -> Filled:
    sites = results.get("sites") or []
    if not sites:
        return None
    states = "; ".join(
        f"{s['name']} {s.get('status')}" + (f" ({s['reason']})" if s.get("reason") else "")
        for s in sites
    )
    failures = results.get("extraction_failures") or {}
    refused = ", ".join(f"{site} {len(cases)}" for site, cases in failures.items())
    return f"{states}; cases refused at QC per site: {refused or 'none recorded'}", (
        "sites, extraction_failures"
    )


def _harmonization(results: dict) -> Filled:
    return _heterogeneity(results)


def _fits(results: dict) -> Filled:
    fits = (results.get("validation") or {}).get("fits") or []
    if not fits:
        return None
    rows = "; ".join(
        f"{fit['fit']}: "
        + (
            f"{fit['n_positive']} positive / {fit['n_negative']} negative"
            if "n_positive" in fit
            else "counts in the pooled figures only"
        )
        for fit in fits
    )
    return rows, "validation.fits"


def _specification(results: dict) -> Filled:
    model = results.get("model") or {}
    if not isinstance(model.get("coefficients"), dict):
        return None
    return (
        f"intercept {number(model.get('intercept'))} and {len(model['coefficients'])} "
        "coefficients on standardized features (listed in this report), with the pooled scaler",
        "model.coefficients, model.intercept, model.scale",
    )


def _per_site(results: dict) -> Filled:
    per_site = (results.get("metrics") or {}).get("per_site") or {}
    rows = [
        f"{name} AUC {number(f.get('auc'), 2)}"
        for name, f in per_site.items()
        if f.get("status") == "evaluated"
    ]
    return ("; ".join(rows), "metrics.per_site") if rows else None


def _unseen(results: dict) -> dict | None:
    return (results.get("comparison") or {}).get("on_unseen_sites")


def _unseen_sites(results: dict) -> Filled:
    scheme = (results.get("validation") or {}).get("scheme")
    if scheme == "leave-one-site-out":
        return "every site tested by a model that never saw it (leave-one-site-out)", (
            "validation.scheme"
        )
    arms = _unseen(results)
    if arms:
        best = arms.get("federated + ComBat") or next(iter(arms.values()))
        return (
            f"comparison arms on sites each model never saw; federated + ComBat AUC "
            f"{number(best.get('auc'))}",
            "comparison.on_unseen_sites",
        )
    return None


def _validation_sites(results: dict) -> Filled:
    unseen = _unseen_sites(results)
    included = len(_included(results))
    if unseen is not None:
        return f"{unseen[0]}: {included} distinct institutes", unseen[1]
    validation = _validation(results)
    if validation is None:
        return None
    return f"{validation[0]}: internal validation on the same institutes", validation[1]


def _robustness(results: dict) -> Filled:
    arms = _unseen(results)
    if not arms:
        return None
    return "arms compared on unseen sites: " + ", ".join(
        f"{name} AUC {number(f.get('auc'))}" for name, f in arms.items()
    ), "comparison.on_unseen_sites"


def _explainability(results: dict) -> Filled:
    coefficients = (results.get("model") or {}).get("coefficients")
    if not isinstance(coefficients, dict) or not coefficients:
        return None
    top = sorted(coefficients, key=lambda name: -abs(coefficients[name] or 0.0))[:3]
    return f"coefficients on standardized features; largest: {', '.join(top)}", (
        "model.coefficients"
    )


def _final_model(results: dict) -> Filled:
    model = results.get("model") or {}
    if "training_sites" not in model:
        return None
    return (
        f"the final model is refitted on every case of {', '.join(model['training_sites'])} "
        "with the study's settings; the validation fits only estimate its performance",
        "model.training_sites",
    )


def _initialization(results: dict) -> Filled:
    settings = _config(results, "model")
    if not settings:
        return None
    if settings.get("kind") == "mlp":
        return f"weights drawn by each site from the study's seed {settings.get('seed')}", (
            "study.config.model.seed"
        )
    return "Newton iterations from zero coefficients (a convex fit: its optimum)", (
        "study.config.model.kind"
    )


def _software(results: dict) -> Filled:
    versions = results.get("software") or (results.get("study") or {}).get("software")
    if not versions:
        return None
    return ", ".join(f"{k} {v}" for k, v in versions.items()), "software"


def _clinical(results: dict) -> Filled:
    settings = _config(results, "model")
    if not settings:
        return None
    inputs = settings.get("clinical_inputs") or []
    value = f"clinical inputs: {', '.join(inputs)}" if inputs else "radiomics features only"
    return value, "study.config.model.clinical_inputs"


def _privacy(results: dict) -> Filled:
    privacy = results.get("privacy")
    if not privacy:
        return None
    masked = "secure aggregation" if privacy.get("secure_aggregation") else "no secure aggregation"
    budget = privacy.get("differential_privacy")
    noise = (
        f"differential privacy epsilon {number(budget.get('epsilon'))} at delta "
        f"{budget.get('delta')}"
        if budget
        else "no differential privacy"
    )
    return (
        "no image, mask, case id or per-case value left a site; sums leave under "
        f"{masked}; counts below {privacy.get('min_cell_size')} suppressed; {noise}",
        "privacy",
    )


def _limitations(results: dict) -> Filled:
    found = limitations(results)
    return ("; ".join(found), "generated from the run (Limitations section)") if found else None


RULES: dict[str, Callable[[dict], Filled]] = {
    "sites": _sites,
    "census": _census,
    "extraction": _extraction,
    "preprocessing": _preprocessing,
    "features": _features,
    "model": _model,
    "validation": _validation,
    "partition_level": _partition_level,
    "heterogeneity": _heterogeneity,
    "metrics": _metrics,
    "uncertainty": _uncertainty,
    "discrimination": _discrimination,
    "calibration": _calibration,
    "recalibration": _recalibration,
    "threshold": _threshold,
    "class_balance": _class_balance,
    "sample_size": _sample_size,
    "missing": _missing,
    "flow": _flow,
    "harmonization": _harmonization,
    "fits": _fits,
    "specification": _specification,
    "per_site": _per_site,
    "unseen_sites": _unseen_sites,
    "validation_sites": _validation_sites,
    "robustness": _robustness,
    "explainability": _explainability,
    "final_model": _final_model,
    "initialization": _initialization,
    "software": _software,
    "clinical": _clinical,
    "privacy": _privacy,
    "limitations": _limitations,
}
