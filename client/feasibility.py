"""Whether this site can take part in a study, told before anything is sent.

The site's usable labelled cases are split exactly as the study will split them, and each
fit is put to the rule the site itself applies when the study's requests come (the
minimum cell size k per fold and class, or per batch, `handlers.training_refusal`): a site
that would sit a fit out learns it now, with the reason, rather than mid-study. The regions
and sequences the study needs are checked against what the site config says it can give.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from fedrad.client.cases import CaseStatus
from fedrad.client.data import SiteData
from fedrad.client.handlers import training_refusal
from fedrad.client.site_plan import SitePlan
from fedrad.common.config import StudyConfig
from fedrad.common.pipeline import Partition


@dataclass(frozen=True)
class Feasibility:
    """What the study asks of this site and how the site fares: sentences, never sent."""

    asks: str  # the study's demand, in one sentence
    cases: dict[str, int]  # usable labelled cases per class
    refusals: list[str]  # one sentence each: why the site cannot take part as it is
    notes: list[str]  # one sentence each: what holds, but the operator should know

    @property
    def can_take_part(self) -> bool:
        return not self.refusals


def feasibility(plan: SitePlan, statuses: Sequence[CaseStatus], study: StudyConfig) -> Feasibility:
    """The study's demands put to this site's usable cases and layout."""
    data = _usable_cases(plan, statuses, study)
    classes = study.federation.classes
    if data.case_ids:
        sat_out = _grouped(_sat_out(data, study, alone=False))
    else:
        sat_out = [f"no case is both usable and labelled {' or '.join(classes)}"]
    return Feasibility(
        asks=_asks(study),
        cases={name: data.labels.count(name) for name in classes},
        refusals=[*_layout_refusals(plan), *sat_out],
        notes=[] if sat_out else _rare_class_notes(data, study),
    )


def _rare_class_notes(data: SiteData, study: StudyConfig) -> list[str]:
    """Under secure aggregation a site's sums leave only inside totals, so the class rule
    applies to the totals (docs/privacy.md 3): a class too rare for the site's own sums is
    no refusal, but the operator should know what it means."""
    if not study.federation.secure_aggregation:
        return []
    alone = _grouped(_sat_out(data, study, alone=True))
    if not alone:
        return []
    return [
        "under secure aggregation the class rule applies to the totals over sites, so this "
        f"site takes part although, on its own, {'; '.join(alone)}; if it drops out "
        "mid-study the study stops rather than expose its rare class (docs/privacy.md 5)"
    ]


def _usable_cases(plan: SitePlan, statuses: Sequence[CaseStatus], study: StudyConfig) -> SiteData:
    """The usable cases with a study class, as the site's feature table would hold them."""
    classes = study.federation.classes
    entries = [
        entry
        for entry, status in zip(plan.entries, statuses, strict=True)
        if status.usable and entry.label in classes
    ]
    column = study.harmonization.batch
    batch = [plan.site_name if column == "site" else e.clinical[column] for e in entries]
    labels = [str(entry.label) for entry in entries]
    return SiteData(
        name=plan.site_name,
        extraction_hash="",
        features=[],
        case_ids=[entry.case_id for entry in entries],
        labels=labels,
        x=np.zeros((len(entries), 0)),
        y=np.array([label == study.federation.positive_class for label in labels], float),
        batch=np.array(batch, dtype=object),
        origin=np.full(len(entries), plan.site_name, dtype=object),
    )


def _fits(study: StudyConfig) -> Iterator[tuple[str, Partition]]:
    """(name, training partition) of every fit the study asks this site's training sums
    for: each outer fold (and its inner folds, when an L1 penalty is tuned), and the final
    fit; a held-out site under leave-one-site-out trains in the other sites' fits."""
    validation, model = study.validation, study.model
    if validation.scheme == "holdout":
        yield "the holdout fit", Partition("holdout")
        return
    if validation.scheme == "kfold":
        tuned = model.kind == "lasso-logistic" and model.lasso_lambda is None
        for fold in range(validation.folds):
            yield f"fold {fold + 1}", Partition("kfold", fold)
            for inner in range(validation.inner_folds) if tuned else ():
                yield f"fold {fold + 1}'s inner fold {inner + 1}", Partition("kfold", fold, inner)
    yield "the final fit on all cases", Partition("all")


def _sat_out(data: SiteData, study: StudyConfig, alone: bool) -> dict[str, str]:
    """Fit name -> why this site would sit it out."""
    return {
        name: reason
        for name, partition in _fits(study)
        if (reason := training_refusal(data, partition, study, alone)) is not None
    }


def _grouped(sat_out: dict[str, str]) -> list[str]:
    """One sentence per reason, naming every fit it stops ('fold 1, fold 3: ...')."""
    fits: dict[str, list[str]] = {}
    for name, reason in sat_out.items():
        fits.setdefault(reason, []).append(name)
    return [f"{', '.join(names)}: {reason}" for reason, names in fits.items()]


def _layout_refusals(plan: SitePlan) -> list[str]:
    """The study's regions and sequences this site cannot give: without them the census
    shrinks the study to the features every site shares, for every site."""
    layout = plan.layout
    lost = "so the study would lose its {} features at every site"
    refusals = [
        f"the study needs region {region}, which this site cannot give ({why}), "
        + lost.format(region)
        for region, why in layout.missing_regions.items()
    ]
    refusals += [
        f"the study needs sequence {name}, which the site config declares missing, "
        + lost.format(name)
        for name in layout.missing_sequences
    ]
    return refusals


def _asks(study: StudyConfig) -> str:
    """What the study's validation and minimum cell size ask of a site's cases."""
    validation, federation = study.validation, study.federation
    k = federation.min_cell_size
    secure = federation.secure_aggregation
    scheme = {
        "kfold": f"{validation.folds}-fold cross-validation",
        "holdout": f"a {validation.holdout_fraction:g} holdout",
        "leave-one-site-out": "leave-one-site-out validation",
        "single-site": "single-site validation",
    }[validation.scheme]
    per = "batch" if secure else "class and batch"
    if validation.scheme == "kfold":
        need = (
            f"each fold's test part needs >= {k} of this site's cases of each {per}, "
            f"about {validation.folds * k} of each in all"
        )
    else:
        need = f"each fit needs >= {k} of this site's training cases of each {per}"
    sums = "secure aggregation" if secure else "sums released per site"
    return f"study {study.name}: {scheme}, k = {k} (federation.min_cell_size), {sums}: {need}"
