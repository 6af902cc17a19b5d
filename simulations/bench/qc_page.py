"""Benchmark: qc.html's thumbnails for a synthetic cohort, serially and on the worker pool.

Writes `--cases` small synthetic cases, then times in this process, on the same files:
`fedrad site check`'s QC alone (the baseline the thumbnails add to, on all workers), the
thumbnails with one worker, and with `--workers` (the pool `site check` uses); then writes
qc.html from them. Prints seconds per 100 cases, the ratio, the page's size, and whether
both runs drew the same bytes. It asserts nothing about time: on a shared machine the
figures move with the load, which is printed beside them with the CPU seconds (the work
done, which the load does not change); `--repeats N` alternates the two
runs N times and the last line gives the median ratio.

    python -m fedrad.simulations.bench.qc_page --cases 100 --size 64 --workers 2
        [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fedrad.client.qc_page import write_html
from fedrad.client.qc_preview import preview_site
from fedrad.client.site_check import check_site
from fedrad.client.site_config import SiteConfig
from fedrad.common.config import ExtractionSettings, StudyConfig
from fedrad.simulations.synth.cohort import generate_cohort

SYNTHETIC_LABELS = {1: "enhancing", 2: "necrosis", 3: "oedema"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="volume edge in voxels (>= 40)")
    parser.add_argument("--sequences", nargs="+", default=["t1c", "flair"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, help="keep the cohort and qc.html here")
    args = parser.parse_args(argv)
    if args.out is not None:
        return _run(args, args.out)
    with tempfile.TemporaryDirectory(prefix="fedrad-bench-qc-") as tmp:
        _run(args, Path(tmp))


def _run(args: argparse.Namespace, root: Path) -> None:
    sequences = tuple(args.sequences)
    (manifest,) = generate_cohort(root / "cohort", 1, args.cases, 0, args.size, sequences)
    study = StudyConfig(extraction=ExtractionSettings(sequences=sequences))
    site = SiteConfig(name="synthetic", labels=SYNTHETIC_LABELS)
    print(
        f"cohort: {args.cases} synthetic cases x {len(sequences)} sequences "
        f"({', '.join(sequences)}), {args.size}^2 voxels in-plane; {os.cpu_count()} cores"
    )
    per_100 = 100 / args.cases
    start, cpu = time.perf_counter(), _cpu_seconds()
    report = check_site(manifest, study, site, args.workers, show_progress=False)
    _print_time(f"site check, QC only ({args.workers} workers)", start, cpu, args)
    ratios, identical = [], True
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), _cpu_seconds()
        serial = preview_site(report.plan, 1, show_progress=False)
        serial_seconds = _print_time("thumbnails serial (1 worker)", start, cpu, args)
        start, cpu = time.perf_counter(), _cpu_seconds()
        parallel = preview_site(report.plan, args.workers, show_progress=False)
        parallel_seconds = _print_time(
            f"thumbnails parallel ({args.workers} workers)", start, cpu, args
        )
        ratios.append(serial_seconds / parallel_seconds)
        identical &= serial == parallel
    page = root / "qc" / "qc.html"
    write_html(report.plan, report.statuses, page, "bench", parallel)
    shots = [view.thumbnail for preview in parallel.values() for view in preview.views]
    pngs = [len(shot.png) for shot in shots if shot is not None]
    print(
        f"qc.html: {page.stat().st_size / 1e6:.2f} MB, {page.stat().st_size * per_100 / 1e6:.2f} "
        f"MB/100 cases; {len(pngs)} images of {statistics.mean(pngs) / 1e3:.1f} kB "
        "(PNG before base64)"
    )
    if args.repeats > 1:
        print("serial/parallel per run: " + ", ".join(f"{ratio:.2f}x" for ratio in ratios))
    print(
        f"thumbnails speedup: {statistics.median(ratios):.2f}x identical: {str(identical).lower()}"
    )


def _print_time(what: str, start: float, cpu: float, args: argparse.Namespace) -> float:
    """Print wall and CPU time since (`start`, `cpu`) per 100 cases; return the wall time."""
    seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu
    print(
        f"{what}: {seconds * 100 / args.cases:.2f} s/100 cases "
        f"({cpu_seconds * 100 / args.cases:.2f} s CPU), {1000 * seconds / args.cases:.0f} "
        f"ms/case; load {os.getloadavg()[0]:.1f}"
    )
    return seconds


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


if __name__ == "__main__":
    main()
