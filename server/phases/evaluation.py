"""Phase 6: every fit scored on its test cases, from aggregates of >= k cases per site.

One request per site carries every fit that tests it, so each site merges all its
out-of-fold scores into blocks of >= k cases; the pooled AUC comes from the blocks, the
sensitivity and specificity from summed confusion counts, calibration from reliability
bins and a federated intercept/slope fit (docs/methods.md 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedrad.common.messages import Kind, Request, ScoresReply
from fedrad.common.models.logistic import fit_newton
from fedrad.common.pipeline import Partition
from fedrad.common.stats.metrics import ConfusionCounts, ScoreBlocks, reliability, wilson_interval
from fedrad.server.federation import Federation, SiteFailed, StudyCannotRun


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

    blocks: ScoreBlocks = field(default_factory=ScoreBlocks.empty)
    block_sites: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    confusion: ConfusionCounts = field(default_factory=lambda: ConfusionCounts(0, 0, 0, 0))
    calibration: np.ndarray = field(default_factory=lambda: np.zeros((3, 10)))  # sum_p, sum_y, n
    per_site: dict = field(default_factory=dict)
    strata: list[tuple[float, float]] = field(default_factory=list)


def _tests(federation: Federation, evaluated: Evaluated) -> dict[int, list[tuple[int, Request]]]:
    """Per included site, (fit index, request) of every fit that tests it."""
    tests: dict[int, list[tuple[int, Request]]] = {}
    for index, (fitted, partitions) in enumerate(evaluated):
        for node, partition in partitions.items():
            if federation.sites[node].status == "included":
                request = Request(fitted.params, partition, values={"threshold": fitted.threshold})
                tests.setdefault(node, []).append((index, request))
    return tests


def evaluate(federation: Federation, evaluated: Evaluated) -> tuple[Evaluation, list[dict]]:
    """Pooled test aggregates over every fit, and each fit's own sensitivity and specificity."""
    tests = _tests(federation, evaluated)

    def scores(nodes: list[int]) -> dict[int, tuple[ScoresReply, ScoreBlocks]]:
        replies = federation.ask(
            Kind.SCORES,
            {node: Request(parts=[request for _, request in tests[node]]) for node in nodes},
        )
        return {
            node: (reply, _checked(node, reply, len(tests[node])))
            for node, reply in replies.items()
        }

    replies, excluded = federation.without_failures("evaluation", list(tests), scores)
    evaluation = Evaluation()
    per_fit = [ConfusionCounts(0, 0, 0, 0) for _ in evaluated]
    outcomes = {}
    for node in tests:
        site = federation.sites[node]
        if site.label in excluded:
            outcomes[node] = {"status": "skipped", "reason": excluded[site.label]}
        elif node not in replies:
            outcomes[node] = {"status": "failed", "reason": site.reason}
    for node, (reply, blocks) in replies.items():
        counts = ConfusionCounts(0, 0, 0, 0)
        rows = np.asarray(reply.confusion, dtype=np.int64).reshape(-1, 4)
        for (index, _), row in zip(tests[node], rows, strict=True):
            fit_counts = ConfusionCounts(*(int(value) for value in row))
            per_fit[index] += fit_counts
            counts += fit_counts
        evaluation.blocks += blocks
        evaluation.block_sites = np.concatenate(
            [evaluation.block_sites, np.full(len(blocks.lo), node)]
        )
        evaluation.confusion += counts
        evaluation.calibration += reply.calibration
        outcomes[node] = {
            "status": "evaluated",
            "auc": reply.local_auc,
            "sensitivity": counts.sensitivity,
            "specificity": counts.specificity,
            "balanced_accuracy": counts.balanced_accuracy,
        }
        if reply.local_auc is not None:  # absent when the site tested one class only
            pairs = blocks.positives.sum() * blocks.negatives.sum()
            evaluation.strata.append((float(reply.local_auc), pairs))
    evaluation.per_site = {
        federation.label(node): outcome for node, outcome in sorted(outcomes.items())
    }
    figures = [
        {
            "sensitivity": counts.sensitivity,
            "specificity": counts.specificity,
            "threshold": fitted.threshold,
            "n_positive": counts.tp + counts.fn,
            "n_negative": counts.tn + counts.fp,
        }
        for counts, (fitted, _) in zip(per_fit, evaluated, strict=True)
    ]
    return evaluation, figures


def _checked(node: int, reply: ScoresReply, n_fits: int) -> ScoreBlocks:
    """A site's score blocks, checked: aligned, each above its lower edge, one confusion
    row per fit it was sent."""
    blocks = ScoreBlocks(
        reply.blocks_lo, reply.blocks_hi, reply.blocks_positives, reply.blocks_negatives
    )
    sizes = {len(blocks.lo), len(blocks.hi), len(blocks.positives), len(blocks.negatives)}
    if len(sizes) != 1 or np.any(blocks.hi <= blocks.lo):
        raise SiteFailed(node, "malformed update: score blocks are inconsistent")
    try:
        counts = np.asarray(reply.confusion, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise SiteFailed(node, "malformed update: confusion counts are not integers") from None
    if counts.shape != (4 * n_fits,) or np.any(counts < 0) or reply.calibration.shape != (3, 10):
        raise SiteFailed(node, "malformed update: confusion or calibration of the wrong shape")
    return blocks


def calibration_line(federation: Federation, evaluated: Evaluated) -> dict:
    """Calibration intercept and slope: logistic regression of the test outcomes on the
    logit of the predicted risk, by Newton from summed site terms over every fit."""
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

        return fit_newton(terms_at, 2)

    try:
        line, _ = federation.without_failures("calibration", list(tests), fit)
    except (StudyCannotRun, ValueError, np.linalg.LinAlgError) as exc:
        return {"line": f"not available: {exc}"}
    return {"intercept": float(line.beta[0]), "slope": float(line.beta[1])}


def pooled_metrics(evaluation: Evaluation) -> dict:
    within = np.array([local_auc * pairs for local_auc, pairs in evaluation.strata])
    auc = evaluation.blocks.auc(within=within, site=evaluation.block_sites)
    counts = evaluation.confusion
    weights = sum(weight for _, weight in evaluation.strata)
    return {
        "auc": auc.auc,
        "auc_error_bound": auc.error_bound,
        "auc_ci": list(auc.confidence_interval()),
        "site_stratified_auc": (
            sum(a * w for a, w in evaluation.strata) / weights if weights else float("nan")
        ),
        "sensitivity": counts.sensitivity,
        "sensitivity_ci": list(wilson_interval(counts.tp, counts.tp + counts.fn)),
        "specificity": counts.specificity,
        "specificity_ci": list(wilson_interval(counts.tn, counts.tn + counts.fp)),
        "balanced_accuracy": counts.balanced_accuracy,
        "calibration": reliability(*evaluation.calibration),
        "n_positive": int(evaluation.blocks.positives.sum()),
        "n_negative": int(evaluation.blocks.negatives.sum()),
    }
