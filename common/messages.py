"""Protocol payloads as Flower records, and the message type of each protocol request."""

from __future__ import annotations

import io
import json

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedrad.common.pipeline import Payload

MESSAGE_TYPES = {
    "census": "query.census",
    "combat-ols": "query.combat_ols",
    "combat-ssr": "query.combat_ssr",
    "combat-batch-moments": "query.combat_batch_moments",
    "screen": "query.screen",
    "comoments": "query.comoments",
    "site-effect": "query.site_effect",
    "newton": "train.newton",
    "loss": "train.loss",
    "lambda-max": "train.lambda_max",
    "scores": "evaluate.scores",
    "calibration": "evaluate.calibration",
    "persist": "query.persist",
}


def to_record(payload: Payload) -> RecordDict:
    arrays = {name: Array(np.ascontiguousarray(value)) for name, value in payload.arrays.items()}
    return RecordDict({"arrays": ArrayRecord(arrays), "values": ConfigRecord(dict(payload.values))})


def from_record(content: RecordDict) -> Payload:
    arrays = content["arrays"] if "arrays" in content else ArrayRecord()
    values = content["values"] if "values" in content else ConfigRecord()
    return Payload(
        arrays={name: array.numpy() for name, array in arrays.items()},
        values={name: _plain(value) for name, value in values.items()},
    )


def _plain(value):
    return list(value) if isinstance(value, list | tuple) else value


def payload_to_bytes(payload: Payload) -> bytes:
    """A payload as one bytes value, for a ConfigRecord (Flower strategies carry a single
    ArrayRecord of weights, so the pipeline travels in their config)."""
    buffer = io.BytesIO()
    values = np.frombuffer(json.dumps(payload.values).encode(), dtype=np.uint8)
    np.savez(buffer, **payload.arrays, __values__=values)
    return buffer.getvalue()


def payload_from_bytes(blob: bytes) -> Payload:
    with np.load(io.BytesIO(blob), allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files if name != "__values__"}
        values = json.loads(stored["__values__"].tobytes().decode())
    return Payload(arrays=arrays, values=values)
