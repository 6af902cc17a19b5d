"""A site's part in one round of a Flower strategy: local MLP training on its training cases."""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedrad.client.site import SiteData, SiteSkipped, model_inputs
from fedrad.common.config import StudyConfig
from fedrad.common.messages import payload_from_bytes
from fedrad.common.models import mlp
from fedrad.common.pipeline import Partition, PipelineParams


def train_round(data: SiteData, study: StudyConfig, content: RecordDict) -> RecordDict:
    """Train from the global weights in `content["arrays"]`; reply as FedAvg expects:
    one ArrayRecord and a MetricRecord with `num-examples`."""
    config = content["config"]
    payload = payload_from_bytes(bytes(config["pipeline"]))
    params, partition = PipelineParams.from_payload(payload), Partition.from_values(payload.values)
    rows = data.rows(partition, "train", study)
    if rows.sum() < study.federation.min_cell_size:
        raise SiteSkipped(f"{data.name} has fewer than {study.federation.min_cell_size} cases")
    weights = {name: array.numpy() for name, array in content["arrays"].items()}
    settings = study.model
    trained, loss = mlp.train_local(
        weights,
        model_inputs(data, params, partition, rows, study),
        data.y[rows],
        epochs=settings.local_epochs,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        proximal_mu=float(config.get("proximal-mu", 0.0)),
        seed=settings.seed + int(config.get("server-round", 0)),
    )
    return RecordDict(
        {
            "arrays": ArrayRecord({name: Array(value) for name, value in trained.items()}),
            "metrics": MetricRecord({"num-examples": int(rows.sum()), "train-loss": loss}),
        }
    )
