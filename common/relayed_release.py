"""The release an MLP round's global weights were averaged from, relayed with that round.

Under secure aggregation with an averaging strategy, the aggregator sends every site the
previous round's release as it unmasked it: each survivor's masked words with its
signature, and the survivors' reveals. A site recomputes the total from them
(`secagg.verified_total`) and serves the round only if its weights are that total's
FedAvg mean. The values travel under `secagg.prior.*`, outside the quantity a site computes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from fedrad.common.messages import Request

PREFIX = "secagg.prior."
# The strategies whose global weights are FedAvg's weighted mean of the round's total
# (FedProx aggregates as FedAvg does): all a masked study runs, as the study file refuses
# the robust ones (median, trimmed mean, Krum), which need each site's weights
VERIFIED_STRATEGIES = ("fedavg", "fedprox")


@dataclass(frozen=True)
class RelayedRelease:
    """One unmasked release as the aggregator holds it, by site name."""

    tag: list  # the release's `secagg.tag` fields
    survivors: list[str]
    dropped: list[str]
    words: dict[str, np.ndarray]  # uint64 masked words
    signatures: dict[str, bytes]  # each survivor's signature on its words
    self_seeds: dict[str, bytes]
    pairwise: dict[str, dict[str, bytes]]  # survivor -> dropped peer -> seed

    def size_bytes(self) -> int:
        """The bytes this release adds to a request: words, signatures and seeds."""
        return sum(array.nbytes for array in as_arrays(self).values())


def as_arrays(release: RelayedRelease) -> dict[str, np.ndarray]:
    alive, gone = release.survivors, release.dropped
    return {
        PREFIX + "words": np.stack([release.words[s] for s in alive]).astype(np.uint64),
        PREFIX + "signatures": _rows([release.signatures[s] for s in alive], 64),
        PREFIX + "self-seeds": _rows([release.self_seeds[s] for s in alive], 32),
        PREFIX + "pairwise": np.stack(
            [_rows([release.pairwise[s][p] for p in gone], 32) for s in alive]
        ),
    }


def attach(request: Request, release: RelayedRelease) -> Request:
    """`request` carrying `release` for its site to verify."""
    values = {
        PREFIX + "tag": json.dumps(release.tag),
        PREFIX + "survivors": list(release.survivors),
        PREFIX + "dropped": list(release.dropped),
    }
    return replace(
        request,
        arrays={**request.arrays, **as_arrays(release)},
        values={**request.values, **values},
    )


def read(request: Request) -> RelayedRelease | None:
    """The release `request` carries, or None; a malformed one raises ValueError."""
    values, arrays = request.values, request.arrays
    if PREFIX + "tag" not in values:
        return None
    try:
        tag = list(json.loads(str(values[PREFIX + "tag"])))
        alive = [str(s) for s in values.get(PREFIX + "survivors", [])]
        gone = [str(s) for s in values.get(PREFIX + "dropped", [])]
        words = np.asarray(arrays[PREFIX + "words"])
        signatures = np.asarray(arrays[PREFIX + "signatures"], dtype=np.uint8)
        seeds = np.asarray(arrays[PREFIX + "self-seeds"], dtype=np.uint8)
        pairwise = np.asarray(arrays[PREFIX + "pairwise"], dtype=np.uint8)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"relayed release unreadable: {exc}") from None
    n = len(alive)
    if (
        words.dtype != np.uint64
        or words.ndim != 2
        or words.shape[0] != n
        or signatures.shape != (n, 64)
        or seeds.shape != (n, 32)
        or pairwise.shape != (n, len(gone), 32)
        or len(set(alive)) != n
    ):
        raise ValueError(
            f"relayed release of {n} survivor(s) has words {words.dtype} {words.shape}, "
            f"signatures {signatures.shape}, self seeds {seeds.shape}, pairwise {pairwise.shape}"
        )
    return RelayedRelease(
        tag,
        alive,
        gone,
        {s: words[i] for i, s in enumerate(alive)},
        {s: signatures[i].tobytes() for i, s in enumerate(alive)},
        {s: seeds[i].tobytes() for i, s in enumerate(alive)},
        {s: {p: pairwise[i, j].tobytes() for j, p in enumerate(gone)} for i, s in enumerate(alive)},
    )


def _rows(raw: list[bytes], width: int) -> np.ndarray:
    return np.frombuffer(b"".join(raw), dtype=np.uint8).reshape(len(raw), width).copy()
