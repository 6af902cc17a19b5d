"""The study the aggregator drives: census, then every fit of the validation design, its
evaluation, the final model, and the results (DESIGN.md phases 1-6).

Every fit runs harmonization -> selection -> scaling -> model from sums the sites send;
a site that cannot contribute to a fit is left out of it by name, a failing one set
aside for the study, and the fit restarts without it (`Federation.without_failures`),
so every model is exactly the pooled fit of the sites it names.

With a checkpoint (a deployed study), every finished phase is saved as it finishes, and a
resumed study loads the phases an interrupted run finished instead of redoing them
(server/checkpoint.py, docs/protocol.md 8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from fedrad.common.config import WITHOUT_CLINICAL, StudyConfig
from fedrad.common.differential_privacy import Budget
from fedrad.common.messages import Kind, Request
from fedrad.common.models.steps import lockstep, run_steps
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.stats.moments import Standardizer
from fedrad.common.stats.principal_axes import PrincipalAxes
from fedrad.server.checkpoint import Checkpoint, Phase, fitted_content, merged_traffic
from fedrad.server.federation import (
    Federation,
    GridTransport,
    SiteFailed,
    SiteSkippedFit,
    StudyCannotRun,
)
from fedrad.server.observer import RoundLog, StudyObserver
from fedrad.server.phases.census import census
from fedrad.server.phases.comparison import compare_models
from fedrad.server.phases.evaluation import (
    Evaluated,
    FittedPipeline,
    calibration_line,
    cross_fitted_calibration,
    evaluate,
    pooled_metrics,
    recalibrate,
)
from fedrad.server.phases.fold_rule import check_test_parts
from fedrad.server.phases.harmonization import fit_combat, site_effects
from fedrad.server.phases.imputation import fit_imputation
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
        checkpoint: Checkpoint | None = None,
        observer: StudyObserver | None = None,
    ):
        self.study = study
        self.expected_sites = expected_sites or study.federation.min_sites
        self.federation = Federation(transport, log)
        self.observer = observer or StudyObserver()
        self.federation.observer = self.observer
        self.rounds: list[dict] = RoundLog(self.observer)
        self.checkpoint = checkpoint
        self.refitted = 0  # fits made in this run, not loaded from the checkpoint
        self.final: FittedPipeline | None = None  # the released model, once fitted
        self.arms: dict[str, Evaluated] = {}  # with model.compare: each model's evaluated fits
        self.without_clinical = False  # fitting a compared model without clinical inputs

    @property
    def sites(self):
        return self.federation.sites

    def run(self) -> dict:
        federation, study = self.federation, self.study
        features = census(federation, study, self.expected_sites)
        if study.differential_privacy is not None:
            federation.budget = (
                Budget(study.differential_privacy)
                if self.checkpoint is None
                else self.checkpoint.budget(study.differential_privacy)
            )
        if study.federation.secure_aggregation:
            federation.secure = SecureAggregation(federation, study)
            federation.secure.exchange_keys(federation.included())
        design = list(self.design())
        fits = [(tag, train_parts) for tag, train_parts, _ in design]
        # ridge and L1 fits share their rounds, the final one included (it needs no evaluation)
        final_with_design = self.shares_rounds and len(fits) > 1
        if final_with_design:
            fits.append(("final", self.final_partitions()))
        for _, partitions in fits:  # before any sum is asked
            self.check_test_parts(
                [node for node, part in partitions.items() if part.scheme != "unseen"], partitions
            )
        fitted = self.fit_all(features, fits)
        fitted_parts = [
            (tag, model, test_parts)
            for (tag, _, test_parts), model in zip(design, fitted, strict=False)
        ]
        metrics, per_site, folds = self.evaluation(fitted_parts)
        comparison = self.compared(features, design, fitted_parts, metrics)
        final_parts = self.final_partitions()
        if study.validation.scheme == "holdout":
            final = fitted[0]
        elif final_with_design:
            final = fitted[-1]
        else:
            final = self.fit(features, final_parts, "final")
        if study.recalibrates:
            final = recalibrate(final, metrics["calibration"])
        self.final = final
        self.persist(final, final_parts)
        harmonization = self.site_effects(final, final_parts)
        federation.log(f"pooled {study.validation.scheme} AUC {metrics['auc']:.3f}")
        results = study_results(study, federation, final, metrics, per_site, folds, self.rounds)
        if self.checkpoint is not None:  # every run's traffic
            results |= merged_traffic(self.checkpoint.earlier_traffic, federation.traffic())
        if comparison is not None:
            results["model_comparison"] = comparison
        return results | {"harmonization": harmonization}

    def compared(self, features, design, fitted_parts, metrics) -> dict | None:
        """With `model.compare` (or `compare_without_clinical`), each compared model fitted
        on the design's partitions (the same folds; harmonization and selection refitted
        from the same sums, so the same), evaluated as the study's model is, and every pair
        of models tested by DeLong."""
        study = self.study
        if len(study.compared_models) < 2:
            return None
        arms = {study.model.kind: ([(f, test) for _, f, test in fitted_parts], metrics)}
        for kind in study.compared_models[1:]:
            fits = [(f"{kind} {tag}", train_parts) for tag, train_parts, _ in design]
            self.study = study.arm(kind)  # the fits read the model kind from the study
            self.without_clinical = kind.endswith(WITHOUT_CLINICAL)
            try:
                fitted = self.fit_all(features, fits)
            finally:
                self.study, self.without_clinical = study, False
            evaluated = [(f, test) for f, (_, _, test) in zip(fitted, design, strict=True)]
            evaluation, _ = evaluate(self.federation, evaluated, study.score_bins, False)
            arms[kind] = (evaluated, pooled_metrics(evaluation, study.federation.min_cell_size))
            auc = arms[kind][1]["auc"]
            self.federation.log(f"{kind}: pooled {study.validation.scheme} AUC {auc:.3f}")
        self.arms = {kind: evaluated for kind, (evaluated, _) in arms.items()}
        return compare_models(self.federation, arms)

    def evaluation(self, fitted_parts) -> tuple[dict, dict, list[dict]]:
        """(pooled metrics with the calibration line, each site's figures, each fit's
        figures): loaded when every fit was, over the same sites, else asked and saved."""
        federation, study = self.federation, self.study
        sites = sorted(federation.label(node) for node in federation.included())
        saved = self.checkpoint.find("evaluation", "evaluation") if self.checkpoint else None
        if saved is not None and not self.refitted and saved.candidates == sites:
            self._replay(saved, "evaluation")
            return saved.content["metrics"], saved.content["per_site"], saved.content["folds"]
        mark = self._mark()
        evaluated = [(fitted, test_parts) for _, fitted, test_parts in fitted_parts]
        evaluation, figures = evaluate(federation, evaluated, study.score_bins)
        folds = [
            {"fit": tag, "training_sites": fitted.sites, **fit_figures}
            for (tag, fitted, _), fit_figures in zip(fitted_parts, figures, strict=True)
        ]
        metrics = pooled_metrics(evaluation, study.federation.min_cell_size)
        metrics["calibration"] |= calibration_line(federation, evaluated, study)
        if study.recalibrates:  # how well recalibration calibrates, measured out of fold
            cross = cross_fitted_calibration(federation, evaluated, study)
            metrics["calibration"]["recalibrated"] = cross | {
                "method": "cross-fitted: each fold's test scores recalibrated by the line "
                "fitted on the other folds' test scores"
            }
        content = {"metrics": metrics, "per_site": evaluation.per_site, "folds": folds}
        self._save(Phase("evaluation", "evaluation", sites, content), mark)
        return metrics, evaluation.per_site, folds

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
        restored = {}  # fit index -> (fitted pipeline, its rounds), loaded from the checkpoint
        for index, (tag, partitions) in enumerate(fits):
            loaded = self._restored("fitted", tag, features, partitions)
            if loaded is not None:
                restored[index] = (loaded.fitted(), loaded.rounds)
        try:
            return self._in_lockstep(features, fits, restored)
        except (SiteSkippedFit, SiteFailed) as problem:
            kind = self.study.model.kind
            if isinstance(problem, SiteFailed):
                self.federation.set_aside(problem, f"{kind} fits")
            self.federation.log(f"{kind} fits: {problem}; fitting one at a time instead")
            fitted = []
            for index, (tag, partitions) in enumerate(fits):
                if index in restored:
                    self.rounds.extend(restored[index][1])
                    fitted.append(restored[index][0])
                else:
                    fitted.append(self.fit(features, partitions, tag))
            return fitted

    def _in_lockstep(self, features, fits, restored) -> list[FittedPipeline]:
        prepared = {}  # fit index -> what its model starts from
        for index, (tag, partitions) in enumerate(fits):
            if index not in restored:
                params, selection, nodes, phase = self._prepared(features, tag, partitions)
                prepared[index] = (tag, params, selection, nodes, partitions, phase)
        # each fit's rounds, told as they come, kept in fit order
        records = {index: RoundLog(self.observer) for index in prepared}
        walks = [
            fit_steps(self.study, params, nodes, partitions, tag, records[index])
            for index, (tag, params, _, nodes, partitions, _) in prepared.items()
        ]
        results = run_steps(
            lockstep(walks),
            lambda asks: lasso_round(self.federation, [ask for _, ask in asks]),
        )
        fitted = dict(restored)
        for (index, (tag, _, selection, nodes, _, phase)), (params, model) in zip(
            prepared.items(), results, strict=True
        ):
            self.federation.log(fitted_line(tag, nodes, model))
            pipeline = self._fitted(params, model, nodes, dict(selection))
            self.refitted += 1
            fitted[index] = (pipeline, records[index])
            content, arrays = fitted_content(pipeline)
            self._save_phase(
                replace(phase, kind="fitted", content=_started(content, features), arrays=arrays,
                        rounds=records[index])
            )  # fmt: skip
        for index in sorted(fitted):
            self.rounds.extend(fitted[index][1])
        return [fitted[index][0] for index in sorted(fitted)]

    def _prepared(self, features, tag, partitions):
        """(params, selection, nodes, its phase) of a fit's harmonization, selection and
        scaling: from the checkpoint, or fitted and saved."""
        loaded = self._restored("prepared", tag, features, partitions)
        if loaded is not None:
            nodes = self._nodes(loaded.content["nodes"])
            return loaded.params(), loaded.content["selection"], nodes, loaded
        training = [node for node, part in partitions.items() if part.scheme != "unseen"]
        candidates, mark = self._candidates(training), self._mark()
        (params, selection, nodes), excluded = self.federation.without_failures(
            tag,
            training,
            lambda nodes: (*self._prepare(features, nodes, partitions, tag), nodes),
        )
        selection["excluded_sites"] = excluded
        arrays, values = params.to_fields()
        labels = [self.federation.label(node) for node in nodes]
        content = _started({"values": values, "selection": selection, "nodes": labels}, features)
        phase = self._save(Phase("prepared", tag, candidates, content, arrays), mark)
        return params, selection, nodes, phase

    def _prepare(self, features, nodes, partitions, tag) -> tuple[PipelineParams, dict]:
        """Imputation, harmonization, selection and scaling fitted on the training parts."""
        federation, study = self.federation, self.study
        self.check_test_parts(nodes, partitions)
        params = PipelineParams(features=features)
        if study.missing_values == "impute-mean":
            params = fit_imputation(federation, params, nodes, partitions, tag)
        if study.harmonization.method == "combat":
            params = fit_combat(federation, study, params, nodes, partitions)
        params, selection, scaler_moments = select(federation, study, params, nodes, partitions)
        params = replace(params, standardizer=Standardizer.from_moments(scaler_moments))
        if self.without_clinical:  # the same radiomics inputs, scaled alike, and no others
            width = len(params.model_features) - len(params.clinical_inputs)
            scaler = Standardizer(
                params.standardizer.mean[:width], params.standardizer.scale[:width]
            )
            params = replace(params, clinical_inputs=(), standardizer=scaler)
        return params, selection

    def check_test_parts(self, nodes: list[int], partitions: dict[int, Partition]) -> None:
        """Under secure aggregation, stop before a fit whose fold test parts (outer, and inner
        if the model tunes on them) may hold fewer than k of a class over its sites; in the
        clear, each site holds its own part to k."""
        if self.federation.secure is not None:
            inner = self.study.tunes_penalty
            check_test_parts(self.federation, self.study, nodes, partitions, inner=inner)

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
        loaded = self._restored("fitted", tag, features, partitions)
        if loaded is not None:
            self.rounds.extend(loaded.rounds)
            return loaded.fitted()
        training = [node for node, part in partitions.items() if part.scheme != "unseen"]
        candidates, mark = self._candidates(training), self._mark()
        fitted, excluded = self.federation.without_failures(
            tag, training, lambda nodes: self._fit_once(features, nodes, partitions, tag)
        )
        fitted.selection["excluded_sites"] = excluded
        self.refitted += 1
        content, arrays = fitted_content(fitted)
        self._save(Phase("fitted", tag, candidates, _started(content, features), arrays), mark)
        return fitted

    def _fit_once(self, features, nodes, partitions, tag) -> FittedPipeline:
        params, selection = self._prepare(features, nodes, partitions, tag)
        fit_model = FITTERS[self.study.model.kind]
        params, model = fit_model(
            self.federation, self.study, params, nodes, partitions, tag, self.rounds
        )
        return self._fitted(params, model, nodes, selection)

    # -- the checkpoint -------------------------------------------------------------------------
    def _restored(self, kind: str, tag: str, features, partitions) -> Phase | None:
        """The saved phase of fit `tag`, if it started from the sites this fit would start
        from now and the same features; its events and set-asides replayed. A fit saved
        with a site that is gone (or without one that is new) is refitted, and said so."""
        saved = self.checkpoint.find(kind, tag) if self.checkpoint else None
        if saved is None:
            return None
        training = [node for node, part in partitions.items() if part.scheme != "unseen"]
        now = self._candidates(training)
        started = saved.content.get("census_features", saved.params().features)
        if saved.candidates != now or started != features:
            gone = sorted(set(saved.candidates) - set(now))
            new = sorted(set(now) - set(saved.candidates))
            why = "; ".join(
                part
                for part in (
                    f"{', '.join(gone)} no longer included" if gone else "",
                    f"{', '.join(new)} newly included" if new else "",
                )
                if part
            )
            self.federation.log(
                f"{tag}: the checkpoint's fit started from {', '.join(saved.candidates)} "
                f"({why or 'the sites now share other features'}); refitting it"
            )
            return None
        self._replay(saved, tag)
        return saved

    def _replay(self, saved: Phase, tag: str) -> None:
        """What the saved phase did to the federation: its events, and the sites it set
        aside, set aside again (the failure policy's decision stands)."""
        federation = self.federation
        federation.log(f"{tag}: loaded from the checkpoint")
        federation.events.extend(saved.events)
        for entry in saved.events:
            self.observer.event(entry)
        self.observer.phase(saved, loaded=True)
        by_label = {site.label: site for site in federation.sites.values()}
        for label, reason in saved.set_aside.items():
            if label in by_label and by_label[label].status == "included":
                by_label[label].set_aside("dropped", reason)

    def _candidates(self, nodes: list[int]) -> list[str]:
        """The sites a computation over `nodes` starts from, by name."""
        sites = self.federation.sites
        return sorted(sites[node].label for node in nodes if sites[node].status == "included")

    def _nodes(self, labels: list[str]) -> list[int]:
        by_label = {site.label: node for node, site in self.federation.sites.items()}
        return [by_label[label] for label in labels]

    def _mark(self) -> tuple[int, int, dict[int, str]]:
        """Where a phase starts: events and rounds so far, and the sites' statuses."""
        statuses = {node: site.status for node, site in self.federation.sites.items()}
        return len(self.federation.events), len(self.rounds), statuses

    def _save(self, phase: Phase, mark) -> Phase:
        """`phase` with what it did since `mark`, saved if the study keeps a checkpoint."""
        events, rounds, statuses = mark
        sites = self.federation.sites
        phase.events = self.federation.events[events:]
        phase.rounds = self.rounds[rounds:]
        phase.set_aside = {
            sites[node].label: sites[node].reason
            for node, status in statuses.items()
            if status == "included" and sites[node].status == "dropped"
        }
        return self._save_phase(phase)

    def _save_phase(self, phase: Phase) -> Phase:
        """Every finished phase passes here: told to the observer, kept in the checkpoint."""
        traffic = self.federation.traffic()  # this run's, so far
        self.observer.phase(replace(phase, traffic=traffic))
        if self.checkpoint is not None:
            merged = merged_traffic(self.checkpoint.earlier_traffic, traffic)
            self.checkpoint.save(replace(phase, traffic=merged))
        return phase

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
        found = final.selection.get("principal_axes")
        axes = None if found is None else PrincipalAxes.from_json(found)
        try:
            summary, _ = self.federation.without_failures(
                "site effects",
                nodes,
                lambda training: site_effects(
                    self.federation, self.study, final.params, training, partitions, axes
                ),
            )
        except StudyCannotRun as nobody:
            return {"method": self.study.harmonization.method, "note": str(nobody)}
        return summary


def _started(content: dict, features: list[str]) -> dict:
    """A fit's saved content, naming the features it started from when imputation left some
    out (a feature no training case has): what a resumed study compares its census with."""
    if content["values"]["features"] == list(features):
        return content
    return content | {"census_features": list(features)}
