"""What every phase builds its requests from: the pipeline so far over each site's partition."""

from __future__ import annotations

import numpy as np

from fedrad.common.messages import Request
from fedrad.common.pipeline import Partition, PipelineParams


def training_requests(
    params: PipelineParams,
    nodes: list[int],
    partitions: dict[int, Partition],
    arrays: dict[str, np.ndarray] | None = None,
    values: dict | None = None,
) -> dict[int, Request]:
    """One request per node: the pipeline so far over its partition, plus extras."""
    return {
        node: Request(params, partitions[node], dict(arrays or {}), dict(values or {}))
        for node in nodes
    }
