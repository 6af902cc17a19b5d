"""Scale benchmark: the study protocol over 3, 10, 30 and 50 simulated sites on this machine.

For each size it runs the federation in Flower's simulation engine, with secure aggregation
off and on over the same site tables, and prints wall time, peak memory of this process and
its children (Ray workers included), the bytes sent each way per site and message kind
(requests to the site beside its replies; the secure-aggregation rounds are kinds of their
own), the rounds per kind, the secure/plain wall-time ratio, and each run's agreement with
the pooled reference.

    python -m fedrad.simulations.bench.scale [--sites 3 10 30 50] [--cases 40] [--features 60]
        [--secure {on,off,both}] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import Kind
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.simulate import run_federation
from fedrad.simulations.synth.features import write_site_feature_tables

MODES = {"off": (False,), "on": (True,), "both": (False, True)}
TARGET_RATIO = 2.0  # secure/plain wall time we aim to stay under at 50 sites on 2 cores


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


# -- measuring ------------------------------------------------------------------------------------
def bench_study(cases: int) -> StudyConfig:
    """The study of every run, its model capped so that plain runs too: in the clear each
    site must carry the model's parameters on its own training cases alone
    (federation.max_parameter_ratio), in its smallest fit (an inner fold's, where the ridge
    penalty is tuned), and one cap keeps both modes' models the same."""
    study = StudyConfig(federation=FederationSettings(min_cell_size=3))
    training = _fewest_training(cases, study.validation.folds)
    if study.tunes_penalty:
        training = _fewest_training(training, study.validation.inner_folds)
    most = math.floor(study.federation.max_parameter_ratio * training) - 1  # 1: the intercept
    return study.updated(
        selection={"max_features": max(1, min(most, study.selection.max_features))}
    )


def _fewest_training(cases: int, folds: int) -> int:
    """The fewest training cases a fit on `folds` folds of `cases` has: a fold may hold one
    more than its share (strata are dealt separately)."""
    return cases - math.ceil(cases / folds) - 1


def bench_size(
    n_sites: int, cases: int, features: int, root: Path, modes: tuple[bool, ...]
) -> list[dict]:
    """One row per secure-aggregation mode, all on the same tables and one pooled reference,
    so that the secure/plain ratio measures the protocol and not the data."""
    # every site bounds the coefficients it answers at by the study's size (privacy.md 3)
    study = bench_study(cases).updated(federation={"max_cases": n_sites * cases})
    tables = write_site_feature_tables(
        root / f"{n_sites}-sites",
        study,
        sizes=(cases,) * n_sites,
        n_features=features,
        seed=n_sites,
        signal_strength=0.3,  # AUC ~0.85, not 1: the AUC agreement must be earned
    )
    reference = pooled_reference(tables, study)
    return [
        bench(tables, study.updated(federation={"secure_aggregation": secure}), reference)
        for secure in modes
    ]


def bench(tables: dict[str, Path], study: StudyConfig, reference: dict) -> dict:
    """Run the federation once and measure it against the pooled reference."""
    start = time.perf_counter()
    with PeakMemory() as memory:
        results = run_federation(tables, study, log=lambda _: None)
    run = {
        "sites": len(tables),
        "secure": study.federation.secure_aggregation,
        "wall_s": time.perf_counter() - start,
        "peak_rss_mib": memory.peak / 2**20,
    }
    if "model" not in results:  # stopped: keep why, and let the other runs go on
        return run | {"stopped": results.get("reason", "no model"), "events": results["events"]}
    federated, pooled = results["model"]["coefficients"], reference["model"]["coefficients"]
    auc, pooled_auc = (r["metrics"]["federated"]["auc"] for r in (results, reference))
    return run | {
        "bytes_per_site": _per_site(results["traffic_bytes_from_sites"]),
        "request_bytes_per_site": _per_site(results["traffic_bytes_to_sites"]),
        "rounds": results["round_counts"],
        "max_coefficient_difference": max(abs(federated[k] - pooled[k]) for k in federated),
        "auc": auc,
        "auc_difference": abs(auc - pooled_auc),
    }


