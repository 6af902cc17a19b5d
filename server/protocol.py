"""The study protocol the aggregator drives (DESIGN.md phases 1-6).

Census, then for every fit of the validation design: distributed ComBat ->
federated screening and redundancy removal -> pooled standardization -> exact
Newton logistic regression, each from sums the sites send; then evaluation from
summed histograms. A site that errs, times out or sends a malformed or non-finite
update is named and set aside, and the fit in progress restarts without it, so
every model is exactly the pooled fit of the sites it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedrad.common.config import StudyConfig, extractor_versions
from fedrad.common.feature_table import clinical_input_names
from fedrad.common.harmonization import combat
from fedrad.common.messages import payload_to_bytes
from fedrad.common.models import lasso, mlp
from fedrad.common.models.logistic import NewtonTerms, fit_newton, sum_terms
from fedrad.common.pipeline import CombatFit, Partition, Payload, PipelineParams, bundle
from fedrad.common.stats.metrics import (
    ConfusionCounts,
    ScoreBlocks,
    reliability,
    wilson_interval,
)
from fedrad.common.stats.moments import Moments, Standardizer, group_f_statistic, pool_moments
from fedrad.common.stats.selection import (
    Comoments,
    drop_redundant,
    non_constant_mask,
    pool_comoments,
    welch_t,
)
from fedrad.server.federation import GridTransport, NodeSubset
from fedrad.server.strategies import make_strategy


class SiteFailed(Exception):
    """A site's reply is missing, an error, or malformed; the message names the site."""

    def __init__(self, node_id: int, reason: str):
        super().__init__(reason)
        self.node_id = node_id


class SiteSkippedFit(Exception):
    """A site cannot contribute to this fit (e.g. too few cases of a class in it)."""

    def __init__(self, node_id: int, reason: str):
        super().__init__(reason)
        self.node_id = node_id


class ProtocolError(RuntimeError):
    """The study cannot go on (e.g. no usable site remains)."""


