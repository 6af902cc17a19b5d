"""A site holds every total it enters to the aggregator's fold rule itself.

The aggregator stops a study whose fold test part, summed over a total's sites, may hold
fewer than k cases of a class (`server/phases/fold_rule.py`): the fold's training total
beside the whole's would give that test part. A site cannot see the others' cases, but
every site's census counts come to it signed with the exchange keys
(`common/secagg/counts.py`), so before its share enters a total it applies the same bound
(`common/stats/fold_bounds.py`) to the sites of that total. An aggregator that skipped
its own rule gets no share of such a fold.
"""

from __future__ import annotations

import json

from fedrad.client.data import SiteData
from fedrad.client.handlers import class_counts
from fedrad.common.config import StudyConfig
from fedrad.common.messages import Request
from fedrad.common.pipeline import Partition
from fedrad.common.stats.fold_bounds import ShortFold, SiteCounts, short_fold


def own_counts(data: SiteData, study: StudyConfig) -> SiteCounts:
    """This site's counts as its census sends them (suppressed below k), and its batches."""
    classes, k = study.federation.classes, study.federation.min_cell_size
    cases = class_counts(data.labels, classes, k)
    return SiteCounts(dict(zip(classes, cases, strict=True)), len(set(data.batch)))


def counts_to_text(counts: dict[str, SiteCounts]) -> str:
    return json.dumps({site: [c.cases, c.batches] for site, c in counts.items()})


def counts_from_text(text: str) -> dict[str, SiteCounts]:
    return {site: SiteCounts(cases, batches) for site, (cases, batches) in json.loads(text).items()}


def short_part(
    study: StudyConfig, request: Request, participants: list[str], counts: dict[str, SiteCounts]
) -> ShortFold | str | None:
    """Why this site's share of a total over `participants` would break the fold rule: a
    short fold, or the name of a participant whose counts it was never relayed; None if
    every fit the request names holds k of each class in each test part."""
    missing = [site for site in participants if site not in counts]
    if missing:
        return missing[0]
    sites = [counts[site] for site in participants]
    for part in request.parts or [request]:
        if part.partition is None or part.partition.scheme == "unseen":
            continue
        fit = Partition(
            part.partition.scheme, part.partition.fold
        )  # the fit an inner fold is cut from
        short = short_fold(study, sites, [fit] * len(sites), inner=study.tunes_penalty)
        if short is not None:
            return short
    return None
