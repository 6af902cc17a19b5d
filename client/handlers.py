"""What a site answers to each message kind, from its own feature table.

One handler per `Kind`: (site data, study, request) -> the kind's reply dataclass. Every
reply is an aggregate a site may share (DESIGN.md, "What may leave a site"): a request
over fewer than the study's minimum cell size k of cases is refused (`SiteSkipped`, sent
as a reason), and counts below k are suppressed, never sent exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from flwr.app import RecordDict

from fedrad.client import coefficient_bounds, mlp_plan, plan
from fedrad.client.coverage import coverage
from fedrad.client.data import SiteData, SiteSkipped, usable_cases
from fedrad.client.differential_privacy import SiteBudget, privatized
from fedrad.client.evaluated import EvaluatedFits
from fedrad.client.local_pipeline import (
    clinical_inputs,
    combat_design,
    enough,
    harmonized,
    model_inputs,
    predict,
    site_estimates,
    study_features,
)
from fedrad.client.missing_values import check_missing_values
from fedrad.client.request_caps import RequestCaps
from fedrad.client.site_log import site_log
from fedrad.common.config import JOINT_BINS, StudyConfig
from fedrad.common.differential_privacy import NOISED
from fedrad.common.feature_table import read_feature_table, write_feature_table
from fedrad.common.harmonization import combat
from fedrad.common.messages import (
    REFUSED,
    SKIPPED,
    SUMMED,
    CensusReply,
    Empty,
    JointScoresReply,
    Kind,
    LassoRoundReply,
    LossReply,
    MaskedReply,
    MlpRoundReply,
    MlpRoundSums,
    Payload,
    Request,
    ScoresReply,
    ScreenReply,
    SiteEffectReply,
    SiteMetricsReply,
    encode_reply,
)
from fedrad.common.models import lasso, mlp
from fedrad.common.models.logistic import NewtonTerms, newton_terms, with_intercept
from fedrad.common.pipeline import Partition
from fedrad.common.stats.delong import site_joint
from fedrad.common.stats.imputation import ImputationSums, site_imputation_sums
from fedrad.common.stats.metrics import (
    ConfusionCounts,
    calibration_sums,
    exact_auc,
    released_auc,
    released_rate,
    score_histograms,
)
from fedrad.common.stats.moments import CentredSums, Moments
from fedrad.common.stats.selection import CrossSums, class_sums

CALIBRATION_BINS = 10


def class_counts(labels: list[str], classes: tuple[str, ...], k: int) -> list[str]:
    """Case counts per class as they may leave the site. A count below k is "<k", and so
    are the others then (secondary suppression): the site's total leaves it in other
    replies (ComBat's per-batch counts), and total minus the rest would give the cell."""
    counts = [sum(value == label for value in labels) for label in classes]
    if min(counts) < k:
        return [f"<{k}" if count < k else f">={k}" for count in counts]
    return [str(count) for count in counts]


def census(data: SiteData, study: StudyConfig, request: Request) -> CensusReply:
    """Who this site is and what it has: case counts per class (suppressed below k), its
    features and batches, the hashes and extractor versions of its table, and the study
    sequences its features miss."""
    k = study.federation.min_cell_size
    covered = coverage(data.features, study.extraction)
    return CensusReply(
        site=data.name,
        extraction_hash=data.extraction_hash,
        study_hash=study.study_hash,
        features=list(data.features),
        batches=sorted(set(data.batch)),
        cases=class_counts(data.labels, study.federation.classes, k),
        versions=[f"{name}={version}" for name, version in data.versions.items()],
        sequences_missing=list(covered.get("sequences-missing", [])),
    )


def _differs_enough(data: SiteData, partition: Partition, study: StudyConfig, alone: bool):
    """Sums over a fold's training part sit beside the same sums over the cases the fold was
    cut from (the final fit's, or the outer fold's for an inner fold): their difference is
    the fold's test part, so it must hold none or >= k cases of each batch this site has
    (ComBat's rows are per batch) and, for sums released alone, of each class."""
    if partition.scheme != "kfold":
        return
    test, k = data.rows(partition, "test", study), study.federation.min_cell_size
    groups = {"batch": np.asarray(data.batch)} | ({"class": data.y} if alone else {})
    for what, values in groups.items():
        counts = np.unique(values[test], return_counts=True)[1]
        if np.any(counts < k):
            raise SiteSkipped(
                f"{data.name} has fewer than {k} test cases of a {what} in this fold: its "
                "sums over the fold's training cases would differ from the whole's by them"
            )


def _training(
    data: SiteData, partition: Partition, study: StudyConfig, features: list[str] | None = None
) -> np.ndarray:
    """The training rows of `partition`, if the fit's training part holds >= k cases of
    each class: the class rule comes before anything this site releases alone. With the
    fit's `features`, their missing values must meet imputation's rule too."""
    _differs_enough(data, partition, study, alone=True)
    if features is not None:
        check_missing_values(data, features, partition, study, alone=True)
    rows = enough(data.rows(partition, "train", study), data, "training", study)
    fit = data.rows(replace(partition, inner=None), "train", study)
    k, positives = study.federation.min_cell_size, int(data.y[fit].sum())
    if min(positives, int(fit.sum()) - positives) < k:
        raise SiteSkipped(f"{data.name} has fewer than {k} training cases of a class")
    return rows


def _within_parameter_ratio(rows: np.ndarray, params, data: SiteData, study: StudyConfig) -> None:
    """A regression's sums over this site's cases alone leave it only with at most
    federation.max_parameter_ratio parameters per case (else they solve back to its rows);
    inside a masked total the aggregator holds the total to that rule. (A tuned fit's inner
    folds train on fewer cases than the outer fit its selection counted; the pooled
    reference, whose sums leave no site, is not held to it.)"""
    if study.federation.secure_aggregation or data.central:
        return
    p, ratio = len(params.model_features) + 1, study.federation.max_parameter_ratio
    if p > ratio * rows.sum():
        raise SiteSkipped(
            f"{data.name} has {int(rows.sum())} training cases for {p} parameters "
            f"(federation.max_parameter_ratio {ratio:g})"
        )


def _summed_training(
    data: SiteData, partition: Partition, study: StudyConfig, features: list[str] | None = None
) -> np.ndarray:
    """The training rows for a SUMMED reply. Under secure aggregation it leaves the site
    only inside a total over several sites, so the class rule applies to that total (the
    aggregator checks it) and a site with a rare class still contributes; otherwise the
    reply is released alone and the site's own rule applies, ComBat's sums included."""
    if not study.federation.secure_aggregation:
        return _training(data, partition, study, features)
    _differs_enough(data, partition, study, alone=False)
    if features is not None:
        check_missing_values(data, features, partition, study, alone=False)
    return enough(data.rows(partition, "train", study), data, "training", study)


def alone_ok(kind: Kind, data: SiteData, study: StudyConfig, request: Request) -> bool:
    """Whether this site's reply would meet the rules if released alone (the class rule, and
    ComBat's batch rule): only then may a total without it be differenced from one with it."""
    combat_kinds = (Kind.COMBAT_OLS, Kind.COMBAT_SSR, Kind.COMBAT_BATCH_MOMENTS)
    if kind is Kind.CALIBRATION:
        return True  # test cases only, which every site has >= k of before it answers
    if kind in (Kind.SCORES, Kind.JOINT_SCORES):
        return False  # its histograms alone would place each of its test scores on the grid
    try:
        for part in request.parts or [request]:
            if part.partition is None:
                continue
            features = None if part.pipeline is None else part.pipeline.features
            if kind in combat_kinds:
                _combat_training(data, part.partition, study, summed=False, features=features)
            else:
                _training(data, part.partition, study, features)
    except SiteSkipped:
        return False
    return True


def _combat_training(
    data: SiteData,
    partition: Partition,
    study: StudyConfig,
    summed: bool = True,
    features: list[str] | None = None,
) -> np.ndarray:
    """Training rows for ComBat sums, which are per batch: every batch needs >= k cases."""
    select = _summed_training if summed else _training
    rows = select(data, partition, study, features)
    k = study.federation.min_cell_size
    small = [b for b in sorted(set(data.batch[rows])) if np.sum(data.batch[rows] == b) < k]
    if small:
        raise SiteSkipped(f"{data.name} has fewer than {k} training cases of batch(es) {small}")
    return rows


def training_refusal(
    data: SiteData, partition: Partition, study: StudyConfig, alone: bool = False
) -> str | None:
    """Why this site would sit out a fit's training sums, or None: the rule every training
    handler applies (ComBat's batch rule too, when the study harmonizes), for sums inside a
    secure total or, with `alone`, for sums released alone (`fedrad site check` asks both)."""
    try:
        if study.harmonization.method == "combat":
            _combat_training(data, partition, study, summed=not alone)
        else:
            (_training if alone else _summed_training)(data, partition, study)
    except SiteSkipped as skipped:
        return str(skipped)
    return None


def imputation(data: SiteData, study: StudyConfig, request: Request) -> ImputationSums:
    """Per feature, the count and sum of this site's observed training values (the pooled
    training mean, docs/methods.md 2.6)."""
    params, partition = request.pipeline, request.partition
    rows = _summed_training(data, partition, study, params.features)
    return site_imputation_sums(data.columns(params.features)[rows])


def combat_ols(data: SiteData, study: StudyConfig, request: Request) -> combat.OLSSums:
    params, partition = request.pipeline, request.partition
    rows = _combat_training(data, partition, study, features=params.features)
    x = study_features(data, params, rows)
    levels = tuple(request.values["combat.levels"])
    return combat.site_ols_sums(x, data.batch[rows], combat_design(data, rows, study), levels)


def combat_ssr(data: SiteData, study: StudyConfig, request: Request) -> combat.SSRSums:
    params, partition = request.pipeline, request.partition
    rows = _combat_training(data, partition, study, features=params.features)
    x = study_features(data, params, rows)
    fit = params.combat
    sums = combat.site_ssr(
        x, data.batch[rows], combat_design(data, rows, study), fit.ols, fit.levels
    )
    return combat.SSRSums(sums.ssr, int(sums.n))


def combat_batch_moments(data: SiteData, study: StudyConfig, request: Request):
    """Sums of standardized features per batch that spans sites (docs/methods.md 2.1, round 3)."""
    params, partition = request.pipeline, request.partition
    rows = _combat_training(data, partition, study, features=params.features)
    x = study_features(data, params, rows)
    fit, shared = params.combat, list(request.values["combat.split"])
    return combat.site_batch_moments(
        x, data.batch[rows], combat_design(data, rows, study), fit.ols, fit.var_pooled, shared
    )


def screen(data: SiteData, study: StudyConfig, request: Request) -> ScreenReply:
    """Per-class sums of the harmonized training features (Welch screening, docs/methods.md
    3.2) and sums of the clinical model inputs, about the centres the request names
    (zero in the first pass, the pooled means in the second)."""
    params, partition = request.pipeline, request.partition
    rows = _summed_training(data, partition, study, params.features)
    z = harmonized(data, params, partition, rows, study)
    y = data.y[rows].astype(bool)
    width = z.shape[1]
    positives, negatives = class_sums(
        z, y, (_centre(request, "positives", width), _centre(request, "negatives", width))
    )
    clinical = np.empty((int(rows.sum()), 0))
    if study.model.clinical_inputs:  # for scaling only: clinical inputs skip selection
        clinical = clinical_inputs(data, rows, study)
    inputs = CentredSums.of(clinical, _centre(request, "clinical", clinical.shape[1]))
    return ScreenReply(
        positives_n=positives.n,
        positives_s1=positives.s1,
        positives_s2=positives.s2,
        negatives_n=negatives.n,
        negatives_s1=negatives.s1,
        negatives_s2=negatives.s2,
        clinical_s1=inputs.s1,
        clinical_s2=inputs.s2,
    )


def _centre(request: Request, name: str, width: int) -> np.ndarray:
    """The centre `centre.<name>` the request names (zero if none), of the expected width."""
    centre = np.asarray(request.arrays.get(f"centre.{name}", np.zeros(width)), dtype=np.float64)
    if centre.shape != (width,) or not np.all(np.isfinite(centre)):
        raise plan.Refused("value-out-of-bounds", f"centre.{name} of shape {centre.shape}")
    return centre


def site_effect(data: SiteData, study: StudyConfig, request: Request) -> SiteEffectReply:
    """Per-batch moments of the training features before and after harmonization. Their
    missing values hold to imputation's rule per batch; the count of them only as the
    fit's sums did (inside a total under secure aggregation: these moments mix it with the
    unknown observed sums, which hide it)."""
    params, partition = request.pipeline, request.partition
    rows = _combat_training(data, partition, study, summed=False)
    secure = study.federation.secure_aggregation
    check_missing_values(data, params.features, partition, study, alone=not secure)
    stages = {
        "raw": study_features(data, params, rows),
        "harmonized": harmonized(data, params, partition, rows, study),
    }
    batches = sorted(set(data.batch[rows]))
    moments = {
        stage: [Moments.of(values[data.batch[rows] == batch]) for batch in batches]
        for stage, values in stages.items()
    }
    return SiteEffectReply(
        batches=batches,
        counts=[int(np.sum(data.batch[rows] == batch)) for batch in batches],
        raw_mean=np.vstack([part.mean for part in moments["raw"]]),
        raw_m2=np.vstack([part.m2 for part in moments["raw"]]),
        harmonized_mean=np.vstack([part.mean for part in moments["harmonized"]]),
        harmonized_m2=np.vstack([part.m2 for part in moments["harmonized"]]),
    )


def comoments(data: SiteData, study: StudyConfig, request: Request) -> CrossSums:
    """Cross-products of the candidate features about their pooled mean (redundancy
    removal, docs/methods.md 3.1)."""
    params, partition = request.pipeline, request.partition
    rows = _summed_training(data, partition, study, params.features)
    candidates = request.arrays["candidates"].astype(int)
    centre = _centre(request, "candidates", len(candidates))
    return CrossSums.of(harmonized(data, params, partition, rows, study)[:, candidates], centre)


def newton(data: SiteData, study: StudyConfig, request: Request) -> NewtonTerms:
    params, partition = request.pipeline, request.partition
    rows = _summed_training(data, partition, study, params.features)
    _within_parameter_ratio(rows, params, data, study)
    x = with_intercept(model_inputs(data, params, partition, rows, study))
    terms = newton_terms(x, data.y[rows], params.beta)
    coefficient_bounds.check_deviance(terms.deviance, study)
    return _without_deviance(terms, study)


def _without_deviance(terms: NewtonTerms, study: StudyConfig) -> NewtonTerms:
    """Under differential privacy a fit runs a fixed number of Newton iterations, so the
    deviance, whose one case's share has no small bound, is not released."""
    return replace(terms, deviance=0.0) if study.differential_privacy else terms


def loss(data: SiteData, study: StudyConfig, request: Request) -> LossReply:
    """Summed negative log-likelihood at beta over the requested cases (L1 line search and
    held-out deviance, docs/methods.md 3.4)."""
    params, partition = request.pipeline, request.partition
    role = str(request.values.get("role", "train"))
    rows = _summed_training(
        data, partition, study, params.features
    )  # held-out: part of a training fit
    if role == "test":
        rows = enough(data.rows(partition, role, study), data, role, study)
    x = with_intercept(model_inputs(data, params, partition, rows, study))
    total, n = lasso.loss_terms(x, data.y[rows], params.beta)
    return LossReply(float(total), int(n))


def lambda_max_sums(data: SiteData, study: StudyConfig, request: Request) -> lasso.LambdaMaxSums:
    params, partition = request.pipeline, request.partition
    rows = _summed_training(data, partition, study, params.features)
    return lasso.LambdaMaxSums.of(model_inputs(data, params, partition, rows, study), data.y[rows])


def lasso_round(data: SiteData, study: StudyConfig, request: Request) -> LassoRoundReply:
    """Every part of an L1 round answered as its own request of the kind it names
    (`part.values["kind"]`: NEWTON, LOSS or LAMBDA_MAX) would be, laid end to end: the same
    sums in one message. A part this site must refuse (fewer than k cases) refuses the round."""
    handlers = {Kind.NEWTON: newton, Kind.LOSS: loss, Kind.LAMBDA_MAX: lambda_max_sums}
    answers: dict[Kind, list] = {kind: [] for kind in handlers}
    for part in request.parts:
        kind = Kind(part.values["kind"])
        answers[kind].append(handlers[kind](data, study, part))
    terms, losses, sums = answers.values()
    return LassoRoundReply(
        gradient=_flat([t.gradient for t in terms]),
        hessian=_flat([t.hessian for t in terms]),
        deviance=np.array([t.deviance for t in terms], dtype=np.float64),
        terms_n=np.array([t.n for t in terms], dtype=np.int64),
        loss=np.array([r.loss for r in losses], dtype=np.float64),
        loss_n=np.array([r.n for r in losses], dtype=np.int64),
        lambda_n=np.array([s.n for s in sums], dtype=np.int64),
        sum_y=np.array([s.sum_y for s in sums], dtype=np.float64),
        sum_x=_flat([s.sum_x for s in sums]),
        sum_xy=_flat([s.sum_xy for s in sums]),
    )


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    """Arrays laid end to end, each flattened in C order."""
    return np.concatenate([np.ravel(a) for a in arrays] or [np.empty(0)]).astype(np.float64)


def mlp_round(data: SiteData, study: StudyConfig, request: Request) -> MlpRoundReply | MlpRoundSums:
    """A round of a Flower strategy (FedAvg, FedProx, ...): train the MLP locally from the
    global weights (the pipeline's network, accepted by `mlp_plan`), on this site's training
    cases; the update is clipped to model.mlp_update_clip. Under secure aggregation the
    reply is the summed form, so only the weighted mean over sites is ever unmasked."""
    params, partition = request.pipeline, request.partition
    rows = _summed_training(data, partition, study, params.features)
    settings = study.model
    trained, round_loss = mlp.train_local(
        params.network,
        model_inputs(data, params, partition, rows, study),
        data.y[rows],
        epochs=settings.local_epochs,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        proximal_mu=float(request.values.get("proximal-mu", 0.0)),
        seed=settings.seed + int(request.values["server-round"]),
    )
    weights = mlp.clipped(params.network, trained, settings.mlp_update_clip)
    reply = MlpRoundReply(weights, int(rows.sum()), float(round_loss))
    if study.differential_privacy:  # the noise hides one site's update: each counts once
        reply = MlpRoundReply(weights, 1, 0.0)
    return MlpRoundSums.of(reply) if study.federation.secure_aggregation else reply


def _tested(data: SiteData, study: StudyConfig, request: Request):
    """(outcomes, scores, confusion counts per fit) over this site's test cases of every fit
    in the bundle, each fit's counts at its own threshold; >= k test cases or none."""
    y_all, p_all, confusion = [], [], []
    for fit in request.parts:
        params, partition = fit.pipeline, fit.partition
        rows = data.rows(partition, "test", study)
        p = predict(params, model_inputs(data, params, partition, rows, study))
        confusion.append(ConfusionCounts.of(data.y[rows], p, float(fit.values["threshold"])))
        y_all.append(data.y[rows])
        p_all.append(p)
    y, p = np.concatenate(y_all), np.concatenate(p_all)
    k = study.federation.min_cell_size
    if len(y) < k:
        raise SiteSkipped(f"{data.name} has fewer than {k} test cases")
    return y, p, confusion


def _class_rule(y: np.ndarray, data: SiteData, study: StudyConfig) -> None:
    """What this site releases alone of its test cases needs >= k of each class."""
    k, positives = study.federation.min_cell_size, int(y.sum())
    if min(positives, len(y) - positives) < k:
        raise SiteSkipped(f"{data.name} has fewer than {k} test cases of a class")


def scores(data: SiteData, study: StudyConfig, request: Request) -> ScoresReply:
    """Test sums over every fit in the bundle, a SUMMED reply: per-class score counts on
    the public grid, calibration sums, and confusion counts per fit (or summed over the
    fits, when the request says `confusion: summed`). Under secure aggregation only their
    total over sites is read; a study without it sends them in the clear (docs/privacy.md 7)."""
    y, p, confusion = _tested(data, study, request)
    if request.values.get("confusion") == "summed":
        confusion = [sum(confusion, ConfusionCounts(0, 0, 0, 0))]
    positives, negatives = score_histograms(y, p, study.score_bins)
    return ScoresReply(
        positives=positives.astype(np.int64),
        negatives=negatives.astype(np.int64),
        confusion=np.array([[c.tp, c.fn, c.tn, c.fp] for c in confusion], dtype=np.int64),
        calibration=calibration_sums(y, p, CALIBRATION_BINS),
    )


def joint_scores(data: SiteData, study: StudyConfig, request: Request) -> JointScoresReply:
    """A comparison's test counts, a SUMMED reply: per class, this site's test cases of
    every fold by (bin of model a's score, bin of model b's score) on the public joint grid;
    the parts come in pairs (a, b) of one fold (`plan._check_joint`), >= k test cases or
    none, as SCORES (docs/privacy.md 6)."""
    y, scores_a, scores_b = [], [], []
    for first, second in zip(request.parts[::2], request.parts[1::2], strict=True):
        rows = data.rows(first.partition, "test", study)
        y.append(data.y[rows])
        for part, scores in ((first, scores_a), (second, scores_b)):
            scores.append(
                predict(
                    part.pipeline, model_inputs(data, part.pipeline, part.partition, rows, study)
                )
            )
    outcomes = np.concatenate(y)
    k = study.federation.min_cell_size
    if len(outcomes) < k:
        raise SiteSkipped(f"{data.name} has fewer than {k} test cases")
    joint = site_joint(outcomes, np.concatenate(scores_a), np.concatenate(scores_b), JOINT_BINS)
    return JointScoresReply(
        positives=joint.positives.astype(np.int64), negatives=joint.negatives.astype(np.int64)
    )


def site_metrics(data: SiteData, study: StudyConfig, request: Request) -> SiteMetricsReply:
    """This site's own AUC, sensitivity and specificity over its test cases of every fit in
    the bundle, released alone: >= k test cases of each class, the AUC rounded, each rate
    on a public step that leaves >= k counts possible, or withheld (docs/privacy.md 3)."""
    y, p, confusion = _tested(data, study, request)
    _class_rule(y, data, study)
    k, counts = study.federation.min_cell_size, sum(confusion, ConfusionCounts(0, 0, 0, 0))
    sensitivity = released_rate(counts.tp, counts.tp + counts.fn, k) or (None, None)
    specificity = released_rate(counts.tn, counts.tn + counts.fp, k) or (None, None)
    return SiteMetricsReply(
        auc=released_auc(exact_auc(y, p)),
        sensitivity=sensitivity[0],
        sensitivity_step=sensitivity[1],
        specificity=specificity[0],
        specificity_step=specificity[1],
    )


def calibration(data: SiteData, study: StudyConfig, request: Request) -> NewtonTerms:
    """Newton terms of logit P(y) = a + b logit(p) over this site's out-of-fold test cases
    of every fit in the bundle (the calibration line)."""
    logits, outcomes = [], []
    for fit in request.parts:
        params, partition = fit.pipeline, fit.partition
        rows = data.rows(partition, "test", study)
        p = np.clip(
            predict(params, model_inputs(data, params, partition, rows, study)), 1e-12, 1 - 1e-12
        )
        logits.append(np.log(p / (1 - p)))
        outcomes.append(data.y[rows])
    y, logit = np.concatenate(outcomes), np.concatenate(logits)
    enough(np.ones(len(y), dtype=bool), data, "test", study)
    if study.differential_privacy:  # one case's share of the sums is bounded by the clip
        bound = study.differential_privacy.input_clip
        logit = np.clip(logit, -bound, bound)
    terms = newton_terms(with_intercept(logit), y, request.arrays["gamma"])
    coefficient_bounds.check_deviance(terms.deviance, study)
    return _without_deviance(terms, study)


def persist(data: SiteData, study: StudyConfig, request: Request) -> Empty:
    """Keep this site's harmonized table and ComBat estimates on its own disk; send nothing."""
    params, partition = request.pipeline, request.partition
    if data.table_path is None:
        raise SiteSkipped(f"{data.name} has no folder to keep local artifacts in")
    rows = np.ones(len(data.case_ids), dtype=bool)
    folder = data.table_path.parent
    table, provenance = read_feature_table(data.table_path)
    table = usable_cases(table, study).table  # the cases `data` holds, in its order
    table[params.features] = harmonized(data, params, partition, rows, study)
    write_feature_table(table, folder / "harmonized.parquet", {**provenance, "harmonized": True})
    if params.combat is not None:
        estimates = site_estimates(data, params, partition, study)
        np.savez(folder / "combat_estimates.npz", **combat.as_arrays(estimates))
    return Empty()


Handler = Callable[[SiteData, StudyConfig, Request], object]
HANDLERS: dict[Kind, Handler] = {
    Kind.CENSUS: census,
    Kind.IMPUTATION: imputation,
    Kind.COMBAT_OLS: combat_ols,
    Kind.COMBAT_SSR: combat_ssr,
    Kind.COMBAT_BATCH_MOMENTS: combat_batch_moments,
    Kind.SCREEN: screen,
    Kind.COMOMENTS: comoments,
    Kind.SITE_EFFECT: site_effect,
    Kind.NEWTON: newton,
    Kind.LOSS: loss,
    Kind.LAMBDA_MAX: lambda_max_sums,
    Kind.LASSO_ROUND: lasso_round,
    Kind.MLP_ROUND: mlp_round,
    Kind.SCORES: scores,
    Kind.CALIBRATION: calibration,
    Kind.SITE_METRICS: site_metrics,
    Kind.JOINT_SCORES: joint_scores,
    Kind.PERSIST: persist,
}


def handle(
    kind: Kind,
    data: SiteData,
    study: StudyConfig,
    request: Request,
    release: Callable[[object], MaskedReply] | None = None,
    state: RecordDict | None = None,
) -> Payload:
    """Answer one request in the wire format, say why this site sits it out, or refuse a
    request outside its plan (a reason code only). A SUMMED reply goes through `release`
    (masking it) when the request names a release; under secure aggregation it must.
    `state` (the node's context state) is where the site remembers what it was asked and
    sent: the coefficients each fit was asked at, the MLP weights it received, and the
    noised releases its budget was charged."""
    state = RecordDict() if state is None else state
    try:
        plan.check(kind, request, study)
        coefficient_bounds.check_slopes(kind, request, study)
        RequestCaps(state, study, data.fingerprint()).admit(kind, request)
        if kind is Kind.MLP_ROUND:
            mlp_plan.accept(request, study, mlp_plan.FitWeights(state))
        if kind is Kind.JOINT_SCORES:
            EvaluatedFits(state, study).admit(request)
        if kind in SUMMED and release is None and study.federation.secure_aggregation:
            raise plan.Refused(
                "unmasked-sum-outside-plan",
                f"{kind} asked for in the clear in a study with secure aggregation",
            )
        reply = HANDLERS[kind](data, study, request)
        if kind is Kind.SCORES:
            EvaluatedFits(state, study).record(request)
        if study.differential_privacy and kind in NOISED:
            SiteBudget(state, study).charge()
            reply = privatized(kind, reply, request, data, study)
        return encode_reply(kind, release(reply) if release and kind in SUMMED else reply)
    except SiteSkipped as skipped:
        return Payload(values={SKIPPED: str(skipped)})
    except plan.Refused as refused:
        log = site_log(data.name, data.table_path.parent if data.table_path else None)
        return Payload(values={REFUSED: plan.refusal(kind, log, refused)})