@dataclass
class SiteRecord:
    node_id: int
    name: str = ""
    status: str = "pending"
    reason: str = ""
    cases: dict[str, str] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    sequences_missing: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or f"node {self.node_id}"

    def set_aside(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason


@dataclass
class FittedPipeline:
    params: PipelineParams
    model: dict
    sites: list[str]
    selection: dict
    threshold: float


@dataclass
class Evaluation:
    """Summed test-set aggregates over every fit, and each site's figures."""

    blocks: ScoreBlocks = field(default_factory=ScoreBlocks.empty)
    block_sites: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    confusion: ConfusionCounts = field(default_factory=lambda: ConfusionCounts(0, 0, 0, 0))
    calibration: np.ndarray = field(default_factory=lambda: np.zeros((3, 10)))  # sum_p, sum_y, n
    per_site: dict = field(default_factory=dict)
    strata: list[tuple[float, float]] = field(default_factory=list)


class StudyProtocol:
    """Runs one study over the nodes of a transport and returns its results dict."""

    def __init__(
        self,
        transport: GridTransport,
        study: StudyConfig,
        expected_sites: int | None = None,
        log: Callable[[str], None] = print,
    ):
        self.transport = transport
        self.study = study
        self.expected_sites = expected_sites or study.federation.min_sites
        self.log = log
        self.sites: dict[int, SiteRecord] = {}
        self.rounds: list[dict] = []

    # -- messaging --------------------------------------------------------------------
    def _ask(self, requests: dict[int, tuple[str, Payload]]) -> dict[int, Payload]:
        """Replies of all `requests`; a silent site raises SiteFailed, a skipping one
        SiteSkippedFit, each naming the site."""
        replies, failed = self.transport.ask(requests)
        for node, reason in failed.items():
            raise SiteFailed(node, reason)
        for node, reply in replies.items():
            if "skipped" in reply.values:
                raise SiteSkippedFit(node, str(reply.values["skipped"]))
        return replies

    def _ask_training(
        self,
        kind: str,
        nodes: list[int],
        params: PipelineParams,
        partitions: dict[int, Partition],
        arrays: dict | None = None,
        values: dict | None = None,
    ) -> dict[int, Payload]:
        """Ask `nodes` for `kind` over their training parts, given the pipeline so far."""
        requests = {}
        for node in nodes:
            payload = params.to_payload(partitions[node])
            payload.arrays |= arrays or {}
            payload.values |= values or {}
            requests[node] = (kind, payload)
        return self._ask(requests)

    # -- phase 1: census --------------------------------------------------------------
    def census(self) -> list[str]:
        """Ask every site who it is and what it has; refuse sites that do not match."""
        nodes = self.transport.wait_for_nodes(self.expected_sites, timeout_s=120.0)
        if len(nodes) < self.study.federation.min_sites:
            raise ProtocolError(
                f"only {len(nodes)} site(s) connected; the study needs "
                f"{self.study.federation.min_sites}"
            )
        self.sites = {node: SiteRecord(node) for node in nodes}
        replies, failed = self.transport.ask({node: ("census", Payload()) for node in nodes})
        for node, reason in failed.items():
            self.sites[node].set_aside("failed", reason)
        for node, reply in replies.items():
            values, site = reply.values, self.sites[node]
            site.name = str(values["site"])
            site.features = list(values["features"])
            site.batches = list(values["batches"])
            site.sequences_missing = list(values.get("sequences-missing", []))
            site.cases = {
                label: str(values[f"cases.{label}"]) for label in self.study.federation.classes
            }
            if not site.features:
                site.set_aside("refused", "its feature table has no study feature")
            elif values["extraction-hash"] != self.study.extraction_hash:
                site.set_aside("refused", self._hash_mismatch(values))
            elif values["study-hash"] != self.study.study_hash:
                site.set_aside("refused", "its study settings differ from the aggregator's study")
            else:
                site.status = "included"
        # Node ids are random per run; ordering by site name makes every sum run in the same
        # order, so a rerun reproduces the model bit for bit.
        self.sites = dict(sorted(self.sites.items(), key=lambda item: item[1].label))
        included = self.included()
        if not included:
            raise ProtocolError("no site passed the census: " + self._reasons())
        # sites missing a sequence or region shrink the study to the features all share
        features = sorted(set.intersection(*(set(self.sites[n].features) for n in included)))
        if not features:
            raise ProtocolError("the included sites share no feature")
        for site in sorted((self.sites[n] for n in included), key=lambda s: s.label):
            missing = f", missing {site.sequences_missing}" if site.sequences_missing else ""
            self.log(f"census: {site.label} cases {site.cases}{missing}")
        return features

    def _hash_mismatch(self, values: dict) -> str:
        """Why a site's extraction hash differs: the library versions that differ from the
        aggregator's, which re-extracting alone would not fix, or else the settings."""
        mismatch = (
            f"extraction hash {values['extraction-hash']} differs from the study's "
            f"{self.study.extraction_hash}"
        )
        differing = [
            f"{name} {values[f'version.{name}']} (study: {version})"
            for name, version in extractor_versions().items()
            if values.get(f"version.{name}", version) != version
        ]
        if differing:
            return f"{mismatch}: {', '.join(differing)}; install the study's versions, re-extract"
        return f"{mismatch}: re-extract with the study config"

    # -- phases 3-5: one pipeline fit -------------------------------------------------
    def fit(
        self, features: list[str], partitions: dict[int, Partition], tag: str
    ) -> FittedPipeline:
        """Fit harmonization, selection, scaling and model on the training parts; a site
        that cannot contribute is left out of this fit (named), a failing one set aside."""
        training = [node for node, part in partitions.items() if part.scheme != "unseen"]
        excluded: dict[str, str] = {}
        while True:
            training = [node for node in training if self.sites[node].status == "included"]
            if not training:
                raise ProtocolError(f"{tag}: no site can contribute: " + self._reasons())
            try:
                fitted = self._fit_once(features, training, partitions, tag)
                fitted.selection["excluded_sites"] = excluded
                return fitted
            except SiteSkippedFit as skip:
                excluded[self.sites[skip.node_id].label] = str(skip)
                self.log(f"{tag}: {self.sites[skip.node_id].label} left out of this fit ({skip})")
                training.remove(skip.node_id)
            except SiteFailed as failure:
                self._set_aside(failure)

    def _fit_once(self, features, nodes, partitions, tag) -> FittedPipeline:
        params = PipelineParams(features=features)
        if self.study.harmonization.method == "combat":
            params = self._fit_combat(params, nodes, partitions)
        params, selection, scaler_moments = self._select(params, nodes, partitions)
        params = replace(params, standardizer=Standardizer.from_moments(scaler_moments))
        fit_model = {
            "ridge-logistic": self._fit_logistic,
            "lasso-logistic": self._fit_lasso,
            "mlp": self._fit_network,
        }[self.study.model.kind]
        params, model = fit_model(params, nodes, partitions, tag)
        return FittedPipeline(
            params=params,
            model=model,
            sites=sorted(self.sites[n].label for n in nodes),
            selection=selection,
            threshold=selection.pop("training_prevalence"),
        )

    def _fit_combat(
        self, params: PipelineParams, nodes, partitions, levels: tuple[str, ...] | None = None
    ) -> PipelineParams:
        if levels is None:
            levels = tuple(sorted({batch for n in nodes for batch in self.sites[n].batches}))
        replies = self._ask_training(
            "combat-ols", nodes, params, partitions, values={"combat.levels": list(levels)}
        )
        total, site_counts = None, []
        for node, reply in replies.items():
            sums = combat.OLSSums(reply.arrays["dtd"], reply.arrays["dty"], reply.arrays["counts"])
            _check_finite(node, dtd=sums.dtd, dty=sums.dty)
            total = sums if total is None else total + sums
            site_counts.append(sums.counts)
        if not total.counts.all():  # a batch with no training case in this fit, e.g. a fold
            trained = tuple(level for level, n in zip(levels, total.counts, strict=True) if n)
            return self._fit_combat(params, nodes, partitions, trained)
        ols = combat.pooled_ols(total)
        provisional = PipelineParams(
            params.features, CombatFit(ols, np.ones_like(ols.alpha), levels)
        )
        replies = self._ask_training("combat-ssr", nodes, provisional, partitions)
        ssr = None
        for node, reply in replies.items():
            part = combat.SSRSums(reply.arrays["ssr"], int(reply.values["n"]))
            _check_finite(node, ssr=part.ssr)
            ssr = part if ssr is None else ssr + part
        fit = CombatFit(ols, combat.pooled_variance(ssr), levels)
        split = combat.split_batches(site_counts, levels)
        if split:
            shared = self._split_batch_effects(
                replace(params, combat=fit), split, nodes, partitions
            )
            fit = replace(fit, shared=shared)
        return replace(params, combat=fit)

    def _split_batch_effects(self, params: PipelineParams, split, nodes, partitions):
        """Empirical Bayes for batches that span sites, from their summed moments: the sites
        holding one batch each see only part of it (METHODS.md 2.1, round 3)."""
        replies = self._ask_training(
            "combat-batch-moments",
            nodes,
            params,
            partitions,
            values={"combat.split": list(split)},
        )
        total = None
        for node, reply in replies.items():
            arrays = reply.arrays
            part = combat.BatchMoments(arrays["counts"], arrays["s1"], arrays["s2"])
            _check_finite(node, s1=part.s1, s2=part.s2)
            total = part if total is None else total + part
        settings = self.study.harmonization
        return combat.pooled_batch_effects(
            total, split, eb=settings.empirical_bayes, parametric=settings.parametric
        )

    def _select(self, params: PipelineParams, nodes, partitions):
        """Near-constant filter and Welch screening from per-class moments, then redundancy
        removal from the pooled correlation of the best candidates (METHODS.md 3.1-3.2)."""
        settings = self.study.selection
        replies = self._ask_training("screen", nodes, params, partitions)
        inputs = self.study.model.clinical_inputs
        positives, negatives, clinical = [], [], []
        for node, reply in replies.items():
            arrays, values = reply.arrays, reply.values
            _check_finite(node, **arrays)
            if inputs and "clinical.mean" not in arrays:
                raise SiteFailed(node, "its screening reply lacks the clinical input moments")
            positives.append(
                Moments(
                    int(values["positives.n"]), arrays["positives.mean"], arrays["positives.m2"]
                )
            )
            negatives.append(
                Moments(
                    int(values["negatives.n"]), arrays["negatives.mean"], arrays["negatives.m2"]
                )
            )
            if inputs:
                n = int(values["positives.n"]) + int(values["negatives.n"])
                clinical.append(Moments(n, arrays["clinical.mean"], arrays["clinical.m2"]))
        pooled_pos, pooled_neg = pool_moments(positives), pool_moments(negatives)
        everything = pooled_pos.combine(pooled_neg)
        keep = non_constant_mask(everything, min_cv=settings.min_coefficient_of_variation)
        if settings.screen == "welch":
            score = np.abs(welch_t(pooled_pos, pooled_neg).t)
        else:
            score = np.zeros(len(params.features))
        # Rounded so that features equal up to float noise (e.g. GLCM SumAverage is twice
        # JointAverage) rank by name order whatever order the sites' sums were added in.
        score = np.where(keep, np.round(np.nan_to_num(score, nan=0.0), 9), -np.inf)
        order = np.argsort(-score, kind="stable")
        candidates = order[: min(settings.candidates, int(keep.sum()))]
        replies = self._ask_training(
            "comoments",
            nodes,
            params,
            partitions,
            arrays={"candidates": candidates.astype(np.int64)},
        )
        parts = []
        for node, reply in replies.items():
            _check_finite(node, **reply.arrays)
            parts.append(
                Comoments(int(reply.values["n"]), reply.arrays["mean"], reply.arrays["cross"])
            )
        correlation = pool_comoments(parts).correlation()
        kept = drop_redundant(
            correlation,
            score[candidates],
            threshold=settings.redundancy_threshold,
            max_features=settings.max_features,
        )
        selected = np.sort(candidates[np.asarray(kept, dtype=int)])
        moments = Moments(everything.n, everything.mean[selected], everything.m2[selected])
        if inputs:
            pooled_clinical = pool_moments(clinical)
            moments = Moments(
                moments.n,
                np.concatenate([moments.mean, pooled_clinical.mean]),
                np.concatenate([moments.m2, pooled_clinical.m2]),
            )
            params = replace(
                params,
                clinical_inputs=tuple(clinical_input_names(inputs, self.study.clinical)),
            )
        selection = {
            "training_prevalence": pooled_pos.n / everything.n,
            "n_features": len(params.features),
            "non_constant": int(keep.sum()),
            "kept": [params.features[i] for i in selected],
            "welch_t": {params.features[i]: float(score[i]) for i in selected},
        }
        return replace(params, selected=selected), selection, moments

    def _fit_logistic(self, params: PipelineParams, nodes, partitions, tag: str):
        settings = self.study.model
        n_params = len(params.model_features) + 1
        summed_terms = self._summed_terms(params, nodes, partitions)

        def record(iteration: int, deviance: float) -> None:
            self.rounds.append(
                {"fit": tag, "phase": "newton", "iteration": iteration, "deviance": deviance}
            )

        fit = fit_newton(
            summed_terms,
            n_params,
            ridge_lambda=settings.ridge_lambda,
            tolerance=settings.newton_tolerance,
            max_iterations=settings.max_newton_iterations,
            on_iteration=record,
        )
        self.log(
            f"{tag}: {len(nodes)} sites, {n_params - 1} features, "
            f"{fit.iterations} Newton iterations"
        )
        model = {
            "kind": settings.kind,
            "ridge_lambda": settings.ridge_lambda,
            "scale": "coefficients act on harmonized features standardized with the pooled "
            "training mean and standard deviation",
            "iterations": fit.iterations,
            "converged": fit.converged,
            "intercept": float(fit.beta[0]),
            "coefficients": dict(zip(params.model_features, map(float, fit.beta[1:]), strict=True)),
        }
        return replace(params, beta=fit.beta), model

    def _summed_terms(self, params, nodes, partitions) -> Callable[[np.ndarray], NewtonTerms]:
        """Sum of the sites' Newton terms at beta over the training part of `partitions`."""
        n_params = len(params.model_features) + 1

        def summed_terms(beta: np.ndarray) -> NewtonTerms:
            replies = self._ask_training("newton", nodes, replace(params, beta=beta), partitions)
            terms = []
            for node, reply in replies.items():
                gradient, hessian = reply.arrays["gradient"], reply.arrays["hessian"]
                deviance = np.array(float(reply.values["deviance"]))
                _check_shape(node, (n_params,), gradient=gradient)
                _check_shape(node, (n_params, n_params), hessian=hessian)
                _check_finite(node, gradient=gradient, hessian=hessian, deviance=deviance)
                terms.append(
                    NewtonTerms(gradient, hessian, float(deviance), int(reply.values["n"]))
                )
            return sum_terms(terms)

        return summed_terms

    def _summed_loss(self, params, nodes, partitions, role: str = "train"):
        """Sum of the sites' negative log-likelihoods at beta (and their case count)."""

        def summed_loss(beta: np.ndarray) -> tuple[float, int]:
            replies = self._ask_training(
                "loss", nodes, replace(params, beta=beta), partitions, values={"role": role}
            )
            parts = []
            for node, reply in replies.items():
                _check_finite(node, loss=np.array(float(reply.values["loss"])))
                parts.append((float(reply.values["loss"]), int(reply.values["n"])))
            return lasso.sum_losses(parts)

        return summed_loss

    def _fit_lasso(self, params: PipelineParams, nodes, partitions, tag: str):
        """L1 logistic regression by proximal Newton (METHODS.md 3.4); the penalty comes from
        the study or from federated inner cross-validation on the training part."""
        settings = self.study.model
        n_params = len(params.model_features) + 1
        penalty, curve = settings.lasso_lambda, None
        if penalty is None:
            replies = self._ask_training("lambda-max", nodes, params, partitions)
            sums = [
                lasso.LambdaMaxSums(
                    int(r.values["n"]),
                    float(r.values["sum_y"]),
                    r.arrays["sum_x"],
                    r.arrays["sum_xy"],
                )
                for r in replies.values()
            ]
            lambdas = lasso.lambda_path(
                lasso.lambda_max(sum(sums[1:], sums[0])),
                settings.lasso_path_length,
                settings.lasso_min_ratio,
            )
            folds = []
            for inner in range(self.study.validation.inner_folds):
                inner_parts = {node: replace(partitions[node], inner=inner) for node in nodes}
                held_out_loss = self._summed_loss(params, nodes, inner_parts, role="test")
                folds.append(
                    lasso.LassoFold(
                        self._summed_terms(params, nodes, inner_parts),
                        self._summed_loss(params, nodes, inner_parts),
                        lambda beta, loss=held_out_loss: _deviance_summary(*loss(beta)),
                    )
                )
            cv = lasso.cross_validate_lasso(folds, lambdas, n_params)
            penalty = cv.lambda_min
            curve = {"lambdas": cv.lambdas.tolist(), "mean_deviance": cv.criteria.tolist()}
        fit = lasso.fit_lasso(
            self._summed_terms(params, nodes, partitions),
            self._summed_loss(params, nodes, partitions),
            n_params,
            penalty,
        )
        self.log(f"{tag}: L1 lambda {penalty:.4g}, {int(np.sum(fit.beta[1:] != 0))} nonzero")
        model = {
            "kind": settings.kind,
            "lasso_lambda": penalty,
            "cross_validation": curve,
            "iterations": fit.iterations,
            "converged": fit.converged,
            "intercept": float(fit.beta[0]),
            "coefficients": dict(zip(params.model_features, map(float, fit.beta[1:]), strict=True)),
        }
        return replace(params, beta=fit.beta), model

    def _fit_network(self, params: PipelineParams, nodes, partitions, tag: str):
        """An MLP trained by a Flower strategy on the training sites (not exact: FedAvg & co.)."""
        settings = self.study.model
        (partition,) = {partitions[node] for node in nodes}  # every design trains one way
        weights = mlp.initial_weights(
            len(params.model_features), settings.hidden_units, settings.seed
        )
        config = ConfigRecord(
            {"pipeline": payload_to_bytes(params.to_payload(partition)), "server-round": 0}
        )
        result = make_strategy(settings, len(nodes)).start(
            grid=NodeSubset(self.transport.grid, nodes),
            initial_arrays=ArrayRecord({name: Array(value) for name, value in weights.items()}),
            num_rounds=settings.rounds,
            timeout=self.study.federation.round_timeout_s,
            train_config=config,
        )
        network = {name: array.numpy() for name, array in result.arrays.items()}
        losses = [
            float(metrics["train-loss"])
            for _, metrics in sorted(result.train_metrics_clientapp.items())
        ]
        for round_number, loss in enumerate(losses, start=1):
            self.rounds.append(
                {"fit": tag, "phase": "mlp", "round": round_number, "train_loss": loss}
            )
        self.log(f"{tag}: {len(nodes)} sites, {settings.strategy}, {settings.rounds} rounds")
        model = {
            "kind": settings.kind,
            "strategy": settings.strategy,
            "rounds": settings.rounds,
            "hidden_units": settings.hidden_units,
            "features": params.model_features,
            "n_parameters": int(sum(value.size for value in network.values())),
            "train_loss_by_round": losses,
        }
        return replace(params, network=network), model

    # -- phase 6: evaluation ----------------------------------------------------------
    def evaluate(self, evaluated: list[tuple[FittedPipeline, dict[int, Partition]]]) -> tuple:
        """Score every site's test cases under every fit that tests it, in one request per
        site, so each site merges all its out-of-fold scores into blocks of >= k cases.
        Returns the pooled aggregates and each fit's own sensitivity and specificity."""
        bundles: dict[int, list[tuple[int, Payload]]] = {}
        for index, (fitted, partitions) in enumerate(evaluated):
            for node, partition in partitions.items():
                if self.sites[node].status == "included":
                    payload = fitted.params.to_payload(partition)
                    payload.values["threshold"] = fitted.threshold
                    bundles.setdefault(node, []).append((index, payload))
        requests = {
            node: ("scores", bundle([p for _, p in fits])) for node, fits in bundles.items()
        }
        replies, failed = self.transport.ask(requests)
        evaluation = Evaluation()
        per_fit = [ConfusionCounts(0, 0, 0, 0) for _ in evaluated]
        outcomes = {node: {"status": "failed", "reason": reason} for node, reason in failed.items()}
        for node, reply in replies.items():
            if "skipped" in reply.values:
                outcomes[node] = {"status": "skipped", "reason": reply.values["skipped"]}
                continue
            try:
                blocks = _blocks(node, reply)
                _check_finite(node, **reply.arrays)
            except SiteFailed as exc:
                outcomes[node] = {"status": "failed", "reason": str(exc)}
                continue
            counts = ConfusionCounts(0, 0, 0, 0)
            for position, (index, _) in enumerate(bundles[node]):
                fit_counts = ConfusionCounts(
                    *(int(reply.values[f"{position}/{key}"]) for key in ("tp", "fn", "tn", "fp"))
                )
                per_fit[index] += fit_counts
                counts += fit_counts
            evaluation.blocks += blocks
            evaluation.block_sites = np.concatenate(
                [evaluation.block_sites, np.full(len(blocks.lo), node)]
            )
            evaluation.confusion += counts
            evaluation.calibration += np.vstack(
                [reply.arrays[f"calibration.{key}"] for key in ("sum_p", "sum_y", "count")]
            )
            outcomes[node] = {
                "status": "evaluated",
                "auc": reply.values.get("local-auc"),
                "sensitivity": counts.sensitivity,
                "specificity": counts.specificity,
                "balanced_accuracy": counts.balanced_accuracy,
            }
            if "local-auc" in reply.values:  # absent when the site tested one class only
                pairs = blocks.positives.sum() * blocks.negatives.sum()
                evaluation.strata.append((float(reply.values["local-auc"]), pairs))
        evaluation.per_site = {
            self.sites[node].label: outcome for node, outcome in sorted(outcomes.items())
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

    # -- driver -----------------------------------------------------------------------
    def run(self) -> dict:
        features = self.census()
        fitted_parts = []
        for tag, train_parts, test_parts in self._design():
            fitted_parts.append((tag, self.fit(features, train_parts, tag), test_parts))
        evaluated = [(fitted, test_parts) for _, fitted, test_parts in fitted_parts]
        evaluation, figures = self.evaluate(evaluated)
        folds = [
            {"fit": tag, "training_sites": fitted.sites, **fit_figures}
            for (tag, fitted, _), fit_figures in zip(fitted_parts, figures, strict=True)
        ]
        calibration = self._calibration_line(evaluated)
        final_parts = self._final_partitions()
        if self.study.validation.scheme == "holdout":
            final = evaluated[0][0]
        else:
            final = self.fit(features, final_parts, "final")
        self._persist(final, final_parts)
        results = self._results(final, evaluation, folds)
        results["metrics"]["federated"]["calibration"] |= calibration
        auc = results["metrics"]["federated"]["auc"]
        self.log(f"pooled {self.study.validation.scheme} AUC {auc:.3f}")
        return results | {"harmonization": self._site_effects(final, final_parts)}

    def _calibration_line(self, evaluated: list[tuple[FittedPipeline, dict]]) -> dict:
        """Calibration intercept and slope: logistic regression of the test outcomes on the
        logit of the predicted risk, by Newton from summed site terms over every fit."""
        fits: dict[int, list[Payload]] = {}
        for fitted, partitions in evaluated:
            for node, partition in partitions.items():
                if self.sites[node].status == "included":
                    fits.setdefault(node, []).append(fitted.params.to_payload(partition))

        def summed_terms(gamma: np.ndarray) -> NewtonTerms:
            requests = {}
            for node, payloads in fits.items():
                request = bundle(payloads)
                request.arrays["gamma"] = gamma
                requests[node] = ("calibration", request)
            replies, failed = self.transport.ask(requests)
            if failed:
                node, reason = next(iter(failed.items()))
                raise SiteFailed(node, reason)
            return sum_terms(
                NewtonTerms(
                    r.arrays["gradient"], r.arrays["hessian"], r.values["deviance"], r.values["n"]
                )
                for r in replies.values()
                if "skipped" not in r.values
            )

        try:
            fit = fit_newton(summed_terms, 2)
        except (SiteFailed, ValueError, np.linalg.LinAlgError) as exc:
            return {"line": f"not available: {exc}"}
        return {"intercept": float(fit.beta[0]), "slope": float(fit.beta[1])}

    def _design(self):
        """(tag, training partitions, test partitions) of every fit the validation needs."""
        scheme = self.study.validation.scheme
        nodes = self.included()
        if scheme == "holdout":
            parts = {node: Partition("holdout") for node in nodes}
            yield "holdout", parts, parts
        elif scheme == "kfold":
            for fold in range(self.study.validation.folds):
                parts = {node: Partition("kfold", fold) for node in nodes}
                yield f"fold {fold + 1}", parts, parts
        else:
            for node in nodes:
                if self.sites[node].status != "included":
                    continue
                others = [n for n in self.included() if n != node]
                if scheme == "leave-one-site-out":
                    train, test = others, [node]
                    tag = f"held-out {self.sites[node].label}"
                else:  # single-site: what one site's data alone gives the others
                    train, test = [node], others
                    tag = f"trained at {self.sites[node].label}"
                yield (
                    tag,
                    {n: Partition("all") for n in train},
                    {n: Partition("unseen") for n in test},
                )

    def _final_partitions(self) -> dict[int, Partition]:
        scheme = "holdout" if self.study.validation.scheme == "holdout" else "all"
        return {node: Partition(scheme) for node in self.included()}

    def _persist(self, final: FittedPipeline, partitions: dict[int, Partition]) -> None:
        """Each site keeps its harmonized table and ComBat estimates on its own disk."""
        requests = {
            node: ("persist", final.params.to_payload(part)) for node, part in partitions.items()
        }
        _, failed = self.transport.ask(requests)
        for node, reason in failed.items():
            self.log(f"{self.sites[node].label}: could not keep local artifacts ({reason})")

    def _site_effects(self, final: FittedPipeline, partitions: dict[int, Partition]) -> dict:
        """Per-feature batch-effect F statistic of the training cases, before and after ComBat
        (batches are sites unless the study names a batch column)."""
        nodes = [n for n in partitions if self.sites[n].label in final.sites]
        replies = self._ask_training("site-effect", nodes, final.params, partitions)
        summary = {"method": self.study.harmonization.method}
        features = final.params.features
        for stage in ("raw", "harmonized"):
            by_batch: dict[str, list[Moments]] = {}
            for reply in replies.values():
                for batch, n, mean, m2 in zip(
                    reply.values["batches"],
                    reply.values["counts"],
                    reply.arrays[f"{stage}.mean"],
                    reply.arrays[f"{stage}.m2"],
                    strict=True,
                ):
                    by_batch.setdefault(str(batch), []).append(Moments(int(n), mean, m2))
            groups = [pool_moments(parts) for _, parts in sorted(by_batch.items())]
            if len(groups) < 2:
                return summary | {"note": "site effects need at least two batches"}
            statistic, p_value = group_f_statistic(groups)
            name = "before" if stage == "raw" else "after"
            summary[name] = {
                "median_f": float(np.nanmedian(statistic)),
                "share_of_features_with_site_effect_p_lt_0.05": float(np.mean(p_value < 0.05)),
            }
            summary.setdefault("per_feature_f", {})[name] = dict(
                zip(features, map(float, statistic), strict=True)
            )
        return summary

    def included(self) -> list[int]:
        return [node for node, site in self.sites.items() if site.status == "included"]

    def _set_aside(self, failure: SiteFailed) -> None:
        site = self.sites[failure.node_id]
        site.set_aside("dropped", str(failure))
        self.log(f"{site.label} set aside ({failure}); the fit in progress restarts without it")

    def _reasons(self) -> str:
        return "; ".join(f"{s.label}: {s.reason}" for s in self.sites.values() if s.reason)

    def _results(self, final: FittedPipeline, evaluation: Evaluation, folds: list[dict]) -> dict:
        return {
            "study": {
                "name": self.study.name,
                "extraction_hash": self.study.extraction_hash,
                "study_hash": self.study.study_hash,
                "config": self.study.model_dump(mode="json"),
            },
            "sites": [
                {
                    "name": s.label,
                    "status": s.status,
                    "reason": s.reason,
                    "cases": s.cases,
                    "sequences_missing": s.sequences_missing,
                }
                for s in sorted(self.sites.values(), key=lambda site: site.label)
            ],
            "metrics": {
                "federated": _pooled_metrics(evaluation),
                "per_site": evaluation.per_site,
            },
            "model": final.model
            | {
                "training_sites": final.sites,
                "threshold": final.threshold,
                "threshold_rule": "pooled training prevalence of the positive class",
            },
            "selection": final.selection,
            "validation": {"scheme": self.study.validation.scheme, "fits": folds},
            "traffic_bytes_from_sites": {
                kind: {self.sites[node].label: size for node, size in sorted(sizes.items())}
                for kind, sizes in self.transport.traffic.items()
            },
            "rounds": list(self.rounds),
        }


def _pooled_metrics(evaluation: Evaluation) -> dict:
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


def _blocks(node: int, reply: Payload) -> ScoreBlocks:
    """A site's score blocks, checked: sorted, inside the grid, finite non-negative counts."""
    arrays = reply.arrays
    blocks = ScoreBlocks(
        *(arrays[f"blocks.{name}"] for name in ("lo", "hi", "positives", "negatives"))
    )
    sizes = {len(blocks.lo), len(blocks.hi), len(blocks.positives), len(blocks.negatives)}
    if len(sizes) != 1 or np.any(blocks.hi <= blocks.lo):
        raise SiteFailed(node, "malformed update: score blocks are inconsistent")
    _check_finite(node, positives=blocks.positives, negatives=blocks.negatives)
    return blocks


def _deviance_summary(total_loss: float, n: int) -> np.ndarray:
    """[held-out deviance, n]: what `lasso.mean_deviance` reads."""
    return np.array([2.0 * total_loss, n])


def _check_shape(node: int, shape: tuple[int, ...], **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if array.shape != shape:
            raise SiteFailed(node, f"malformed update: {name} has shape {array.shape}, not {shape}")


def _check_finite(node: int, **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise SiteFailed(node, f"non-finite values in {name}")
