"""A federation of SiteMaskers with pinned identities, and an honest release through it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedrad.common.secagg import (
    FixedPoint,
    ReleaseTag,
    SignedKey,
    SiteMasker,
    StudyKeyPair,
    Unmasker,
)

STUDY_HASH = hashlib.sha256(b"study: HGG vs brain metastasis, v1").digest()


@dataclass
class Federation:
    names: list[str]
    sites: dict[str, SiteMasker]
    identities: dict[str, Ed25519PrivateKey]
    keys: dict[str, StudyKeyPair]
    signed: list[SignedKey]

    def pinned(self) -> dict[str, bytes]:
        """The identity keys as a study config pins them: 32 raw bytes per site."""
        return {n: k.public_key().public_bytes_raw() for n, k in self.identities.items()}


def federation(n_sites: int, **masker_options) -> Federation:
    names = [f"site-{i:02d}" for i in range(n_sites)]
    identities = {n: Ed25519PrivateKey.generate() for n in names}
    keys = {n: StudyKeyPair.generate() for n in names}
    signed = [keys[n].sign(n, STUDY_HASH, identities[n]) for n in names]
    pinned = {n: identities[n].public_key() for n in names}
    sites = {
        n: SiteMasker(n, identities[n], keys[n], STUDY_HASH, pinned, signed, **masker_options)
        for n in names
    }
    return Federation(names, sites, identities, keys, signed)


def tag(quantity: str = "hessian", iteration: int = 0, **fields) -> ReleaseTag:
    base = dict(study=STUDY_HASH.hex(), fit=0, phase="model", iteration=iteration)
    base.update(fields)
    return ReleaseTag(quantity=quantity, **base)


def mask_all(
    fed: Federation, values: dict[str, np.ndarray], fp: FixedPoint, release: ReleaseTag
) -> dict[str, np.ndarray]:
    """Every site's masked words for one release among all of `values`' sites."""
    sites = sorted(values)
    return {
        s: fed.sites[s].mask(fp.encode(values[s]), release, [p for p in sites if p != s])
        for s in sites
    }


def unmask(
    fed: Federation, masked: dict[str, np.ndarray], participants: list[str], release: ReleaseTag
) -> Unmasker:
    """The aggregator's honest side: sum what arrived, announce, collect signatures, apply."""
    length = next(iter(masked.values())).size
    unmasker = Unmasker(release, participants, length)
    for site, words in masked.items():
        unmasker.add(site, words)
    survivors, dropped = unmasker.close()
    signatures = {s: fed.sites[s].sign_survivors(release, survivors, dropped) for s in survivors}
    for s in sorted(survivors):
        unmasker.apply(fed.sites[s].reveal(release, survivors, dropped, signatures))
    return unmasker


def secure_sum(
    fed: Federation,
    values: dict[str, np.ndarray],
    fp: FixedPoint,
    release: ReleaseTag,
    dropped: tuple[str, ...] = (),
) -> np.ndarray:
    """The decoded total of the sites that did not drop, through masks and reveals."""
    masked = mask_all(fed, values, fp, release)
    arrived = {s: w for s, w in masked.items() if s not in dropped}
    return unmask(fed, arrived, sorted(values), release).decode(fp)
