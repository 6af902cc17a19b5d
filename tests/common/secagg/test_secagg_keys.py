"""A relayed exchange key is used only if its site signed it for this study; a tag only once."""

import dataclasses
import hashlib

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from secagg_federation import STUDY_HASH, federation, tag

from fedrad.common.secagg import (
    FixedPoint,
    KeyVerificationError,
    ReleaseTag,
    RevealRefused,
    SiteMasker,
    StudyKeyPair,
    TagLedger,
    TagReuseError,
    pairwise_seed,
    shared_secret,
    verify,
)


def site_zero(fed, pinned, relayed) -> SiteMasker:
    """Site 0 built from what the aggregator relayed."""
    return SiteMasker(
        "site-00", fed.identities["site-00"], fed.keys["site-00"], STUDY_HASH, pinned, relayed
    )


def test_a_key_signed_by_its_site_for_this_study_verifies():
    fed = federation(2)
    signed = fed.signed[1]

    key = verify(signed, fed.pinned()["site-01"], STUDY_HASH)

    assert key.public_bytes_raw() == fed.keys["site-01"].public_bytes


def test_a_key_the_aggregator_substituted_and_signed_itself_is_refused_by_site_name():
    fed = federation(3)
    relay_identity = Ed25519PrivateKey.generate()
    forged = StudyKeyPair.generate().sign("site-01", STUDY_HASH, relay_identity)

    with pytest.raises(KeyVerificationError, match="'site-01' is not signed by that site"):
        verify(forged, fed.pinned()["site-01"], STUDY_HASH)
    relayed = [forged if k.site == "site-01" else k for k in fed.signed]
    with pytest.raises(KeyVerificationError, match="'site-01'"):
        site_zero(fed, fed.pinned(), relayed)


def test_a_key_signed_for_another_study_is_refused_by_site_name():
    fed = federation(2)
    other_study = hashlib.sha256(b"another study").digest()
    signed = fed.keys["site-01"].sign("site-01", other_study, fed.identities["site-01"])

    with pytest.raises(KeyVerificationError, match="'site-01' is for study"):
        verify(signed, fed.pinned()["site-01"], STUDY_HASH)
    # Relabelling the study hash breaks the signature instead.
    relabelled = dataclasses.replace(signed, study_hash=STUDY_HASH)
    with pytest.raises(KeyVerificationError, match="'site-01' is not signed"):
        verify(relabelled, fed.pinned()["site-01"], STUDY_HASH)


def test_a_key_relayed_under_another_sites_name_is_refused():
    fed = federation(3)
    swapped = dataclasses.replace(fed.signed[1], site="site-02")

    with pytest.raises(KeyVerificationError, match="'site-02' is not signed"):
        verify(swapped, fed.pinned()["site-02"], STUDY_HASH)


def test_a_site_without_a_pinned_identity_or_with_a_foreign_own_key_is_refused():
    fed = federation(3)
    pinned = {n: k for n, k in fed.pinned().items() if n != "site-02"}
    with pytest.raises(KeyVerificationError, match="no pinned identity key for site 'site-02'"):
        site_zero(fed, pinned, fed.signed)
    not_mine = [StudyKeyPair.generate().sign("site-00", STUDY_HASH, fed.identities["site-00"])]
    with pytest.raises(KeyVerificationError, match="relayed for site 'site-00' is not its own"):
        site_zero(fed, pinned, not_mine)


def test_both_sites_of_a_pair_derive_one_seed_and_every_tag_field_changes_it():
    a, b = StudyKeyPair.generate(), StudyKeyPair.generate()
    secret_ab = shared_secret(a.private_key, b.private_key.public_key())
    secret_ba = shared_secret(b.private_key, a.private_key.public_key())
    base = tag()

    assert pairwise_seed(secret_ab, base) == pairwise_seed(secret_ba, base)
    variants = [
        dataclasses.replace(base, study="other"),
        dataclasses.replace(base, fit=1),
        dataclasses.replace(base, phase="screening"),
        dataclasses.replace(base, iteration=1),
        dataclasses.replace(base, quantity="score"),
        dataclasses.replace(base, attempt=1),
    ]
    seeds = {pairwise_seed(secret_ab, t) for t in [base, *variants]}
    assert len(seeds) == 7


def test_the_tag_encoding_is_unambiguous():
    one = ReleaseTag("s", 0, "ab", 0, "c")
    other = ReleaseTag("s", 0, "a", 0, "bc")

    assert one.encode() != other.encode()
    assert one.encode() == ReleaseTag("s", 0, "ab", 0, "c").encode()
    with pytest.raises(ValueError, match="iteration"):
        ReleaseTag("s", 0, "ab", -1, "c")
    with pytest.raises(ValueError, match="quantity"):
        ReleaseTag("s", 0, "ab", 0, "")


def test_a_tag_is_refused_the_second_time_a_site_uses_it():
    ledger = TagLedger()
    ledger.claim(tag())
    with pytest.raises(TagReuseError, match="already used"):
        ledger.claim(tag())
    ledger.claim(tag(attempt=1))
    assert tag() in ledger and len(ledger) == 2


def test_a_site_masks_under_a_tag_only_once():
    fed = federation(3)
    fp = FixedPoint(3)
    site = fed.sites["site-00"]
    site.mask(fp.encode(np.zeros(4)), tag(), ["site-01", "site-02"])

    with pytest.raises(TagReuseError, match="hessian/attempt 0 was already used"):
        site.mask(fp.encode(np.ones(4)), tag(), ["site-01", "site-02"])
    site.mask(fp.encode(np.ones(4)), tag(attempt=1), ["site-01", "site-02"])


def test_a_site_refuses_to_mask_for_an_unverified_peer_or_alone():
    fed = federation(2)
    fp = FixedPoint(2)
    site = fed.sites["site-00"]

    with pytest.raises(KeyVerificationError, match="site-07"):
        site.mask(fp.encode(np.zeros(4)), tag(), ["site-07"])
    with pytest.raises(RevealRefused, match="fewer than 2"):
        site.mask(fp.encode(np.zeros(4)), tag(), [])


def test_masking_floats_is_refused_without_using_up_the_tag():
    fed = federation(2)
    site = fed.sites["site-00"]

    with pytest.raises(ValueError, match="flat uint64 words"):
        site.mask(np.zeros(4), tag(), ["site-01"])
    site.mask(FixedPoint(2).encode(np.zeros(4)), tag(), ["site-01"])
