"""Scale benchmark: the study protocol over 3, 10, 30 and 50 simulated sites on this machine.

For each size it runs the federation in Flower's simulation engine and prints wall
time, peak memory of this process and its children (Ray workers included), the bytes
sent each way per site and message kind (requests to the site beside its replies), the
rounds per kind, and the agreement with the pooled reference.

    python -m fedrad.simulations.bench.scale [--sites 3 10 30 50] [--cases 40] [--features 60]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.simulate import run_federation
from fedrad.simulations.synth.features import write_site_feature_tables


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                rss = next((line for line in status if line.startswith("VmRSS:")), "VmRSS: 0 kB")
            total += int(rss.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


class PeakMemory:
    """Samples the process tree's RSS in a background thread while the block runs."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval_s)


def bench(n_sites: int, cases: int, features: int, root: Path) -> dict:
    study = StudyConfig(federation=FederationSettings(min_cell_size=3))
    tables = write_site_feature_tables(
        root / f"{n_sites}-sites",
        study,
        sizes=(cases,) * n_sites,
        n_features=features,
        seed=n_sites,
        signal_strength=0.3,  # AUC ~0.85, not 1: the AUC agreement must be earned
    )
    start = time.perf_counter()
    with PeakMemory() as memory:
        results = run_federation(tables, study, log=lambda _: None)
    wall = time.perf_counter() - start
    reference = pooled_reference(tables, study)
    federated, pooled = results["model"]["coefficients"], reference["model"]["coefficients"]
    return {
        "sites": n_sites,
        "wall_s": wall,
        "peak_rss_mib": memory.peak / 2**20,
        "bytes_per_site": _per_site(results["traffic_bytes_from_sites"]),
        "request_bytes_per_site": _per_site(results["traffic_bytes_to_sites"]),
        "rounds": results["round_counts"],
        "max_coefficient_difference": max(abs(federated[k] - pooled[k]) for k in federated),
        "auc": results["metrics"]["federated"]["auc"],
        "auc_difference": abs(
            results["metrics"]["federated"]["auc"] - reference["metrics"]["federated"]["auc"]
        ),
    }


def _per_site(traffic: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean bytes per site, per message kind."""
    return {kind: float(np.mean(list(sizes.values()))) for kind, sizes in traffic.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[3, 10, 30, 50])
    parser.add_argument("--cases", type=int, default=40, help="cases per site")
    parser.add_argument("--features", type=int, default=60)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sites:
            row = bench(n, args.cases, args.features, Path(tmp))
            rows.append(row)
            sent, received = row["bytes_per_site"], row["request_bytes_per_site"]
            kinds = ", ".join(
                f"{k} {received.get(k, 0) / 1024:.1f}/{v / 1024:.1f}" for k, v in sent.items()
            )
            print(
                f"{n:>3} sites: wall {row['wall_s']:6.1f} s, "
                f"peak RSS {row['peak_rss_mib']:7.0f} MiB, "
                f"max|dbeta| vs pooled {row['max_coefficient_difference']:.1e}, "
                f"AUC {row['auc']:.3f}, |dAUC| {row['auc_difference']:.1e}\n"
                f"      KiB per site, to/from: {kinds}\n"
                f"      total KiB per site: to {sum(received.values()) / 1024:.1f}, "
                f"from {sum(sent.values()) / 1024:.1f}; "
                f"rounds {sum(row['rounds'].values())} ({row['rounds']})",
                flush=True,
            )
    base = rows[0]
    for row in rows[1:]:
        print(
            f"{row['sites']} vs {base['sites']} sites: wall x{row['wall_s'] / base['wall_s']:.2f}, "
            f"memory x{row['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
        )


if __name__ == "__main__":
    main()
