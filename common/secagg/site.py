"""The site side of a masked release: mask once per tag, reveal once per survivor set.

A site's value is safe as long as the aggregator never holds both its self seed b_i
and all its pairwise seeds. The site therefore reveals b_i only as a survivor, pairwise
seeds only for peers outside the survivor set, and only for the one survivor set that
every survivor has signed; anything else is refused with the site's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedrad.common.secagg.errors import KeyVerificationError, RevealRefused, SurvivorSetError
from fedrad.common.secagg.keys import SignedKey, StudyKeyPair, identity_key, verify
from fedrad.common.secagg.masks import apply_masks, flat_words
from fedrad.common.secagg.seeds import pairwise_seed, self_seed, shared_secret
from fedrad.common.secagg.survivors import (
    sign_survivor_set,
    survivor_digest,
    verify_survivor_signature,
)
from fedrad.common.secagg.tags import ReleaseTag, TagLedger


@dataclass(frozen=True)
class Reveal:
    """A survivor's unmasking share: its self seed, and its pairwise seed with each dropped peer."""

    site: str
    tag: ReleaseTag
    self_seed: bytes
    pairwise: Mapping[str, bytes]


@dataclass
class Release:
    """What a site remembers of one masked release, until it has revealed for it."""

    self_seed: bytes
    participants: frozenset[str]
    signed_digest: bytes | None = None
    reveal: Reveal | None = None


