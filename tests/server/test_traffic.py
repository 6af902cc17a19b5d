"""No needless traffic or work: the fitted pipeline reaches each site once per fit (and at
evaluation only if the site no longer keeps it), only beta travels per shared Newton round, and a
site's ComBat empirical-Bayes step runs once per fit."""

from __future__ import annotations

from conftest import FaultyGrid, run_study, site_grid

from fedrad.client import local_pipeline
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import from_record
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(  # a fixed penalty: a tuned one's inner folds add parts and EB steps
    federation=FederationSettings(min_cell_size=3),
    validation={"scheme": "kfold", "folds": 3},
    model={"ridge_lambda": 1.0},
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


def test_each_site_receives_each_fitted_pipeline_once_per_fit(tmp_path):
    grid = site_grid(write_site_feature_tables(tmp_path, STUDY), STUDY, RecordingGrid)
    run_study(grid, STUDY)
    fitting = [
        (node, digest)
        for node, kind, payload in grid.requests
        if not kind.startswith("evaluate.")
        for digest in _digests_sent_in_full(payload)
    ]
    assert fitting, "no pipeline was sent at all"
    # per fit, each stage at most once: the feature list, ComBat's provisional and pooled
    # fits, the full pipeline (an identical stage may recur in another fit)
    fits = STUDY.validation.folds + 1
    for node in (1, 2, 3):
        assert sum(sent == node for sent, _ in fitting) <= 4 * fits
    # the fits' Newton steps share rounds: the first carries every fit's pipeline to each
    # site, the others carry each fit's beta only
    newton = [p for _, kind, p in grid.requests if kind == "train.lasso_round"]
    full = [digest for p in newton for digest in _digests_sent_in_full(p)]
    assert len(full) == 3 * fits
    assert len(newton) >= 3 * 3  # each site, every iteration
    others = [p for p in newton if not _digests_sent_in_full(p)]
    assert others and all(set(p.arrays) == {f"{i}/beta" for i in range(fits)} for p in others)
    # evaluation resends a fold's pipeline only if the site no longer keeps it, once
    scoring = [
        (node, digest)
        for node, kind, payload in grid.requests
        if kind == "evaluate.scores"
        for digest in _digests_sent_in_full(payload)
    ]
    assert len(scoring) <= 3 * STUDY.validation.folds


def test_request_bytes_are_counted_beside_reply_bytes(tmp_path):
    grid = site_grid(write_site_feature_tables(tmp_path, STUDY), STUDY, RecordingGrid)
    results = run_study(grid, STUDY)
    to_sites, from_sites = results["traffic_bytes_to_sites"], results["traffic_bytes_from_sites"]
    assert set(to_sites) == set(from_sites)
    assert all(size > 0 for sizes in to_sites.values() for size in sizes.values())
    assert results["round_counts"]["lasso-round"] >= 3  # the fits iterate in shared rounds


def test_combat_empirical_bayes_runs_once_per_fit_and_site(tmp_path, monkeypatch):
    calls = []
    original = local_pipeline._own_estimates

    def counted(data, params, partition, study):
        calls.append((data.name, partition))
        return original(data, params, partition, study)

    monkeypatch.setattr(local_pipeline, "_own_estimates", counted)
    run_study(site_grid(write_site_feature_tables(tmp_path, STUDY), STUDY), STUDY)
    fits = STUDY.validation.folds + 1  # every fold, and the final fit
    assert len(calls) == 3 * fits
    assert len(set(calls)) == len(calls)
