"""Phase 1: who the sites are and what they have; sites that do not match are refused."""

from __future__ import annotations

from fedrad.common.config import StudyConfig, extractor_versions
from fedrad.common.messages import CensusReply, Kind, Request
from fedrad.common.stats.fold_bounds import least
from fedrad.server.federation import Federation, SiteRecord, StudyCannotRun


def census(federation: Federation, study: StudyConfig, expected_sites: int) -> list[str]:
    """Ask every site who it is and what it has, refuse sites that do not match the study,
    and return the features every included site shares."""
    nodes = federation.transport.wait_for_nodes(
        expected_sites, timeout_s=study.federation.round_timeout_s
    )
    minimum = study.federation.min_sites
    if len(nodes) < minimum:
        raise StudyCannotRun(
            f"only {len(nodes)} site(s) connected; the study needs {minimum} (federation.min_sites)"
        )
    federation.sites = {node: SiteRecord(node) for node in nodes}
    replies, problems = federation.gather(Kind.CENSUS, {node: Request() for node in nodes})
    for node, problem in problems.items():
        federation.sites[node].set_aside("failed", str(problem))
        federation.record("refused", federation.label(node), f"census: {problem}")
    for node, reply in replies.items():
        _admit(federation, federation.sites[node], reply, study)
    # Node ids are random per run; ordering by site name makes every sum run in the same
    # order, so a rerun reproduces the model bit for bit.
    federation.sites = dict(sorted(federation.sites.items(), key=lambda item: item[1].label))
    federation.observer.census(federation.sites.values())
    included = federation.included()
    if not included:
        raise StudyCannotRun("no site passed the census: " + federation.reasons())
    # sites missing a sequence or region shrink the study to the features all share
    features = sorted(set.intersection(*(set(federation.sites[n].features) for n in included)))
    if not features:
        raise StudyCannotRun(
            "the included sites share no feature: "
            + ", ".join(federation.label(node) for node in included)
        )
    _check_max_cases(federation, study, included)
    for node in included:
        site = federation.sites[node]
        missing = f", missing {site.sequences_missing}" if site.sequences_missing else ""
        federation.log(f"census: {site.label} cases {site.cases}{missing}")
    return features


def _check_max_cases(federation: Federation, study: StudyConfig, included: list[int]) -> None:
    """Every site bounds the coefficients it answers at by `federation.max_cases`
    (docs/privacy.md 3): a study holding more would be refused at its first fit."""
    k, most = study.federation.min_cell_size, study.federation.max_cases
    held = sum(least(count, k) for n in included for count in federation.sites[n].cases.values())
    if held > most:
        raise StudyCannotRun(
            f"the included sites hold at least {held} cases, more than federation.max_cases "
            f"({most}), which bounds the coefficients every site answers at: set "
            f"federation.max_cases to the study's cases over all sites, at least {held}"
        )


def _admit(federation: Federation, site: SiteRecord, reply: CensusReply, study) -> None:
    site.name = reply.site
    site.features = list(reply.features)
    site.batches = list(reply.batches)
    site.sequences_missing = list(reply.sequences_missing)
    site.extraction_hash = reply.extraction_hash
    site.versions = list(reply.versions)
    site.cases = dict(zip(study.federation.classes, reply.cases, strict=False))
    if not site.features:
        reason = "its feature table has no study feature"
    elif reply.extraction_hash != study.extraction_hash:
        reason = _hash_mismatch(reply, study)
    elif reply.study_hash != study.study_hash:
        reason = "its study settings differ from the aggregator's study"
    else:
        site.status = "included"
        return
    site.set_aside("refused", reason)
    federation.record("refused", site.label, reason)


def _hash_mismatch(reply: CensusReply, study: StudyConfig) -> str:
    """Why a site's extraction hash differs: the library versions that differ from the
    aggregator's, which re-extracting alone would not fix, or else the settings."""
    mismatch = (
        f"extraction hash {reply.extraction_hash} differs from the study's {study.extraction_hash}"
    )
    theirs = dict(item.split("=", 1) for item in reply.versions if "=" in item)
    differing = [
        f"{name} {theirs[name]} (study: {version})"
        for name, version in extractor_versions().items()
        if theirs.get(name, version) != version
    ]
    if differing:
        return f"{mismatch}: {', '.join(differing)}; install the study's versions, re-extract"
    return f"{mismatch}: re-extract with the study config"
