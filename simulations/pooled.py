"""The centralized reference: the same study run on all sites' cases pooled in one place.

Only a simulation can compute it, since it needs every case at once. It runs the
very protocol code over an in-process transport with a single site that holds
every case (each keeping its own site as its ComBat batch), so any difference from
the federated result is a difference of aggregation, which must be nil.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fedrad.client.data import SiteData
from fedrad.common.config import StudyConfig
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport


def pooled_reference(
    tables: dict[str, Path], study: StudyConfig, log: Callable[[str], None] = lambda _: None
) -> dict:
    """Results of the study on the pooled cases of `tables` (site name -> feature table).

    Under leave-one-site-out the held-out site must stay apart, so the sites stay
    separate there and only their sums are pooled, as a central analysis would.
    """
    # nothing leaves a central analysis: no cell to suppress, no site's values to mask or noise
    study = study.updated(
        federation={"min_cell_size": 1, "secure_aggregation": False}, differential_privacy=None
    )
    sites = [
        replace(SiteData.load(path, name, study), central=True) for name, path in tables.items()
    ]
    if study.validation.scheme != "leave-one-site-out":
        features = sorted(set.intersection(*(set(site.features) for site in sites)))
        sites = [SiteData.pooled(sites, features)]
    return StudyProtocol(in_process_transport(sites, study), study, log=log).run()
