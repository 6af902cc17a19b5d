"""Phase 6: every fit scored on its test cases, from totals over sites and each site's
own figures where its cases allow them.

Fits that test the same sites are asked as one SCORES total over those sites (summed
per-class histograms on the public grid, confusion counts per fit, calibration sums);
when a group tests fewer sites than a total may hold (leave-one-site-out: one each),
those fits are asked together as one total. The pooled AUC comes from the summed
histograms, sensitivity and specificity from summed confusion counts, calibration from
reliability bins and a federated intercept/slope fit (docs/methods.md 4). Each site sends
its own figures alone (SITE_METRICS), rounded as docs/privacy.md 3 says.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import curvature_floor
from fedrad.common.messages import Kind, Request, ScoresReply, SiteMetricsReply
from fedrad.common.models.logistic import fit_newton, recalibrated
from fedrad.common.pipeline import Partition
from fedrad.common.stats.metrics import (
    ConfusionCounts,
    histogram_auc,
    reliability,
    wilson_interval,
)
from fedrad.common.stats.roc import known_counts, released_roc
from fedrad.server.federation import Federation, SiteSkippedFit, StudyCannotRun


@dataclass
class FittedPipeline:
    params: object  # PipelineParams
    model: dict
    sites: list[str]
    selection: dict
    threshold: float


Evaluated = list[tuple[FittedPipeline, dict[int, Partition]]]


@dataclass
class Evaluation:
    """Summed test-set aggregates over every fit, and each site's figures."""

    positives: np.ndarray = field(default_factory=lambda: np.zeros(0))
    negatives: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confusion: ConfusionCounts = field(default_factory=lambda: ConfusionCounts(0, 0, 0, 0))
    calibration: np.ndarray = field(default_factory=lambda: np.zeros((3, 10)))  # sum_p, sum_y, n
    per_site: dict = field(default_factory=dict)
    thresholds: list[float] = field(default_factory=list)  # every fit's, for the ROC's release

    def add(self, total: ScoresReply) -> None:
        empty = not self.positives.size
        self.positives = total.positives + (0 if empty else self.positives)
        self.negatives = total.negatives + (0 if empty else self.negatives)
        self.confusion += ConfusionCounts(*(int(v) for v in total.confusion.sum(axis=0)))
        self.calibration = self.calibration + total.calibration


@dataclass(frozen=True)
class ScoresTotal:
    """Fits asked as one total: per fit figures come from it only when it is `per_fit`
    (every site of the total tests every one of its fits)."""

    fits: list[int]
    per_fit: bool


def _tests(federation: Federation, evaluated: Evaluated) -> dict[int, list[tuple[int, Request]]]:
    """Per included site, (fit index, request) of every fit that tests it."""
    tests: dict[int, list[tuple[int, Request]]] = {}
    for index, (fitted, partitions) in enumerate(evaluated):
        for node, partition in partitions.items():
            if federation.sites[node].status == "included":
                request = Request(fitted.params, partition, values={"threshold": fitted.threshold})
                tests.setdefault(node, []).append((index, request))
    return tests


