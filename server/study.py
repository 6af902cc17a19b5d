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
from fedrad.common.messages import Kind, Request
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.server.federation import Federation, GridTransport, StudyCannotRun
from fedrad.server.phases.census import census
from fedrad.server.phases.evaluation import (
    FittedPipeline,
    calibration_line,
    evaluate,
    pooled_metrics,
)
from fedrad.server.phases.harmonization import fit_combat, site_effects
from fedrad.server.phases.models import FITTERS
from fedrad.server.phases.selection import select
from fedrad.server.results import study_results

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
        fitted_parts = [
            (tag, self.fit(features, train_parts, tag), test_parts)
            for tag, train_parts, test_parts in self.design()
        ]
        evaluated = [(fitted, test_parts) for _, fitted, test_parts in fitted_parts]
        evaluation, figures = evaluate(federation, evaluated)
        folds = [
            {"fit": tag, "training_sites": fitted.sites, **fit_figures}
            for (tag, fitted, _), fit_figures in zip(fitted_parts, figures, strict=True)
        ]
        calibration = calibration_line(federation, evaluated)
        final_parts = self.final_partitions()
        if study.validation.scheme == "holdout":
            final = evaluated[0][0]
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
        federation, study = self.federation, self.study
        params = PipelineParams(features=features)
        if study.harmonization.method == "combat":
            params = fit_combat(federation, study, params, nodes, partitions)
        params, selection, scaler_moments = select(federation, study, params, nodes, partitions)
        params = replace(params, standardizer=Standardizer.from_moments(scaler_moments))
        fit_model = FITTERS[study.model.kind]
        params, model = fit_model(federation, study, params, nodes, partitions, tag, self.rounds)
        return FittedPipeline(
            params=params,
            model=model,
            sites=sorted(federation.label(n) for n in nodes),
            selection=selection,
            threshold=selection.pop("training_prevalence"),
        )

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
