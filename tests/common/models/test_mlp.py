"""The MLP path: torch training, numpy scoring, Flower strategies inside the protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FaultyGrid
from flwr.app import ArrayRecord, ConfigRecord

from fedrad.client.app import TableLoader, make_client_app
from fedrad.common.config import FederationSettings, ModelSettings, StudyConfig
from fedrad.common.models import mlp
from fedrad.server.federation import GridTransport
from fedrad.server.study import StudyProtocol
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, histogram_bins=200),
    model={"kind": "mlp", "rounds": 15, "hidden_units": 8},
    validation={"scheme": "holdout"},
)
PLAIN = STUDY.updated(federation={"secure_aggregation": False})


def _run(tmp_path, study: StudyConfig, clinical: bool = False) -> tuple[dict, FaultyGrid]:
    tables = write_site_feature_tables(tmp_path, study, clinical=clinical)

    def locate(context):
        return str(context.node_config["site-name"]), Path(context.node_config["path"])

    app = make_client_app(TableLoader(locate, lambda _: study))
    grid = FaultyGrid(app, [{"site-name": n, "path": str(p)} for n, p in tables.items()])
    results = StudyProtocol(GridTransport(grid, 60), study, 3, log=lambda _: None).run()
    return results, grid


def test_numpy_scoring_equals_the_torch_forward_pass():
    import torch

    weights = mlp.initial_weights(5, 4, seed=1)
    x = np.random.default_rng(0).normal(size=(7, 5))
    module = mlp._module(5, 4)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    expected = torch.sigmoid(module(torch.from_numpy(x.astype(np.float32)))).detach().numpy()
    np.testing.assert_allclose(mlp.predict(weights, x), expected, rtol=1e-5)


def test_fedprox_term_keeps_local_weights_near_the_global_ones():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 5)), (rng.random(60) < 0.5).astype(float)
    start = mlp.initial_weights(5, 4, seed=0)

    def drift(mu: float) -> float:
        trained, _ = mlp.train_local(start, x, y, 20, 0.1, 8, proximal_mu=mu, seed=0)
        return sum(float(np.sum((trained[k] - start[k]) ** 2)) for k in start)

    assert drift(10.0) < 0.2 * drift(0.0)


def test_an_update_longer_than_the_clip_is_shrunk_to_it_and_a_shorter_one_kept():
    start = {"w": np.zeros(3, dtype=np.float32)}
    assert mlp.distance(mlp.clipped(start, {"w": np.array([3.0, 4.0, 0.0])}, 1.0), start) == (
        pytest.approx(1.0)
    )
    short = {"w": np.array([0.3, 0.4, 0.0], dtype=np.float32)}
    np.testing.assert_array_equal(mlp.clipped(start, short, 1.0)["w"], short["w"])


def test_a_coordinate_wise_median_of_clipped_updates_stays_within_the_step_bound():
    rng = np.random.default_rng(0)
    settings = ModelSettings(kind="mlp", strategy="fedmedian")
    clip = settings.mlp_update_clip
    # the worst case: each coordinate's median is a large entry of two of three updates
    corners = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]]) * clip / np.sqrt(2)
    assert np.linalg.norm(np.median(corners, axis=0)) > clip
    for updates in [corners, *rng.normal(size=(200, 5, 40))]:
        clipped = [u * min(1.0, clip / np.linalg.norm(u)) for u in updates]
        assert np.linalg.norm(np.median(clipped, axis=0)) <= settings.mlp_step_bound + 1e-12


def test_fedavg_mlp_learns_and_sends_only_weights(tmp_path):
    results, grid = _run(tmp_path, PLAIN)  # each site's weights in the clear, to look at
    model = results["model"]
    assert model["kind"] == "mlp" and model["strategy"] == "fedavg"
    assert model["train_loss_by_round"][-1] < model["train_loss_by_round"][0]
    assert results["metrics"]["federated"]["auc"] > 0.7
    train_replies = [reply for _, kind, reply in grid.sent if kind == "train"]
    assert len(train_replies) == 3 * PLAIN.model.rounds
    for reply in train_replies:
        records = list(reply.content.values())
        assert sum(isinstance(r, ArrayRecord) for r in records) == 1
        assert not any(isinstance(r, ConfigRecord) for r in records)
        shapes = {a.numpy().shape for a in reply.content["arrays"].values()}
        assert shapes == {(8, len(model["features"])), (8,), (1, 8), (1,)}


@pytest.mark.parametrize("strategy", ["fedprox", "fedmedian", "fedtrimmedavg", "krum"])
def test_each_strategy_trains_a_usable_model(tmp_path, strategy):
    # the robust strategies read every site's weights: only without secure aggregation
    secure = strategy == "fedprox"
    study = STUDY.updated(
        model={"strategy": strategy, "rounds": 4}, federation={"secure_aggregation": secure}
    )
    results, _ = _run(tmp_path, study)
    assert results["model"]["strategy"] == strategy
    assert 0.5 < results["metrics"]["federated"]["auc"] <= 1.0


def test_mlp_reads_clinical_inputs_next_to_the_selected_features(tmp_path):
    study = PLAIN.updated(
        clinical={"age": None, "sex": ["F", "M"]}, model={"clinical_inputs": ["sex", "age"]}
    )
    results, grid = _run(tmp_path, study, clinical=True)
    features = results["model"]["features"]
    assert features[-2:] == ["clinical_sex=M", "clinical_age"]
    assert features[:-2] == results["selection"]["kept"]
    first_layer = [r for _, kind, r in grid.sent if kind == "train"][0].content["arrays"]
    assert len(features) in {a.numpy().shape[-1] for a in first_layer.values()}
    assert results["metrics"]["federated"]["auc"] > 0.7
