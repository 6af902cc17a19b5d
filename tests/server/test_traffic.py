"""No needless traffic or work: the fitted pipeline reaches each site once per digest,
only beta travels per Newton round, and a site's ComBat empirical-Bayes step runs once
per fit."""

from __future__ import annotations

from pathlib import Path

from conftest import FaultyGrid

from fedrad.client import local_pipeline
from fedrad.client.app import TableLoader, make_client_app
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import from_record
from fedrad.server.federation import GridTransport
from fedrad.server.study import StudyProtocol
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
)


class RecordingGrid(FaultyGrid):
    """Keeps every request each node received."""

    def __init__(self, *args):
        super().__init__(*args)
        self.requests: list[tuple[int, str, dict]] = []

    def deliver(self, message):
        payload = from_record(message.content)
        self.requests.append((message.metadata.dst_node_id, message.metadata.message_type, payload))
        return super().deliver(message)


def _grid(tables: dict[str, Path]) -> RecordingGrid:
    def locate(context):
        return str(context.node_config["site-name"]), Path(context.node_config["path"])

    client = make_client_app(TableLoader(locate, lambda _: STUDY))
    return RecordingGrid(client, [{"site-name": n, "path": str(p)} for n, p in tables.items()])


def _run(grid) -> dict:
    transport = GridTransport(grid, timeout_s=60)
    return StudyProtocol(transport, STUDY, len(grid.contexts), log=lambda _: None).run()


def _digests_sent_in_full(payload) -> list[str]:
    """Digests of the fixed pipelines a request carries in full (bundles hold several)."""
    values = payload.values
    if "bundle.size" in values:
        return [
            str(values[f"{i}/pipeline.digest"])
            for i in range(int(values["bundle.size"]))
            if f"{i}/pipeline/features" in values
        ]
    return [str(values["pipeline.digest"])] if "pipeline/features" in values else []


def test_each_site_receives_each_fitted_pipeline_once(tmp_path):
    grid = _grid(write_site_feature_tables(tmp_path, STUDY))
    _run(grid)
    full = [(node, digest) for node, _, p in grid.requests for digest in _digests_sent_in_full(p)]
    assert full, "no pipeline was sent at all"
    assert len(full) == len(set(full))
    newton = [p for _, kind, p in grid.requests if kind == "train.newton"]
    with_pipeline = [p for p in newton if _digests_sent_in_full(p)]
    fits = STUDY.validation.folds + 1
    assert len(with_pipeline) == 3 * fits  # each site's first Newton round of each fit
    assert len(newton) >= 3 * len(with_pipeline)  # the other rounds ...
    others = [p for p in newton if not _digests_sent_in_full(p)]
    assert all(set(p.arrays) == {"beta"} for p in others)  # ... carry beta only


def test_request_bytes_are_counted_beside_reply_bytes(tmp_path):
    results = _run(_grid(write_site_feature_tables(tmp_path, STUDY)))
    to_sites, from_sites = results["traffic_bytes_to_sites"], results["traffic_bytes_from_sites"]
    assert set(to_sites) == set(from_sites)
    assert all(size > 0 for sizes in to_sites.values() for size in sizes.values())
    assert results["round_counts"]["newton"] >= 3 * 4  # every fit iterates


def test_combat_empirical_bayes_runs_once_per_fit_and_site(tmp_path, monkeypatch):
    calls = []
    original = local_pipeline._own_estimates

    def counted(data, params, partition, study):
        calls.append((data.name, partition))
        return original(data, params, partition, study)

    monkeypatch.setattr(local_pipeline, "_own_estimates", counted)
    _run(_grid(write_site_feature_tables(tmp_path, STUDY)))
    fits = STUDY.validation.folds + 1  # every fold, and the final fit
    assert len(calls) == 3 * fits
    assert len(set(calls)) == len(calls)
