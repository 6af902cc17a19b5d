"""The model bundle (`model.fedrad`): one signed JSON file holding a released model and
everything a site needs to apply it and a reviewer needs to judge it (docs/model-bundle.md).

JSON, not pickle: loading it runs no code, any language reads it, and a reviewer can open
it. The fitted pipeline travels as `PipelineParams.to_fields()` (the wire contract's names),
each array as dtype, shape and base64 of its little-endian bytes, so floats round-trip
exactly. The signature is Ed25519 over the payload's canonical JSON (sorted keys, no
spaces): changing any byte of weights or provenance breaks it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedrad.common.config import StudyConfig
from fedrad.common.model_signing import public_hex, read_public_key, verifies
from fedrad.common.pipeline import PipelineParams
from fedrad.common.user_error import UserError

FORMAT = "fedrad-model-bundle"
FORMAT_VERSION = 1  # raise when a reader of the previous version would misread a bundle
BUNDLE_FILE = "model.fedrad"


class BundleRefused(UserError):
    """A bundle that is not one, is newer than this FedRad reads, or fails its signature."""


def canonical(payload: dict) -> bytes:
    """The bytes the signature covers: the payload's canonical, strict JSON."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def encode_array(array: np.ndarray) -> dict:
    array = np.asarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": array.dtype.str.lstrip("<>|="),
        "shape": list(array.shape),
        "base64": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode(),
    }


def decode_array(encoded: dict) -> np.ndarray:
    raw = base64.b64decode(encoded["base64"], validate=True)
    dtype = np.dtype("<" + encoded["dtype"]) if encoded["dtype"][0] in "fiu" else encoded["dtype"]
    return np.frombuffer(raw, dtype=dtype).reshape(encoded["shape"]).copy()


def pipeline_fields(params: PipelineParams) -> dict:
    arrays, values = params.to_fields()
    return {"values": values, "arrays": {name: encode_array(a) for name, a in arrays.items()}}


def signed_document(payload: dict, key: Ed25519PrivateKey) -> dict:
    """The bundle's whole content: format, version, payload and its signature."""
    payload = payload | {"format_version": FORMAT_VERSION}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "payload": payload,
        "signature": {
            "algorithm": "Ed25519",
            "public_key": public_hex(key.public_key()),
            "value": base64.b64encode(key.sign(canonical(payload))).decode(),
        },
    }


def write_bundle(document: dict, path: Path) -> None:
    """Written atomically, readable with any JSON reader."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=1, sort_keys=True, allow_nan=False))
    partial.replace(path)


@dataclass(frozen=True)
class ModelBundle:
    """A verified bundle: its payload, the pipeline rebuilt from it, and who signed it."""

    payload: dict
    params: PipelineParams
    signer: str  # the public key (hex) whose signature verified
    trusted: bool  # verified against a key the site trusts, not the bundle's own

    @property
    def study(self) -> StudyConfig:
        return StudyConfig.model_validate(self.payload["study"]["config"])

    @property
    def threshold(self) -> float:
        return float(self.payload["threshold"]["value"])

    @property
    def training_sites(self) -> list[str]:
        return list(self.payload["model"]["training_sites"])


def load_bundle(path: Path, trust: Ed25519PublicKey | None) -> ModelBundle:
    """Read and verify `path`: refused by a sentence if it is not a bundle, is a newer
    format, or its signature fails (against `trust`, else the key it carries)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleRefused(f"cannot read the model bundle {path}: {exc.strerror}.") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleRefused(f"{path} is not a FedRad model bundle (not JSON: {exc}).") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleRefused(f"{path} is not a FedRad model bundle (no format {FORMAT!r}).")
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleRefused(
            f"{path} is a model bundle of format version {version}, newer than this FedRad "
            f"reads (version {FORMAT_VERSION}); install the FedRad that wrote it, or a later "
            "one, to use it."
        )
    try:
        payload, signature = document["payload"], document["signature"]
        signer = read_public_key(signature["public_key"], f"{path}'s signing key")
        value = base64.b64decode(signature["value"], validate=True)
        message = canonical(payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleRefused(f"{path} is damaged: its payload or signature is malformed.") from exc
    key = trust or signer
    if not verifies(key, value, message):
        whose = "the key you trust" if trust is not None else "the key it carries"
        raise BundleRefused(
            f"{path} fails its signature check against {whose}: it was altered after the "
            "aggregator signed it, or another key signed it; do not use it."
        )
    if payload.get("format_version") != version:
        raise BundleRefused(f"{path} is damaged: its signed and outer format versions differ.")
    fields = payload["pipeline"]
    arrays = {name: decode_array(encoded) for name, encoded in fields["arrays"].items()}
    params = PipelineParams.from_fields(arrays, fields["values"])
    return ModelBundle(payload, params, public_hex(key), trusted=trust is not None)
