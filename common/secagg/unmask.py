"""The aggregator side of a masked release: sum, strip the revealed masks, decode.

The sum of the survivors' masked words still holds their self masks and their pairwise
masks with the dropped (whose partners never sent theirs). Each survivor's Reveal
removes exactly those; a missing or extra seed is refused rather than decoded to noise.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fedrad.common.secagg.errors import UnmaskError
from fedrad.common.secagg.fixedpoint import FixedPoint
from fedrad.common.secagg.masks import signed_pairwise_mask
from fedrad.common.secagg.prg import expand
from fedrad.common.secagg.site import Reveal
from fedrad.common.secagg.survivors import survivor_digest
from fedrad.common.secagg.tags import ReleaseTag


class Unmasker:
    """Unmasks one release among `participants`, each sending `length` masked words."""

    def __init__(self, tag: ReleaseTag, participants: Iterable[str], length: int) -> None:
        self.tag = tag
        self.participants = frozenset(participants)
        self.length = length
        self._sum = np.zeros(length, dtype=np.uint64)
        self._received: set[str] = set()
        self._closed = False
        self._applied: set[str] = set()

    def add(self, site: str, masked: np.ndarray) -> None:
        """Add one site's masked words to the running sum (before the survivor set is closed)."""
        if self._closed:
            raise UnmaskError(f"masked value of site {site!r} came after the survivor set closed")
        if site not in self.participants:
            raise UnmaskError(f"site {site!r} is not a participant of release {self.tag}")
        if site in self._received:
            raise UnmaskError(f"site {site!r} sent two masked values for release {self.tag}")
        words = np.asarray(masked)
        if words.dtype != np.uint64 or words.shape != (self.length,):
            raise UnmaskError(
                f"masked value of site {site!r} is {words.dtype} of shape {words.shape}, "
                f"not uint64 of shape ({self.length},)"
            )
        self._sum += words
        self._received.add(site)

    def close(self) -> tuple[frozenset[str], frozenset[str]]:
        """Freeze and return (survivors, dropped): the set to announce to every survivor."""
        if not self._received:
            raise UnmaskError(f"no site sent a masked value for release {self.tag}")
        self._closed = True
        return self.survivors, self.dropped

    @property
    def survivors(self) -> frozenset[str]:
        return frozenset(self._received)

    @property
    def dropped(self) -> frozenset[str]:
        return self.participants - self._received

    def digest(self) -> bytes:
        """The digest of the announced survivor set (closes it), as survivors will sign it."""
        survivors, dropped = self.close()
        return survivor_digest(self.tag, survivors, dropped)

    def apply(self, reveal: Reveal) -> None:
        """Strip one survivor's self mask and its pairwise masks with the dropped."""
        survivors, dropped = self.close()
        if reveal.tag != self.tag:
            raise UnmaskError(f"reveal of site {reveal.site!r} is for {reveal.tag}, not {self.tag}")
        if reveal.site not in survivors:
            raise UnmaskError(f"site {reveal.site!r} is not a survivor of release {self.tag}")
        if reveal.site in self._applied:
            raise UnmaskError(f"reveal of site {reveal.site!r} was already applied")
        if set(reveal.pairwise) != dropped:
            raise UnmaskError(
                f"reveal of site {reveal.site!r} has pairwise seeds for {sorted(reveal.pairwise)}, "
                f"not for the dropped {sorted(dropped)}"
            )
        self._sum -= expand(reveal.self_seed, self.length)
        for peer, seed in reveal.pairwise.items():
            self._sum -= signed_pairwise_mask(reveal.site, peer, seed, self.length)
        self._applied.add(reveal.site)

    def total(self) -> np.ndarray:
        """The survivors' total as uint64 words, once every survivor's reveal is applied."""
        if not self._closed:
            raise UnmaskError(f"the survivor set of release {self.tag} is not closed")
        missing = sorted(self.survivors - self._applied)
        if missing:
            raise UnmaskError(f"release {self.tag} still lacks the reveals of {missing}")
        return self._sum.copy()

    def decode(self, fixed_point: FixedPoint) -> np.ndarray:
        """The survivors' total as floats (refused if a limb sum shows it still masked)."""
        return fixed_point.decode(self.total())
