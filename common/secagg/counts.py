"""A site's census counts, signed with its identity key and relayed with its exchange key,
so that every site can hold a total's fold test parts to k itself (`client/fold_check.py`)
instead of trusting the aggregator to have applied its rule: the aggregator cannot alter
counts it relays, as it cannot alter keys."""

from __future__ import annotations

import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedrad.common.secagg.errors import KeyVerificationError
from fedrad.common.secagg.keys import identity_key

_DOMAIN = b"fedrad/secagg/census-counts/v1"


def counts_message(site: str, study_hash: bytes, cases: list[str], batches: int) -> bytes:
    """The bytes a site signs: its name, the study, its counts per class as its census
    sent them (suppressed below k), and its number of batches."""
    fields = [site, study_hash.hex(), [str(count) for count in cases], int(batches)]
    return _DOMAIN + json.dumps(fields, separators=(",", ":")).encode()


def sign_counts(
    identity: Ed25519PrivateKey, site: str, study_hash: bytes, cases: list[str], batches: int
) -> bytes:
    return identity.sign(counts_message(site, study_hash, cases, batches))


def verify_counts(
    identity: bytes,
    signature: bytes,
    site: str,
    study_hash: bytes,
    cases: list[str],
    batches: int,
) -> None:
    """Raise KeyVerificationError unless `identity` signed these counts for this study."""
    try:
        identity_key(identity).verify(signature, counts_message(site, study_hash, cases, batches))
    except (InvalidSignature, ValueError) as exc:
        raise KeyVerificationError(
            f"the census counts relayed for site {site!r} are not the ones it signed"
        ) from exc