def _per_site(traffic: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean bytes per site, per message kind."""
    return {kind: float(np.mean(list(sizes.values()))) for kind, sizes in traffic.items()}


def completed(rows: list[dict]) -> list[dict]:
    """The runs that ended with a model: the only ones whose figures compare."""
    return [row for row in rows if "stopped" not in row]


def ratios(rows: list[dict]) -> dict[int, float]:
    """Secure/plain wall time per size where both runs completed."""
    walls = {(row["sites"], row["secure"]): row["wall_s"] for row in completed(rows)}
    return {
        n: walls[n, True] / walls[n, False] for n, secure in walls if secure and (n, False) in walls
    }


# -- printing -------------------------------------------------------------------------------------
def _mode(row: dict) -> str:
    return "secure" if row["secure"] else "plain"


def _kib(size: float) -> str:
    return f"{size / 1024:.1f}"


def _kinds_in_protocol_order(rows: list[dict]) -> list[str]:
    """Every kind any run used, in the order the protocol declares them (unknown ones last)."""
    order = [str(kind) for kind in Kind]
    used = {kind for row in rows for part in ("bytes_per_site", "rounds") for kind in row[part]}
    return sorted(used, key=lambda kind: (order.index(kind) if kind in order else len(order), kind))


def run_line(row: dict) -> str:
    """One run in a line: the figures a reader compares first, or why it stopped."""
    if "stopped" in row:
        return (
            f"{row['sites']:>3} sites {_mode(row):>6}: STOPPED after {row['wall_s']:.1f} s: "
            f"{_shortened(row['stopped'])}"
        )
    to_sites, from_sites = row["request_bytes_per_site"], row["bytes_per_site"]
    return (
        f"{row['sites']:>3} sites {_mode(row):>6}: wall {row['wall_s']:6.1f} s, "
        f"peak RSS {row['peak_rss_mib']:6.0f} MiB, rounds {sum(row['rounds'].values()):4d}, "
        f"KiB per site to/from {_kib(sum(to_sites.values()))}/{_kib(sum(from_sites.values()))}, "
        f"max|dbeta| vs pooled {row['max_coefficient_difference']:.1e}, "
        f"AUC {row['auc']:.3f}, |dAUC| {row['auc_difference']:.1e}"
    )


def _shortened(text: str, most: int = 240) -> str:
    """A stop reason names every site left out: its start says why (the JSON keeps it all)."""
    return text if len(text) <= most else text[: most - 3] + "..."


def kind_table(rows: list[dict]) -> str:
    """Per kind, KiB per site to/from and rounds, one column group per run of one size."""
    header = f"      {'kind':<22}" + "".join(
        f" | {_mode(row) + ' KiB to/from':>22} {'rounds':>6}" for row in rows
    )
    lines = [header]
    for kind in _kinds_in_protocol_order(rows):
        cells = "".join(f" | {_kind_cell(row, kind)}" for row in rows)
        lines.append(f"      {kind:<22}{cells}")
    return "\n".join(lines)


def _kind_cell(row: dict, kind: str) -> str:
    """A run's KiB to/from and rounds for one kind; a dash where the run never sent it."""
    if kind not in row["rounds"]:
        return f"{'-':>22} {'-':>6}"
    traffic = (
        f"{_kib(row['request_bytes_per_site'].get(kind, 0))}/"
        f"{_kib(row['bytes_per_site'].get(kind, 0))}"
    )
    return f"{traffic:>22} {row['rounds'][kind]:>6}"


def summary_table(rows: list[dict]) -> str:
    """Every size in one table: wall, memory, rounds and agreement, plain beside secure."""
    by_size: dict[int, dict[str, dict]] = {}
    for row in completed(rows):
        by_size.setdefault(row["sites"], {})[_mode(row)] = row
    ratio = ratios(rows)
    lines = [
        f"{'sites':>5} {'mode':>6} {'wall s':>7} {'x plain':>7} {'peak MiB':>8} {'rounds':>6} "
        f"{'KiB to/from per site':>21} {'max|dbeta|':>10} {'|dAUC|':>8}"
    ]
    for n, runs in sorted(by_size.items()):
        for mode, row in sorted(runs.items()):
            to_sites, from_sites = row["request_bytes_per_site"], row["bytes_per_site"]
            traffic = f"{_kib(sum(to_sites.values()))}/{_kib(sum(from_sites.values()))}"
            times = f"{ratio[n]:.2f}" if row["secure"] and n in ratio else ""
            lines.append(
                f"{n:>5} {mode:>6} {row['wall_s']:>7.1f} {times:>7} {row['peak_rss_mib']:>8.0f} "
                f"{sum(row['rounds'].values()):>6} {traffic:>21} "
                f"{row['max_coefficient_difference']:>10.1e} {row['auc_difference']:>8.1e}"
            )
    return "\n".join(lines)


def scaling_lines(rows: list[dict]) -> list[str]:
    """Wall time and memory of each size against the smallest, per mode."""
    lines = []
    for secure in (False, True):
        runs = [row for row in completed(rows) if row["secure"] is secure]
        for row in runs[1:]:
            base = runs[0]
            lines.append(
                f"{_mode(row)} {row['sites']} vs {base['sites']} sites: "
                f"wall x{row['wall_s'] / base['wall_s']:.2f}, "
                f"memory x{row['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
            )
    return lines


def report(rows: list[dict]) -> str:
    """The closing summary: the table, the ratio against its target, scaling, stopped runs."""
    lines = ["", summary_table(rows)]
    if ratio_by_size := ratios(rows):
        largest = max(ratio_by_size)
        ratio = ratio_by_size[largest]
        verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
        lines.append(
            f"secure/plain wall at {largest} sites: x{ratio:.2f}, {verdict} the "
            f"x{TARGET_RATIO:g} target (set for 50 sites on 2 cores; this machine has "
            f"{os.cpu_count()})"
        )
    stopped = [run_line(row) for row in rows if "stopped" in row]
    return "\n".join([*lines, *scaling_lines(rows), *stopped])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[3, 10, 30, 50])
    parser.add_argument("--cases", type=int, default=40, help="cases per site")
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument(
        "--secure", choices=sorted(MODES), default="both", help="secure aggregation"
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    rows = []
    study = bench_study(args.cases)
    print(
        f"{args.cases} cases and {args.features} features per site, {study.model.kind}, "
        f"{study.validation.folds}-fold, at most {study.selection.max_features} model features "
        "(each site's own training cases carry them in the clear)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sites:
            runs = bench_size(n, args.cases, args.features, Path(tmp), MODES[args.secure])
            rows += runs
            tables = [kind_table(completed(runs))] if completed(runs) else []
            print("\n".join([*map(run_line, runs), *tables]), flush=True)
    print(report(rows), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"runs": rows, "secure_over_plain": ratios(rows)}, indent=2)
        )


if __name__ == "__main__":
    main()
