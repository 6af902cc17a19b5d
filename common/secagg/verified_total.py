"""A release's total recomputed by a site from what the aggregator unmasked it from.

An aggregator that chooses what it sends back after a release (an MLP round's next global
weights) could send anything it likes and call it the total. So each site signs its masked
words with its identity key, over the release tag, the survivor set and a digest of the
words; the aggregator relays every survivor's signed words and the reveals; and a site
recomputes the total itself. Words not signed by their sender are refused (the aggregator
cannot stand in for a peer), and a reveal it altered leaves the total masked, which
decoding refuses: the only total that verifies is the one the sites' words make.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedrad.common.secagg.errors import SecAggError
from fedrad.common.secagg.site import Reveal
from fedrad.common.secagg.survivors import survivor_digest
from fedrad.common.secagg.tags import ReleaseTag
from fedrad.common.secagg.unmask import Unmasker

_DOMAIN = b"fedrad/secagg/masked-words/v1"


class UnverifiedTotal(SecAggError):
    """The relayed release does not make a total this site can recompute and trust."""


def words_message(
    tag: ReleaseTag, survivors: Iterable[str], dropped: Iterable[str], words: np.ndarray
) -> bytes:
    """The bytes a site signs for its masked words: the release's survivor-set digest (tag
    included) and SHA-256 of the words (uint64, little-endian)."""
    raw = np.ascontiguousarray(words, dtype="<u8").tobytes()
    return _DOMAIN + survivor_digest(tag, survivors, dropped) + hashlib.sha256(raw).digest()


def sign_words(
    identity: Ed25519PrivateKey,
    tag: ReleaseTag,
    survivors: Iterable[str],
    dropped: Iterable[str],
    words: np.ndarray,
) -> bytes:
    return identity.sign(words_message(tag, survivors, dropped, words))


def verify_words(
    identity: Ed25519PublicKey,
    tag: ReleaseTag,
    survivors: Iterable[str],
    dropped: Iterable[str],
    words: np.ndarray,
    signature: bytes,
) -> bool:
    try:
        identity.verify(bytes(signature), words_message(tag, survivors, dropped, words))
    except InvalidSignature:
        return False
    return True


def verified_total(
    tag: ReleaseTag,
    survivors: Iterable[str],
    dropped: Iterable[str],
    words: Mapping[str, np.ndarray],
    signatures: Mapping[str, bytes],
    identities: Mapping[str, Ed25519PublicKey],
    reveals: Iterable[Reveal],
) -> np.ndarray:
    """The survivors' total (uint64 words) from their signed masked words and reveals;
    refuses words a survivor did not sign, a survivor without words, or an incomplete or
    inconsistent unmasking."""
    alive, gone = frozenset(survivors), frozenset(dropped)
    if set(words) != alive:
        raise UnverifiedTotal(
            f"release {tag}: words relayed for {sorted(words)}, not for its survivors "
            f"{sorted(alive)}"
        )
    for site in sorted(alive):
        identity = identities.get(site)
        if identity is None or not verify_words(
            identity, tag, alive, gone, words[site], signatures.get(site, b"")
        ):
            raise UnverifiedTotal(
                f"release {tag}: the masked words relayed for site {site!r} are not signed by "
                "that site's identity key (the relay may have forged them)"
            )
    length = np.asarray(next(iter(words.values()))).size if words else 0
    unmasker = Unmasker(tag, alive | gone, length)
    try:
        for site in sorted(alive):
            unmasker.add(site, np.asarray(words[site]))
        unmasker.close()
        for reveal in reveals:
            unmasker.apply(reveal)
        return unmasker.total()
    except SecAggError as exc:
        raise UnverifiedTotal(f"release {tag}: {exc}") from exc
