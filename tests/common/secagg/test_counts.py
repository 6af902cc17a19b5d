"""A site's signed census counts verify only as signed: for its name, this study, these
counts and batches, under its own identity key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedrad.common.secagg.counts import sign_counts, verify_counts
from fedrad.common.secagg.errors import KeyVerificationError

STUDY = b"study-hash"
CASES = ["12", "<5"]


@pytest.fixture(scope="module")
def identity() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def test_counts_verify_as_signed(identity):
    signature = sign_counts(identity, "site01", STUDY, CASES, 2)
    verify_counts(_public(identity), signature, "site01", STUDY, CASES, 2)


@pytest.mark.parametrize(
    ("site", "study", "cases", "batches"),
    [
        ("site02", STUDY, CASES, 2),
        ("site01", b"another-study", CASES, 2),
        ("site01", STUDY, ["12", "7"], 2),
        ("site01", STUDY, ["12", ">=5"], 2),
        ("site01", STUDY, CASES, 1),
    ],
    ids=["another-site", "another-study", "a-count-raised", "suppression-changed", "batches"],
)
def test_counts_altered_in_any_field_are_refused(identity, site, study, cases, batches):
    signature = sign_counts(identity, "site01", STUDY, CASES, 2)
    with pytest.raises(KeyVerificationError, match=f"site {site!r}"):
        verify_counts(_public(identity), signature, site, study, cases, batches)


def test_counts_signed_by_another_key_are_refused(identity):
    signature = sign_counts(Ed25519PrivateKey.generate(), "site01", STUDY, CASES, 2)
    with pytest.raises(KeyVerificationError):
        verify_counts(_public(identity), signature, "site01", STUDY, CASES, 2)
