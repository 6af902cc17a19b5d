"""The one `fedrad` command.

Exit status (DESIGN.md): 0 success, 1 the job ran but some cases or sites failed
(named in the output), 2 bad configuration or usage. Heavy imports live inside the
commands so `fedrad --help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedrad.client.cli import site_app
from fedrad.common.config import ConfigError, StudyConfig

app = typer.Typer(
    name="fedrad",
    help="Federated multi-center radiomics: HGG vs brain metastasis without moving images.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(site_app, name="site", help="Site operator commands: check and extract.")
console = Console()

StudyOption = Annotated[
    Path | None, typer.Option("--study", help="Study config YAML (default: embedded defaults).")
]


def load_study(path: Path | None) -> StudyConfig:
    """The study config, or exit 2 with the offending key named."""
    if path is None:
        return StudyConfig()
    try:
        return StudyConfig.from_yaml(path)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder for the cohort (one subfolder per site).")],
    sites: Annotated[int, typer.Option(min=1, help="Number of sites.")] = 3,
    cases_per_site: Annotated[int, typer.Option(min=2, help="Cases per site.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Volume edge in voxels.")] = 96,
) -> None:
    """Write a synthetic multi-center brain-MRI cohort (NIfTI + manifests)."""
    from fedrad.simulations.cohort import write_cohort

    manifests = write_cohort(out, sites, cases_per_site, seed, size, console)
    for manifest in manifests:
        console.print(f"  {manifest}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("fedrad-demo"),
    sites: Annotated[int, typer.Option(min=1, help="Number of simulated sites.")] = 3,
    cases_per_site: Annotated[int, typer.Option(min=4, help="Cases per site.")] = 40,
    seed: Annotated[int, typer.Option(help="Cohort seed.")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Volume edge in voxels.")] = 96,
    study: StudyOption = None,
    workers: Annotated[
        int | None, typer.Option(help="Extraction processes (default: all cores).")
    ] = None,
) -> None:
    """Whole study on one machine: synthetic cohort, site extraction, Flower simulation."""
    from fedrad.simulations.cohort import write_cohort
    from fedrad.simulations.report import print_results
    from fedrad.simulations.simulate import (
        SimulationPaths,
        attach_pooled_reference,
        run_federation,
        write_results,
    )

    config = load_study(study)
    paths = SimulationPaths(out)
    manifests = write_cohort(paths.cohort, sites, cases_per_site, seed, size, console)
    tables, failed_cases = _extract_sites(manifests, paths, config, workers)
    console.rule("federation (Flower simulation engine)")
    results = run_federation(tables, config, log=lambda line: console.print(f"  {line}"))
    results = attach_pooled_reference(results, tables, config)
    results["extraction_failures"] = failed_cases
    write_results(results, paths.results)
    print_results(results, console)
    console.print(f"results: {paths.results}")
    dropped = [s for s in results["sites"] if s["status"] != "included"]
    if dropped or any(failed_cases.values()):
        raise typer.Exit(1)


def _extract_sites(manifests, paths, config: StudyConfig, workers: int | None):
    from fedrad.client.extract import extract_site

    tables, failed = {}, {}
    for manifest in manifests:
        site = manifest.parent.name
        console.rule(f"extraction at {site}")
        report = extract_site(manifest, paths.features(site), config, workers=workers)
        console.print(
            f"  {len(report.ok)} cases extracted ({report.from_cache} from cache), "
            f"{len(report.failed)} failed"
        )
        for case_id, reason in report.failed.items():
            console.print(f"  [yellow]{case_id}[/yellow]: {reason}")
        tables[site] = report.table_path
        failed[site] = report.failed
    return tables, failed


@app.command()
def show(results: Annotated[Path, typer.Argument(help="A results.json file.")]) -> None:
    """Print a results.json as tables."""
    from fedrad.simulations.report import print_results

    print_results(json.loads(results.read_text()), console)


def main() -> None:
    app()
