"""The study the aggregator drives: census, then every fit of the validation design, its
evaluation, the final model, and the results (DESIGN.md phases 1-6).

Every fit runs harmonization -> selection -> scaling -> model from sums the sites send;
a site that cannot contribute to a fit is left out of it by name, a failing one set
aside for the study, and the fit restarts without it (`Federation.without_failures`),
so every model is exactly the pooled fit of the sites it names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import Budget
from fedrad.common.messages import Kind, Request
from fedrad.common.models.steps import lockstep, run_steps
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.server.federation import (
    Federation,
    GridTransport,
    SiteFailed,
    SiteSkippedFit,
    StudyCannotRun,
)
from fedrad.server.phases.census import census
from fedrad.server.phases.evaluation import (
    FittedPipeline,
    calibration_line,
    evaluate,
    pooled_metrics,
)
from fedrad.server.phases.harmonization import fit_combat, site_effects
from fedrad.server.phases.models import FITTERS, STEPPED, fit_steps, fitted_line, lasso_round
from fedrad.server.phases.selection import select
from fedrad.server.results import study_results
from fedrad.server.secure_aggregation import SecureAggregation

Design = Iterator[tuple[str, dict[int, Partition], dict[int, Partition]]]


class StudyProtocol:
    """Runs one study over the nodes of a transport and returns its results dict."""

    def __init__(
        self,
        transport: GridTransport,
        study: StudyConfig,
        expected_sites: int | None = None,
        log: Callable[[str], None] = print,
    ):
        self.study = study
        self.expected_sites = expected_sites or study.federation.min_sites
        self.federation = Federation(transport, log)
        self.rounds: list[dict] = []

    @property
    def sites(self):
        return self.federation.sites

    def run(self) -> dict:
        federation, study = self.federation, self.study
        features = census(federation, study, self.expected_sites)
        if study.differential_privacy is not None:
            federation.budget = Budget(study.differential_privacy)
        if study.federation.secure_aggregation:
            federation.secure = SecureAggregation(federation, study)
            federation.secure.exchange_keys(federation.included())
        design = list(self.design())
        fits = [(tag, train_parts) for tag, train_parts, _ in design]
        # ridge and L1 fits share their rounds, the final one included (it needs no evaluation)
        final_with_design = self.shares_rounds and len(fits) > 1
        if final_with_design:
            fits.append(("final", self.final_partitions()))
        fitted = self.fit_all(features, fits)
        fitted_parts = [
            (tag, model, test_parts)
            for (tag, _, test_parts), model in zip(design, fitted, strict=False)
        ]
        evaluated = [(fitted, test_parts) for _, fitted, test_parts in fitted_parts]
        evaluation, figures = evaluate(federation, evaluated, study.score_bins)
        folds = [
            {"fit": tag, "training_sites": fitted.sites, **fit_figures}
            for (tag, fitted, _), fit_figures in zip(fitted_parts, figures, strict=True)
        ]
        calibration = calibration_line(federation, evaluated, study)
        final_parts = self.final_partitions()
        if study.validation.scheme == "holdout":
            final = evaluated[0][0]
        elif final_with_design:
            final = fitted[-1]
        else:
            final = self.fit(features, final_parts, "final")
        self.persist(final, final_parts)
        harmonization = self.site_effects(final, final_parts)
        metrics = pooled_metrics(evaluation)
        metrics["calibration"] |= calibration
        federation.log(f"pooled {study.validation.scheme} AUC {metrics['auc']:.3f}")
        results = study_results(
            study, federation, final, metrics, evaluation.per_site, folds, self.rounds
        )
        return results | {"harmonization": harmonization}

    # -- the fits -------------------------------------------------------------------------------
    @property
    def shares_rounds(self) -> bool:
        """Whether the fits share their rounds: not under noise, where each Newton step is
        its own release, noised for one fit (a site refuses a shared round there)."""
        return self.study.model.kind in STEPPED and self.study.differential_privacy is None

    def fit_all(self, features: list[str], fits: list[tuple[str, dict[int, Partition]]]):
        """Every fit of the design (and the final one). Ridge and L1 fits share their
        rounds: each runs exactly as alone, but one message per site carries every fit's
        next step. If a site skips or fails there, the fits run again one at a time, each
        restarting without it as the failure policy says."""
        if not self.shares_rounds or len(fits) < 2:
            return [self.fit(features, partitions, tag) for tag, partitions in fits]
        try:
            return self._in_lockstep(features, fits)
        except (SiteSkippedFit, SiteFailed) as problem:
            kind = self.study.model.kind
            if isinstance(problem, SiteFailed):
                self.federation.set_aside(problem, f"{kind} fits")
            self.federation.log(f"{kind} fits: {problem}; fitting one at a time instead")
            return [self.fit(features, partitions, tag) for tag, partitions in fits]

    def _in_lockstep(self, features, fits) -> list[FittedPipeline]:
        prepared = []
        for tag, partitions in fits:
            training = [node for node, part in partitions.items() if part.scheme != "unseen"]
            (params, selection, nodes), excluded = self.federation.without_failures(
                tag,
                training,
                lambda nodes, parts=partitions: (*self._prepare(features, nodes, parts), nodes),
            )
            selection["excluded_sites"] = excluded
            prepared.append((tag, params, selection, nodes, partitions))
        records = [[] for _ in prepared]  # each fit's rounds, kept in fit order
        walks = [
            fit_steps(self.study, params, nodes, partitions, tag, mine)
            for (tag, params, _, nodes, partitions), mine in zip(prepared, records, strict=True)
        ]
        results = run_steps(
            lockstep(walks),
            lambda asks: lasso_round(self.federation, [ask for _, ask in asks]),
        )
        fitted = []
        for (tag, _, selection, nodes, _), (params, model), mine in zip(
            prepared, results, records, strict=True
        ):
            self.federation.log(fitted_line(tag, nodes, model))
            self.rounds.extend(mine)
            fitted.append(self._fitted(params, model, nodes, dict(selection)))
        return fitted

    def _prepare(self, features, nodes, partitions) -> tuple[PipelineParams, dict]:
        """Harmonization, selection and scaling fitted on the training parts."""
        federation, study = self.federation, self.study
        params = PipelineParams(features=features)
        if study.harmonization.method == "combat":
            params = fit_combat(federation, study, params, nodes, partitions)
        params, selection, scaler_moments = select(federation, study, params, nodes, partitions)
        return replace(params, standardizer=Standardizer.from_moments(scaler_moments)), selection

    def _fitted(self, params, model, nodes, selection) -> FittedPipeline:
        threshold = selection.pop("training_prevalence")
        return FittedPipeline(
            params=params,
            model=model,
            sites=sorted(self.federation.label(n) for n in nodes),
            selection=selection,
            threshold=threshold,
        )

    # -- one pipeline fit -----------------------------------------------------------------------
    def fit(self, features: list[str], partitions: dict[int, Partition], tag: str):
        """Fit harmonization, selection, scaling and model on the training parts."""
        training = [node for node, part in partitions.items() if part.scheme != "unseen"]
        fitted, excluded = self.federation.without_failures(
            tag, training, lambda nodes: self._fit_once(features, nodes, partitions, tag)
        )
        fitted.selection["excluded_sites"] = excluded
        return fitted

    def _fit_once(self, features, nodes, partitions, tag) -> FittedPipeline:
        params, selection = self._prepare(features, nodes, partitions)
        fit_model = FITTERS[self.study.model.kind]
        params, model = fit_model(
            self.federation, self.study, params, nodes, partitions, tag, self.rounds
        )
        return self._fitted(params, model, nodes, selection)

    # -- the validation design ------------------------------------------------------------------
    def design(self) -> Design:
        """(tag, training partitions, test partitions) of every fit the validation needs."""
        scheme, federation = self.study.validation.scheme, self.federation
        nodes = federation.included()
        if scheme == "holdout":
            parts = {node: Partition("holdout") for node in nodes}
            yield "holdout", parts, parts
        elif scheme == "kfold":
            for fold in range(self.study.validation.folds):
                parts = {node: Partition("kfold", fold) for node in nodes}
                yield f"fold {fold + 1}", parts, parts
        else:
            for node in nodes:
                if federation.sites[node].status != "included":
                    continue
                others = [n for n in federation.included() if n != node]
                if scheme == "leave-one-site-out":
                    train, test = others, [node]
                    tag = f"held-out {federation.label(node)}"
                else:  # single-site: what one site's data alone gives the others
                    train, test = [node], others
                    tag = f"trained at {federation.label(node)}"
                yield (
                    tag,
                    {n: Partition("all") for n in train},
                    {n: Partition("unseen") for n in test},
                )

    def final_partitions(self) -> dict[int, Partition]:
        scheme = "holdout" if self.study.validation.scheme == "holdout" else "all"
        return {node: Partition(scheme) for node in self.federation.included()}

    # -- after the model ------------------------------------------------------------------------
    def persist(self, final: FittedPipeline, partitions: dict[int, Partition]) -> None:
        """Each site keeps its harmonized table and ComBat estimates on its own disk."""

        def keep(nodes: list[int]) -> None:
            self.federation.ask(
                Kind.PERSIST, {node: Request(final.params, partitions[node]) for node in nodes}
            )

        try:
            self.federation.without_failures("local artifacts", list(partitions), keep)
        except StudyCannotRun as nobody:  # the model stands; only the local copies are missing
            self.federation.log(str(nobody))

    def site_effects(self, final: FittedPipeline, partitions: dict[int, Partition]) -> dict:
        nodes = [n for n in partitions if self.federation.label(n) in final.sites]
        try:
            summary, _ = self.federation.without_failures(
                "site effects",
                nodes,
                lambda training: site_effects(
                    self.federation, self.study, final.params, training, partitions
                ),
            )
        except StudyCannotRun as nobody:
            return {"method": self.study.harmonization.method, "note": str(nobody)}
        return summary
