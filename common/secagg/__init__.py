"""Secure aggregation building blocks for the Message API (PRIVACY.md section 4).

Flower's SecAgg+ runs only on the legacy API, so FedRad masks its releases itself:
pairwise masks from signed X25519 keys cancel in the sum, a fresh self-mask per release
keeps a site hidden when the aggregator fakes its drop-out (Bonawitz et al., CCS 2017).
Plain arrays and bytes in and out; the protocol integration lives elsewhere.
"""

from fedrad.common.secagg.errors import (
    EncodingError,
    KeyVerificationError,
    RevealRefused,
    SecAggError,
    SurvivorSetError,
    TagReuseError,
    UnmaskError,
)
from fedrad.common.secagg.fixedpoint import FixedPoint
from fedrad.common.secagg.keys import SignedKey, StudyKeyPair, verify
from fedrad.common.secagg.masks import apply_masks, pairwise_sign
from fedrad.common.secagg.prg import expand
from fedrad.common.secagg.seeds import pairwise_seed, self_seed, shared_secret
from fedrad.common.secagg.site import Reveal, SiteMasker
from fedrad.common.secagg.survivors import (
    sign_survivor_set,
    survivor_digest,
    verify_survivor_signature,
)
from fedrad.common.secagg.tags import ReleaseTag, TagLedger
from fedrad.common.secagg.unmask import Unmasker

__all__ = [
    "EncodingError",
    "FixedPoint",
    "KeyVerificationError",
    "ReleaseTag",
    "Reveal",
    "RevealRefused",
    "SecAggError",
    "SignedKey",
    "SiteMasker",
    "StudyKeyPair",
    "SurvivorSetError",
    "TagLedger",
    "TagReuseError",
    "UnmaskError",
    "Unmasker",
    "apply_masks",
    "expand",
    "pairwise_seed",
    "pairwise_sign",
    "self_seed",
    "shared_secret",
    "sign_survivor_set",
    "survivor_digest",
    "verify",
    "verify_survivor_signature",
]
