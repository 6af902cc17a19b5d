"""The model bundle's format: exact arrays, a signature that any changed byte breaks, and a
newer format refused by a sentence."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from fedrad.common.harmonization.combat import OLSFit
from fedrad.common.model_bundle import (
    FORMAT_VERSION,
    BundleRefused,
    decode_array,
    encode_array,
    load_bundle,
    pipeline_fields,
    signed_document,
    write_bundle,
)
from fedrad.common.model_signing import (
    SIGNING_KEY,
    SIGNING_PUBLIC_KEY,
    load_signing_key,
    make_signing_key,
    trusted_key,
)
from fedrad.common.pipeline import CombatFit, PipelineParams
from fedrad.common.stats.moments import Standardizer

RNG = np.random.default_rng(3)
PARAMS = PipelineParams(
    features=["a", "b", "c"],
    combat=CombatFit(
        OLSFit(RNG.normal(size=(2, 3)), np.zeros((0, 3)), RNG.normal(size=3), np.zeros(0)),
        RNG.random(3) + 0.5,
        ("s1", "s2"),
    ),
    selected=np.array([0, 2]),
    standardizer=Standardizer(mean=RNG.normal(size=2), scale=RNG.random(2) + 0.1),
    beta=RNG.normal(size=3) / 7,
)


@pytest.fixture
def keys(tmp_path):
    make_signing_key(tmp_path / "keys")
    return tmp_path / "keys"


def _written(tmp_path, keys, payload=None) -> dict:
    payload = payload or {"pipeline": pipeline_fields(PARAMS), "note": "x"}
    document = signed_document(payload, load_signing_key(keys / SIGNING_KEY))
    write_bundle(document, tmp_path / "model.fedrad")
    return document


def _trust(keys):
    return trusted_key(str(keys / SIGNING_PUBLIC_KEY))


def test_arrays_round_trip_bit_for_bit():
    for array in (RNG.normal(size=(3, 4)), np.array([1, 5], dtype=np.int64), np.zeros((0, 2))):
        back = decode_array(json.loads(json.dumps(encode_array(array))))
        assert back.dtype == array.dtype and back.shape == array.shape
        assert back.tobytes() == array.tobytes()


def test_a_signed_bundle_loads_to_the_same_pipeline(tmp_path, keys):
    _written(tmp_path, keys)
    bundle = load_bundle(tmp_path / "model.fedrad", _trust(keys))
    assert bundle.trusted
    for name, array in PARAMS.to_fields()[0].items():
        assert np.array_equal(bundle.params.to_fields()[0][name], array), name
    assert bundle.params.model_features == ["a", "c"]


def _tamper_weights(document: dict) -> None:
    encoded = document["payload"]["pipeline"]["arrays"]["beta"]
    raw = bytearray(base64.b64decode(encoded["base64"]))
    raw[3] ^= 0x01  # one bit of one coefficient
    encoded["base64"] = base64.b64encode(bytes(raw)).decode()


def _tamper_signature(document: dict) -> None:
    raw = bytearray(base64.b64decode(document["signature"]["value"]))
    raw[0] ^= 0x80
    document["signature"]["value"] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("tamper", [_tamper_weights, _tamper_signature])
@pytest.mark.parametrize("trusting", [True, False])
def test_a_tampered_bundle_is_refused(tmp_path, keys, tamper, trusting):
    document = _written(tmp_path, keys)
    tamper(document)
    (tmp_path / "model.fedrad").write_text(json.dumps(document))
    with pytest.raises(BundleRefused, match="fails its signature check"):
        load_bundle(tmp_path / "model.fedrad", _trust(keys) if trusting else None)


def test_a_bundle_signed_by_another_key_is_refused_when_a_key_is_trusted(tmp_path, keys):
    make_signing_key(tmp_path / "other")
    document = signed_document(
        {"pipeline": pipeline_fields(PARAMS)}, load_signing_key(tmp_path / "other" / SIGNING_KEY)
    )
    write_bundle(document, tmp_path / "model.fedrad")
    assert not load_bundle(tmp_path / "model.fedrad", None).trusted
    with pytest.raises(BundleRefused, match="against the key you trust"):
        load_bundle(tmp_path / "model.fedrad", _trust(keys))


def test_a_newer_format_is_refused_by_a_sentence(tmp_path, keys):
    document = _written(tmp_path, keys)
    document["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "model.fedrad").write_text(json.dumps(document))
    with pytest.raises(BundleRefused, match=f"format version {FORMAT_VERSION + 1}, newer than"):
        load_bundle(tmp_path / "model.fedrad", _trust(keys))


def test_not_a_bundle_is_named(tmp_path):
    (tmp_path / "x.fedrad").write_text("{}")
    with pytest.raises(BundleRefused, match="is not a FedRad model bundle"):
        load_bundle(tmp_path / "x.fedrad", None)