def scores_totals(tests: dict[int, list[tuple[int, Request]]], fewest: int) -> list[ScoresTotal]:
    """The totals to ask: fits that test the same sites together (as `lasso_round` groups
    its asks), each group of >= `fewest` sites its own total; the groups of fewer sites
    merged into one total if their sites are enough, else every fit in one total (and no
    fit's own figures: a total per group would single out a site, and one total with it
    minus the others would too)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index in sorted({i for parts in tests.values() for i, _ in parts}):
        sites = tuple(node for node, parts in tests.items() if index in dict(parts))
        groups.setdefault(sites, []).append(index)
    large = [ScoresTotal(fits, True) for sites, fits in groups.items() if len(sites) >= fewest]
    small = {sites: fits for sites, fits in groups.items() if len(sites) < fewest}
    if not small:
        return large
    merged = sorted(i for fits in small.values() for i in fits)
    if len({node for sites in small for node in sites}) >= fewest:
        return [*large, ScoresTotal(merged, False)]
    return [ScoresTotal(sorted(i for fits in groups.values() for i in fits), False)]


def evaluate(
    federation: Federation, evaluated: Evaluated, bins: int, site_metrics: bool = True
) -> tuple[Evaluation, list[dict]]:
    """Pooled test aggregates over every fit (histograms of `bins`), each fit's own
    sensitivity and specificity where a total of its own exists, and each site's figures
    (unless `site_metrics` is off: a compared kind's are not asked)."""
    tests = _tests(federation, evaluated)

    def totals(nodes: list[int]) -> list[tuple[ScoresTotal, ScoresReply]]:
        asked = {node: tests[node] for node in nodes}
        return [
            (plan, _scores_total(federation, asked, plan, bins))
            for plan in scores_totals(asked, federation.fewest_sites)
        ]

    released, excluded = federation.without_failures("evaluation", list(tests), totals)
    evaluation = Evaluation(thresholds=[fitted.threshold for fitted, _ in evaluated])
    per_fit: dict[int, ConfusionCounts] = {}
    for plan, total in released:
        evaluation.add(total)
        if plan.per_fit:
            for index, row in zip(plan.fits, total.confusion, strict=True):
                per_fit[index] = ConfusionCounts(*(int(value) for value in row))
    contributed = [
        node
        for node in tests
        if federation.sites[node].status == "included" and federation.label(node) not in excluded
    ]
    if site_metrics:
        evaluation.per_site = site_figures(federation, tests, contributed, excluded)
    fewest = federation.fewest_sites
    figures = [
        _fit_figures(per_fit.get(index), fitted.threshold, fewest)
        for index, (fitted, _) in enumerate(evaluated)
    ]
    return evaluation, figures


def _scores_total(federation, tests, plan: ScoresTotal, bins: int) -> ScoresReply:
    """One SCORES total over the sites that test the fits of `plan`."""
    confusion = "per-fit" if plan.per_fit else "summed"
    requests = {
        node: Request(
            parts=[request for index, request in parts if index in plan.fits],
            values={"confusion": confusion},
        )
        for node, parts in tests.items()
        if any(index in plan.fits for index, _ in parts)
    }
    rows = len(plan.fits) if plan.per_fit else 1
    return federation.total(Kind.SCORES, requests, lambda total: _misshapen(total, rows, bins))


def _misshapen(total: ScoresReply, rows: int, bins: int) -> str | None:
    """Why a SCORES total is not what was asked, if it is not."""
    shapes = {
        "positives": (bins,),
        "negatives": (bins,),
        "confusion": (rows, 4),
        "calibration": (3, 10),
    }
    for name, shape in shapes.items():
        value = getattr(total, name)
        if value.shape != shape:
            return f"{name} has shape {value.shape}, not {shape}"
        if name != "calibration" and np.any(value < 0):
            return f"{name} holds negative counts"
    return None


def _fit_figures(counts: ConfusionCounts | None, threshold: float, fewest: int) -> dict:
    """A fit's own figures from its total, or why there are none."""
    if counts is None:
        return {
            "sensitivity": None,
            "specificity": None,
            "threshold": threshold,
            "reason": f"its test sites are too few for a total of their own (fewer than "
            f"{fewest}); its cases are in the pooled figures",
        }
    return {
        "sensitivity": counts.sensitivity,
        "specificity": counts.specificity,
        "threshold": threshold,
        "n_positive": counts.tp + counts.fn,
        "n_negative": counts.tn + counts.fp,
    }


def site_figures(
    federation: Federation,
    tests: dict[int, list[tuple[int, Request]]],
    contributed: list[int],
    excluded: dict[str, str],
) -> dict:
    """Each site's own figures (SITE_METRICS, sent alone), or why it has none."""
    outcomes = {}
    for node in tests:
        site = federation.sites[node]
        if site.label in excluded:
            outcomes[node] = {"status": "skipped", "reason": excluded[site.label]}
        elif site.status != "included":
            outcomes[node] = {"status": "failed", "reason": site.reason}
    asked = {node: Request(parts=[r for _, r in tests[node]]) for node in contributed}
    replies, problems = federation.gather(Kind.SITE_METRICS, asked)
    for node, problem in problems.items():
        if isinstance(problem, SiteSkippedFit):
            outcomes[node] = {"status": "skipped", "reason": str(problem)}
        else:
            federation.set_aside(problem, "site metrics")
            outcomes[node] = {"status": "failed", "reason": str(problem)}
    for node, reply in replies.items():
        outcomes[node] = _site_outcome(reply)
    return {federation.label(node): outcome for node, outcome in sorted(outcomes.items())}


def _site_outcome(reply: SiteMetricsReply) -> dict:
    """A site's figures as results.json keeps them; a withheld rate is None, with why."""
    outcome = {
        "status": "evaluated",
        "auc": reply.auc,
        "sensitivity": reply.sensitivity,
        "sensitivity_step": reply.sensitivity_step,
        "specificity": reply.specificity,
        "specificity_step": reply.specificity_step,
        "balanced_accuracy": None,
    }
    if reply.sensitivity is None or reply.specificity is None:
        outcome["reason"] = (
            "a rate withheld: a cell below federation.min_cell_size, or too few test cases "
            "of the class to round it without showing a count"
        )
    else:
        outcome["balanced_accuracy"] = (reply.sensitivity + reply.specificity) / 2
    return outcome


def calibration_line(federation: Federation, evaluated: Evaluated, study: StudyConfig) -> dict:
    """Calibration intercept and slope: logistic regression of the test outcomes on the
    logit of the predicted risk, by Newton from summed site terms over every fit, stopped
    as the study's Newton fits are."""
    tests = _tests(federation, evaluated)

    def fit(nodes: list[int]):
        def terms_at(gamma: np.ndarray):
            requests = {  # the parts' thresholds are the scores' business, not calibration's
                node: Request(
                    parts=[Request(r.pipeline, r.partition) for _, r in tests[node]],
                    arrays={"gamma": gamma},
                )
                for node in nodes
            }
            return federation.total(Kind.CALIBRATION, requests)

        tolerance, iterations = study.newton_stopping
        floor = curvature_floor(study.differential_privacy, 2)
        return fit_newton(
            terms_at, 2, tolerance=tolerance, max_iterations=iterations, curvature_floor=floor
        )

    try:
        line, _ = federation.without_failures("calibration", list(tests), fit)
    except (StudyCannotRun, ValueError, np.linalg.LinAlgError) as exc:
        return {"line": f"not available: {exc}"}
    return {"intercept": float(line.beta[0]), "slope": float(line.beta[1])}


def cross_fitted_calibration(
    federation: Federation, evaluated: Evaluated, study: StudyConfig
) -> dict:
    """The calibration line of recalibrated out-of-fold scores, each fit's test scores
    recalibrated by the line fitted on the other fits' test scores only, so no score is
    recalibrated by a line it helped fit (docs/methods.md 4.3)."""
    crossed = []
    for index, (fitted, partitions) in enumerate(evaluated):
        line = calibration_line(federation, evaluated[:index] + evaluated[index + 1 :], study)
        if "slope" not in line:
            return line
        beta = recalibrated(fitted.params.beta, line["intercept"], line["slope"])
        crossed.append((replace(fitted, params=replace(fitted.params, beta=beta)), partitions))
    return calibration_line(federation, crossed, study)


def recalibrate(final: FittedPipeline, calibration: dict) -> FittedPipeline:
    """The final model with its linear predictor x'beta replaced by a + b x'beta, a and b
    the calibration line of the out-of-fold scores (docs/methods.md 4.3); its model
    summary keeps the line, the coefficients before, and the cross-fitted check."""
    if "slope" not in calibration:
        note = {"applied": False, "reason": f"no calibration line: {calibration.get('line')}"}
        return replace(final, model=final.model | {"recalibration": note})
    intercept, slope = calibration["intercept"], calibration["slope"]
    beta = recalibrated(final.params.beta, intercept, slope)
    features = final.params.model_features
    recalibration = {
        "applied": True,
        "intercept": intercept,
        "slope": slope,
        "fitted_on": "the out-of-fold test scores of the k-fold fits (logit of their "
        "predicted risk), every case once",
        "before": {
            "intercept": final.model["intercept"],
            "coefficients": final.model["coefficients"],
        },
        "cross_fitted": calibration.get("recalibrated"),
    }
    model = final.model | {
        "intercept": float(beta[0]),
        "coefficients": dict(zip(features, map(float, beta[1:]), strict=True)),
        "recalibration": recalibration,
    }
    return replace(final, params=replace(final.params, beta=beta), model=model)


def pooled_metrics(evaluation: Evaluation, min_cell_size: int) -> dict:
    """The pooled figures, and the ROC points that make no cell below `min_cell_size`
    readable (common/stats/roc.py), all from the totals already read."""
    auc = histogram_auc(evaluation.positives, evaluation.negatives)
    counts = evaluation.confusion
    bins = len(evaluation.positives)
    known = known_counts(evaluation.calibration, counts, evaluation.thresholds, bins, min_cell_size)
    roc = released_roc(evaluation.positives, evaluation.negatives, min_cell_size, known)
    return {
        "auc": auc.auc,
        "auc_error_bound": auc.error_bound,
        "auc_ci": list(auc.confidence_interval()),
        "sensitivity": counts.sensitivity,
        "sensitivity_ci": list(wilson_interval(counts.tp, counts.tp + counts.fn)),
        "specificity": counts.specificity,
        "specificity_ci": list(wilson_interval(counts.tn, counts.tn + counts.fp)),
        "balanced_accuracy": counts.balanced_accuracy,
        "calibration": reliability(*evaluation.calibration, min_cell_size),
        "roc": roc | {"cells_at_least": min_cell_size},
        "n_positive": int(evaluation.positives.sum()),
        "n_negative": int(evaluation.negatives.sum()),
    }