class SiteMasker:
    """One site's masking for one study, over the peers whose exchange keys verified.

    `ledger` and `releases` carry a site's state between messages (its tags used, its
    releases not yet revealed). `trusted_identities` are the pinned Ed25519 identity keys
    (objects or 32 raw bytes) by site name; `signed_keys` are the exchange keys the
    aggregator relayed. Keys that do not verify are refused at construction.
    `min_survivors` is the fewest sites whose total this site helps reveal (never below
    2: one site's total is its value).
    """

    def __init__(
        self,
        site: str,
        identity: Ed25519PrivateKey,
        keys: StudyKeyPair,
        study_hash: bytes,
        trusted_identities: Mapping[str, Ed25519PublicKey | bytes],
        signed_keys: Iterable[SignedKey],
        *,
        min_survivors: int = 2,
        ledger: TagLedger | None = None,
        releases: dict[bytes, Release] | None = None,
    ) -> None:
        self._setup(site, identity, min_survivors, ledger, releases)
        for signed in signed_keys:
            if signed.site == site:
                if signed.public_key != keys.public_bytes:
                    raise KeyVerificationError(
                        f"the exchange key relayed for site {site!r} is not its own: refused"
                    )
                continue
            if signed.site in self._secrets:
                raise KeyVerificationError(f"two exchange keys relayed for site {signed.site!r}")
            if signed.site not in trusted_identities:
                raise KeyVerificationError(
                    f"no pinned identity key for site {signed.site!r}: its exchange key "
                    "cannot be verified"
                )
            trusted = identity_key(trusted_identities[signed.site])
            peer_key = verify(signed, trusted, study_hash)
            try:
                self._secrets[signed.site] = shared_secret(keys.private_key, peer_key)
            except ValueError as exc:
                raise KeyVerificationError(
                    f"exchange key of site {signed.site!r} gives no shared secret: refused"
                ) from exc
            self._identities[signed.site] = trusted

    def _setup(self, site, identity, min_survivors, ledger, releases) -> None:
        if min_survivors < 2:
            raise ValueError(f"min_survivors must be at least 2, got {min_survivors}")
        self.site = site
        self.min_survivors = min_survivors
        self._identity = identity
        self.ledger = ledger if ledger is not None else TagLedger()
        self.releases: dict[bytes, Release] = releases if releases is not None else {}
        self._identities: dict[str, Ed25519PublicKey] = {}
        self._secrets: dict[str, bytes] = {}

    @classmethod
    def from_verified(
        cls,
        site: str,
        identity: Ed25519PrivateKey,
        peers: Mapping[str, tuple[bytes, Ed25519PublicKey | bytes]],
        *,
        min_survivors: int = 2,
        ledger: TagLedger | None = None,
        releases: dict[bytes, Release] | None = None,
    ) -> SiteMasker:
        """A masker over peers this site verified before (`verified_peers`: each peer's shared
        secret and identity key), so a site rebuilding it for every message does not verify
        and exchange every key again."""
        masker = cls.__new__(cls)
        masker._setup(site, identity, min_survivors, ledger, releases)
        for peer, (secret, identity) in peers.items():
            masker._secrets[peer] = bytes(secret)
            masker._identities[peer] = identity_key(identity)
        return masker

    def verified_peers(self) -> dict[str, tuple[bytes, bytes]]:
        """Each verified peer's shared secret and raw identity key (for `from_verified`)."""
        return {
            peer: (self._secrets[peer], self._identities[peer].public_bytes_raw())
            for peer in self._secrets
        }

    @property
    def peers(self) -> list[str]:
        """The sites whose exchange keys verified, in mask order."""
        return sorted(self._secrets)

    def mask(self, values: np.ndarray, tag: ReleaseTag, peers: Iterable[str]) -> np.ndarray:
        """Flat uint64 words masked for a release among this site and `peers` (tag used once)."""
        words = flat_words(values)
        peer_set = frozenset(peers)
        if self.site in peer_set:
            raise ValueError(f"site {self.site!r} is listed among its own peers")
        unknown = sorted(peer_set - self._secrets.keys())
        if unknown:
            raise KeyVerificationError(
                f"site {self.site!r} has no verified exchange key for {unknown}: cannot mask"
            )
        participants = peer_set | {self.site}
        if len(participants) < self.min_survivors:
            raise RevealRefused(
                f"site {self.site!r} refuses a release among {len(participants)} site(s): "
                f"fewer than {self.min_survivors} would expose its value"
            )
        self.ledger.claim(tag)
        release = Release(self_seed(), participants)
        seeds = {peer: pairwise_seed(self._secrets[peer], tag) for peer in peer_set}
        masked = apply_masks(words, self.site, release.self_seed, seeds)
        self.releases[tag.encode()] = release
        return masked

    def _checked(
        self, tag: ReleaseTag, survivors: Iterable[str], dropped: Iterable[str]
    ) -> tuple[Release, frozenset[str], frozenset[str]]:
        """The release and the request's sets, if revealing for them could not expose anyone."""
        release = self.releases.get(tag.encode())
        if release is None:
            raise RevealRefused(f"site {self.site!r} masked nothing under tag {tag}")
        alive, gone = frozenset(survivors), frozenset(dropped)
        both = sorted(alive & gone)
        if both:
            raise RevealRefused(
                f"site {self.site!r} refuses: {both} listed as survivor and as dropped; "
                "a self seed and the pairwise seeds of one site together expose its value"
            )
        if self.site not in alive:
            raise RevealRefused(
                f"site {self.site!r} is not among the survivors it was sent: it reveals nothing"
            )
        if alive | gone != release.participants:
            raise RevealRefused(
                f"site {self.site!r} refuses: survivors {sorted(alive)} and dropped "
                f"{sorted(gone)} are not the release's sites {sorted(release.participants)}"
            )
        if len(alive) < self.min_survivors:
            raise RevealRefused(
                f"site {self.site!r} refuses: {len(alive)} survivor(s) is fewer than "
                f"{self.min_survivors}; their total would expose a site's value"
            )
        return release, alive, gone

    def sign_survivors(
        self, tag: ReleaseTag, survivors: Iterable[str], dropped: Iterable[str]
    ) -> bytes:
        """Sign the survivor set the aggregator announced; one set per release, ever."""
        release, alive, gone = self._checked(tag, survivors, dropped)
        digest = survivor_digest(tag, alive, gone)
        if release.signed_digest is not None and release.signed_digest != digest:
            raise SurvivorSetError(
                f"site {self.site!r} was already told a different survivor set for {tag}: "
                "it signs one set per release"
            )
        release.signed_digest = digest
        return sign_survivor_set(self._identity, digest)

    def reveal(
        self,
        tag: ReleaseTag,
        survivors: Iterable[str],
        dropped: Iterable[str],
        signatures: Mapping[str, bytes],
    ) -> Reveal:
        """b_i and the pairwise seeds with the dropped, once every survivor signed this set."""
        release, alive, gone = self._checked(tag, survivors, dropped)
        digest = survivor_digest(tag, alive, gone)
        if release.signed_digest is None:
            raise SurvivorSetError(
                f"site {self.site!r} has not signed a survivor set for {tag}: it reveals only "
                "a set it was told and signed"
            )
        if digest != release.signed_digest:
            raise SurvivorSetError(
                f"site {self.site!r} was told a different survivor set for {tag} than this "
                "request names: nothing revealed"
            )
        unsigned = [
            peer
            for peer in sorted(alive - {self.site})
            if peer not in signatures
            or not verify_survivor_signature(self._identities[peer], digest, signatures[peer])
        ]
        if unsigned:
            raise SurvivorSetError(
                f"site {self.site!r}: survivor(s) {unsigned} did not sign the survivor set it "
                "was told (sites were told different sets, or a signature is missing): "
                "nothing revealed"
            )
        if release.reveal is None:
            pairwise = {peer: pairwise_seed(self._secrets[peer], tag) for peer in sorted(gone)}
            release.reveal = Reveal(self.site, tag, release.self_seed, pairwise)
        return release.reveal
