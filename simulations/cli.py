"""`fedrad synth` and `fedrad simulate`: a whole federation on one machine.

Heavy imports live inside the commands so `fedrad --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fedrad.common.cli_support import ParamsOption, StudyOption, console, load_study
from fedrad.common.config import StudyConfig
from fedrad.common.option_conflicts import refuse_pairs, refuse_without


def synth(
    out: Annotated[Path, typer.Option(help="Folder for the cohort (one subfolder per site).")],
    sites: Annotated[int, typer.Option(min=1, help="Number of sites.")] = 3,
    cases_per_site: Annotated[int, typer.Option(min=2, help="Cases per site.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Volume edge in voxels.")] = 96,
) -> None:
    """Write a synthetic multi-center brain-MRI cohort (NIfTI + manifests)."""
    from fedrad.simulations.synth.write import write_cohort

    manifests = write_cohort(out, sites, cases_per_site, seed, size, console)
    for manifest in manifests:
        console.print(f"  {manifest}")


def simulate(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("fedrad-demo"),
    sites: Annotated[int, typer.Option(min=1, help="Number of simulated sites.")] = 3,
    cases_per_site: Annotated[int, typer.Option(min=4, help="Cases per site.")] = 40,
    seed: Annotated[int, typer.Option(help="Cohort / split seed.")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Volume edge in voxels.")] = 96,
    study: StudyOption = None,
    params: ParamsOption = None,
    workers: Annotated[
        int | None, typer.Option(help="Extraction processes (default: all cores).")
    ] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Also compare with pooled, site-alone, unharmonized.")
    ] = False,
    features_table: Annotated[
        Path | None,
        typer.Option(help="Use an existing radiomics table (CSV) instead of synthetic MRI."),
    ] = None,
    label_column: Annotated[str, typer.Option(help="Label column of --features-table.")] = "label",
    site_column: Annotated[
        str | None, typer.Option(help="Site column of --features-table.")
    ] = None,
    split_sites: Annotated[
        int | None, typer.Option(help="Split --features-table into N stratified sites.")
    ] = None,
    site_effects: Annotated[
        float, typer.Option(help="Add synthetic site effects of this strength to --features-table.")
    ] = 0.0,
    store: Annotated[
        str | None,
        typer.Option(help="Run store URL (default: runs.db in --out; 'none' for no store)."),
    ] = None,
) -> None:
    """Whole study on one machine: synthetic MRI (or a feature table), sites, Flower simulation."""
    from fedrad.server.report.html import write_report
    from fedrad.server.report.text import print_comparison, print_results
    from fedrad.server.results import write_results
    from fedrad.simulations.simulate import (
        SimulationPaths,
        attach_pooled_reference,
        run_federation,
    )

    _refuse_conflicts(ctx)
    config = load_study(study, params)
    paths = SimulationPaths(out)
    if features_table is not None:
        tables, failed_cases = _split_table(
            features_table,
            label_column,
            paths,
            config,
            site_column,
            split_sites,
            site_effects,
            seed,
        )
    else:
        from fedrad.simulations.synth.write import write_cohort

        manifests = write_cohort(paths.cohort, sites, cases_per_site, seed, size, console)
        tables, failed_cases = _extract_sites(manifests, paths, config, workers)
    console.rule("federation (Flower simulation engine)")
    writer = _run_store(store, out)
    models: list[dict] = []
    results = run_federation(
        tables,
        config,
        log=lambda line: console.print(f"  {line}"),
        store=writer,
        on_model=models.append,
    )
    results["extraction_failures"] = failed_cases
    if results.get("status") == "stopped":
        write_results(results, paths.results)
        if writer is not None:
            writer.published(results, {"results": paths.results})
        console.print(f"[red]The study cannot run: {escape(results['reason'])}[/red]")
        console.print(f"what it got to: {paths.results}")
        raise typer.Exit(1)
    results = attach_pooled_reference(results, tables, config)
    if compare:
        from fedrad.simulations.compare import compare as run_comparison

        console.rule("comparison")
        results["comparison"] = run_comparison(results, tables, config)
    write_results(results, paths.results)
    print_results(results, console)
    if compare:
        print_comparison(results["comparison"], console)
    console.print(f"results: {paths.results}")
    report = write_report(results, paths.results.with_name("report.html"))
    console.print(f"figures: {report}")
    files = {"results": paths.results, "report": report}
    if models:
        files["model"] = _release_model(models[0], out)
    if writer is not None:
        writer.published(results, files)
        console.print(f"run store: {escape(str(writer.engine.url))}, run {writer.run_id}")
    dropped = [s for s in results["sites"] if s["status"] != "included"]
    if dropped or any(failed_cases.values()):
        raise typer.Exit(1)


def _release_model(payload: dict, out: Path) -> Path:
    """model.fedrad signed with a key this simulation makes in OUT (a deployed aggregator
    signs with the key `fedrad keys init` made), said loudly: trust it only for a demo."""
    from fedrad.common.model_signing import SIGNING_PUBLIC_KEY
    from fedrad.server.model_release import release_bundle, signing_key_in

    key = signing_key_in(out, lambda line: console.print(f"  {escape(line)}"))
    path = release_bundle(payload, key, out)
    console.print(
        f"model: {escape(str(path))} [yellow]signed with this simulation's own key[/yellow] "
        f"{escape(str(key))}; apply it with `fedrad site predict --bundle {escape(str(path))} "
        f"--trust {escape(str(out / SIGNING_PUBLIC_KEY))}`"
    )
    return path


def _run_store(url: str | None, out: Path):
    """The writer the simulated ServerApp records its run with: to `url`, by default runs.db
    in the output folder; None for 'none'."""
    import getpass

    from fedrad.server.store.engine import open_store, store_url
    from fedrad.server.store.writer import RunWriter

    if url == "none":
        return None
    engine = open_store(url or store_url(out))
    return RunWriter(engine, "simulation", started_by=getpass.getuser())


def _refuse_conflicts(ctx: typer.Context) -> None:
    """A table's options without a table, or two ways of making its sites, are refused."""
    table_options = ["label_column", "site_column", "split_sites", "site_effects"]
    refuse_without(ctx, "features_table", table_options)
    refuse_pairs(
        ctx,
        {
            ("site_column", "split_sites"): "the table's sites come from its site column or "
            "from splitting it into N sites; give one",
            ("features_table", "sites"): "the sites come from the table; use --split-sites N",
            ("features_table", "cases_per_site"): "the cases come from the table",
            ("features_table", "size"): "--size shapes synthetic MRI, which a table replaces",
            ("features_table", "workers"): "a table needs no extraction",
        },
    )


def _split_table(csv, label_column, paths, config, site_column, split_sites, site_effects, seed):
    """Site tables from the CSV, after telling the user what was used and left out; rows
    excluded for a missing value are this run's failed cases (exit status 1). A table that
    cannot be used raises ConfigError, which `fedrad` reports in a sentence (exit 2)."""
    from fedrad.simulations.feature_tables import read_table, write_site_tables
    from fedrad.simulations.table_report import print_table_report, write_column_report

    imported = read_table(csv, label_column, config, site_column)
    columns_csv = write_column_report(imported, paths.out_dir / "table_columns.csv")
    print_table_report(imported, csv, columns_csv, console)
    tables = write_site_tables(
        imported,
        csv,
        paths.out_dir / "sites",
        config,
        site_column,
        split_sites,
        site_effects,
        seed,
    )
    console.print(f"feature table {escape(str(csv))}: {len(tables)} sites")
    return tables, ({"feature table": imported.excluded} if imported.excluded else {})


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
