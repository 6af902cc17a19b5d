"""Write (or reuse) a synthetic cohort with a progress bar.

A cohort is deterministic for its parameters, so an existing one written with the
same parameters is reused: re-running a simulation recomputes nothing it has.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fedrad.simulations.synth.cohort import generate_cohort

MARKER = "cohort.json"


def write_cohort(
    out_dir: Path, sites: int, cases_per_site: int, seed: int, size: int, console: Console
) -> list[Path]:
    params = {"sites": sites, "cases_per_site": cases_per_site, "seed": seed, "size": size}
    marker = out_dir / MARKER
    manifests = [out_dir / f"site{i:02d}" / "manifest.csv" for i in range(1, sites + 1)]
    reusable = marker.exists() and json.loads(marker.read_text()) == params
    if reusable and all(path.exists() for path in manifests):
        console.print(f"synthetic cohort: reusing {out_dir}")
        return manifests
    columns = (
        TextColumn("synthetic cohort"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("cases", total=sites * cases_per_site)
        manifests = generate_cohort(
            out_dir, sites, cases_per_site, seed, size, on_case=lambda _: progress.advance(task)
        )
    marker.write_text(json.dumps(params))
    return manifests
