"""A whole study on one machine: synthetic cohort -> site extraction -> Flower simulation.

Each virtual site keeps its files in its own folder under the output directory, as a
real site keeps them on its own disk; the ClientApp of simulated site i reads only
`sites/<name>/features.parquet`, and its identity key from `identity.key` beside it.
The study run pins every site's public identity key (`federation.site_keys`), as a
coordinator pins the keys its sites print with `fedrad site keygen` (docs/privacy.md).
The ServerApp runs in Flower's simulation engine, and the same pipeline fit on the
pooled features is added for comparison.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context

from fedrad.client.app import TableLoader, make_client_app
from fedrad.client.identity import load_or_create_identity, public_hex
from fedrad.common.config import StudyConfig
from fedrad.server.app import make_server_app
from fedrad.server.store.writer import RunWriter
from fedrad.simulations.pooled import pooled_reference


@dataclass(frozen=True)
class SimulationPaths:
    out_dir: Path

    @property
    def cohort(self) -> Path:
        return self.out_dir / "cohort"

    def site_dir(self, site: str) -> Path:
        return self.out_dir / "sites" / site

    def features(self, site: str) -> Path:
        return self.site_dir(site) / "features.parquet"

    @property
    def results(self) -> Path:
        return self.out_dir / "results.json"


class PartitionLocator:
    """Simulated site i (Flower's `partition-id`) reads the i-th site's feature table."""

    def __init__(self, tables: dict[str, Path]):
        self.sites = list(tables.items())

    def __call__(self, context: Context) -> tuple[str, Path]:
        name, path = self.sites[int(context.node_config["partition-id"])]
        return name, path


def pin_site_keys(tables: dict[str, Path], study: StudyConfig) -> StudyConfig:
    """`study` with each site's public identity key pinned under `federation.site_keys`.

    Each site's key is made (or read, on a rerun) in the folder that holds its feature
    table, where its ClientApp reads it, so sites and aggregator run one pinned study.
    The pins replace any the study brings: these sites are the simulation's own.
    """
    keys = {
        site: public_hex(load_or_create_identity(Path(path).parent))
        for site, path in tables.items()
    }
    return study.updated(federation={"site_keys": keys})


def run_federation(
    tables: dict[str, Path],
    study: StudyConfig,
    log: Callable[[str], None] = print,
    cpus: int | None = None,
    store: RunWriter | None = None,
    on_model: Callable[[dict], None] | None = None,
) -> dict:
    """Run the study protocol in Flower's simulation engine over the given site tables,
    with the sites' identity keys pinned in the study (`pin_site_keys`): the results'
    `study.config.federation.site_keys` shows them. With a `store`, the ServerApp records
    the run there as it goes (docs/store.md). The final model's bundle payload, unsigned,
    goes to `on_model` (docs/model-bundle.md)."""
    from flwr.simulation import run_simulation

    study = pin_site_keys(tables, study)
    outcome: dict = {}

    def keep(results: dict) -> None:
        outcome["results"] = results

    server_app = make_server_app(
        study,
        on_results=keep,
        expected_sites=len(tables),
        log=log,
        store=store,
        on_model=on_model,
    )
    client_app = make_client_app(TableLoader(PartitionLocator(tables), lambda _: study))
    cpus = cpus or os.cpu_count() or 1
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "logging_level": "ERROR", "log_to_driver": False},
    }
    flower_log = logging.getLogger("flwr")
    flower_log.setLevel(logging.WARNING)
    flower_log.addFilter(_known_deprecation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        run_simulation(
            server_app, client_app, num_supernodes=len(tables), backend_config=backend_config
        )
    if "results" not in outcome:
        raise RuntimeError("the federation ended without results; see the Flower log above")
    return outcome["results"]


def _known_deprecation(record: logging.LogRecord) -> bool:
    """Drop Flower's notice that `run_simulation` is deprecated (it is still the in-process
    entry to the simulation engine; `flwr run` needs a managed SuperLink per run)."""
    return "`run_simulation` function is deprecated" not in record.getMessage()


def attach_pooled_reference(results: dict, tables: dict[str, Path], study: StudyConfig) -> dict:
    """Add `metrics.pooled_reference`: the same study on the included sites' pooled cases."""
    included = {s["name"] for s in results["sites"] if s["status"] == "included"}
    reference = pooled_reference(
        {name: path for name, path in tables.items() if name in included}, study
    )
    results["metrics"]["pooled_reference"] = reference["metrics"]["federated"] | {
        "model": reference["model"]
    }
    return results
