"""Release tags: the name of one masked quantity, and the ledger that never reuses one.

Every seed is derived from a tag. Masking two values under one tag reuses their masks;
once a release is unmasked (self-seed and a dropped peer's pairwise seeds revealed),
a second value under the same masks would be exposed. Hence one tag, one use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedrad.common.secagg.errors import TagReuseError

_DOMAIN = b"fedrad/secagg/release-tag/v1"


@dataclass(frozen=True)
class ReleaseTag:
    """Study, fit, phase, iteration and quantity of one release; `attempt` renames a rerun."""

    study: str
    fit: int
    phase: str
    iteration: int
    quantity: str
    attempt: int = 0

    def __post_init__(self) -> None:
        for name in ("study", "phase", "quantity"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"release tag {name} must be a non-empty string, got {value!r}")
        for name in ("fit", "iteration", "attempt"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise ValueError(f"release tag {name} must be an int in [0, 2^63), got {value!r}")

    def encode(self) -> bytes:
        """Canonical bytes: fixed field order, strings length-prefixed, ints 8 bytes."""
        out = [_DOMAIN]
        for text in (self.study, self.phase, self.quantity):
            raw = text.encode()
            out.append(len(raw).to_bytes(4, "big") + raw)
        out += [n.to_bytes(8, "big") for n in (self.fit, self.iteration, self.attempt)]
        return b"".join(out)

    def __str__(self) -> str:
        return (
            f"{self.study}/fit {self.fit}/{self.phase}/iteration {self.iteration}/"
            f"{self.quantity}/attempt {self.attempt}"
        )


class TagLedger:
    """The tags a site has masked under; a second claim of any of them is refused."""

    def __init__(self, used: Iterable[bytes] = ()) -> None:
        self._used: set[bytes] = set(used)

    @property
    def used(self) -> frozenset[bytes]:
        """The encodings of every tag claimed, to carry the ledger between messages."""
        return frozenset(self._used)

    def claim(self, tag: ReleaseTag) -> None:
        key = tag.encode()
        if key in self._used:
            raise TagReuseError(
                f"release tag {tag} was already used by this site: masks are never reused "
                "(rerun with a new attempt number)"
            )
        self._used.add(key)

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, ReleaseTag) and tag.encode() in self._used

    def __len__(self) -> int:
        return len(self._used)
