"""`fedrad site ...`: the site operator's commands.

Exit status (DESIGN.md): 0 every case passed, 1 the job ran but some cases failed (named
in the output), 2 bad configuration or usage (the message names the file or key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fedrad.client.extract import ExtractionReport, extract_site
from fedrad.client.identity import IDENTITY_FILE, load_or_create_identity, public_hex
from fedrad.client.join_cli import join
from fedrad.client.label_conventions import PRESET_NAMES, require_convention
from fedrad.client.qc_page import write_html
from fedrad.client.qc_preview import preview_site
from fedrad.client.qc_report import print_report, status_frame
from fedrad.client.readiness_report import STYLES, readiness_lines
from fedrad.client.site_check import check_site
from fedrad.client.site_config import SiteConfig
from fedrad.client.site_plan import manifest_path
from fedrad.common.cli_errors import ReportsUserErrors, fail
from fedrad.common.cli_support import ParamsOption, study_with_params
from fedrad.common.text_files import path_problem

site_app = typer.Typer(no_args_is_help=True, cls=ReportsUserErrors)

StudyOption = Annotated[
    Path | None, typer.Option(help="Study config YAML; default: the built-in study.")
]
SiteOption = Annotated[
    Path | None,
    typer.Option(help="Site config YAML (label values, manifest)."),
]
LabelsOption = Annotated[
    str | None,
    typer.Option(
        help=f"The masks' label convention: {', '.join(PRESET_NAMES)} (docs/extraction.md 2); "
        "or state it under `labels` in the site config.",
    ),
]
ManifestOption = Annotated[
    Path | None, typer.Option(help="Site manifest CSV; default: the site config's manifest.")
]
WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="Parallel processes; default: all cores.")
]


@site_app.callback()
def site() -> None:
    """Site operator commands."""


def _configs(
    study: Path | None,
    params: Path | None,
    site: Path | None,
    manifest: Path | None,
    labels: str | None,
):
    """(study, site config, manifest path); ConfigError / ManifestError name what is wrong,
    including a real cohort whose label convention is not stated."""
    study_config = study_with_params(study, params)
    site_config = SiteConfig.from_yaml(site) if site else SiteConfig()
    if labels is not None:
        site_config = site_config.with_labels(labels)
    manifest_file = manifest_path(manifest, site_config)
    require_convention(site_config.labels is not None, manifest_file)
    return study_config, site_config, manifest_file


@site_app.command()
def check(
    site: SiteOption = None,
    manifest: ManifestOption = None,
    study: StudyOption = None,
    params: ParamsOption = None,
    out: Annotated[Path, typer.Option(help="Folder for qc.csv and qc.html.")] = Path("qc"),
    workers: WorkersOption = None,
    labels: LabelsOption = None,
    thumbnails: Annotated[
        bool, typer.Option(help="Show each case's slices and mask outlines in qc.html.")
    ] = True,
) -> None:
    """QC report of every case, and whether this site can take part in the study.

    Names by case id every unreadable, missing or inconsistent file, and every image given
    under two case ids; then puts the usable cases to the study's folds and minimum cell
    size k, and its regions and sequences to the site config, before anything is sent.
    Writes OUT/qc.csv and OUT/qc.html. Exit status: 0 the site is ready, 1 some case is
    unusable or the site cannot take part as it is (each reason in a sentence), 2 bad
    config or usage.
    """
    study_config, site_config, manifest_file = _configs(study, params, site, manifest, labels)
    report = check_site(manifest_file, study_config, site_config, workers)
    console = Console()
    print_report(report.plan, report.statuses, console)
    out.mkdir(parents=True, exist_ok=True)
    status_frame(report.statuses).to_csv(out / "qc.csv", index=False)
    previews = preview_site(report.plan, workers) if thumbnails else None
    readiness = readiness_lines(report)
    write_html(
        report.plan,
        report.statuses,
        out / "qc.html",
        study_config.extraction_hash,
        previews,
        readiness,
    )
    console.print(f"QC report -> {escape(str(out / 'qc.csv'))}, {escape(str(out / 'qc.html'))}")
    for kind, sentence in readiness:
        console.print(Text(sentence, style=STYLES[kind]))
    raise typer.Exit(0 if report.ready else 1)


def _print_summary(report: ExtractionReport, console: Console) -> None:
    cached = f" ({report.from_cache} from cache)" if report.from_cache else ""
    console.print(f"Extracted {len(report.ok)} case(s){cached} -> {escape(str(report.table_path))}")
    for title, cases in [("failed", report.failed), ("extracted with QC flags", report.flagged)]:
        if cases:
            table = Table("case id", "reason", title=f"{len(cases)} case(s) {title}")
            for case_id, reason in cases.items():
                table.add_row(Text(case_id), Text(reason))
            console.print(table)
    console.print(f"QC report -> {escape(str(report.qc_path))}")


@site_app.command()
def extract(
    out: Annotated[Path, typer.Option(help="Feature table to write (parquet).")],
    site: SiteOption = None,
    manifest: ManifestOption = None,
    study: StudyOption = None,
    params: ParamsOption = None,
    workers: WorkersOption = None,
    labels: LabelsOption = None,
) -> None:
    """QC every case and extract its radiomic features, cached per case.

    An interrupted run keeps every finished case; run the same command again to resume.
    Exit status: 0 all cases extracted, 1 some cases failed (listed), 2 bad config or usage.
    """
    try:
        study_config, site_config, manifest_file = _configs(study, params, site, manifest, labels)
        report = extract_site(manifest_file, out, study_config, workers, site=site_config)
    except KeyboardInterrupt as exc:
        cache = out.with_name(out.name + ".cache")
        Console(stderr=True).print(
            f"interrupted: finished cases are cached in {escape(str(cache))}; "
            "run the same command again to resume"
        )
        raise typer.Exit(1) from exc
    _print_summary(report, Console())
    raise typer.Exit(1 if report.failed else 0)


@site_app.command()
def keygen(
    site_dir: Annotated[
        Path,
        typer.Option(help="The site's folder, beside its features.parquet; default: here."),
    ] = Path("."),
    site_name: Annotated[
        str | None,
        typer.Option(help="The site's name in the study; default: the folder's name."),
    ] = None,
) -> None:
    """Make (or read) this site's identity key and print its public key for the study.

    The private key stays in SITE_DIR/identity.key (mode 0600), where the ClientApp reads it.
    Send the printed line to the coordinator, who adds it under `federation: site_keys:`.
    A second run prints the same key. See docs/privacy.md.

    Exit status: 0 key printed, 2 the folder or key file cannot be read or written.
    """
    path = site_dir / IDENTITY_FILE
    existed = path.exists()
    try:
        site_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot make the site folder {site_dir}: {path_problem(exc)}.") from exc
    try:
        key = load_or_create_identity(site_dir)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise fail(f"cannot read or write the identity key {path}: {reason}.") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise fail(
            f"cannot read the identity key {path}, which is not an unencrypted Ed25519 "
            "private key in PEM (move it aside and run `fedrad site keygen` again for a new one)."
        ) from exc
    name = site_name or site_dir.resolve().name
    public = public_hex(key)
    line = yaml.safe_dump({name: public}, allow_unicode=True, width=1000).strip()
    console = Console(highlight=False, soft_wrap=True)
    made = "read" if existed else "made (mode 0600: keep it here, never send it)"
    console.print(f"identity key {made}: {escape(str(path))}")
    if path.stat().st_mode & 0o077:
        console.print(
            f"[yellow]warning:[/yellow] others may read it (mode {path.stat().st_mode & 0o777:o}); "
            f"run chmod 600 {escape(str(path))}"
        )
    console.print(f"public identity key of [bold]{escape(name)}[/bold]: {public}")
    console.print(
        "Send the coordinator this line for the study YAML, under `federation: site_keys:` "
        "(every site and the aggregator then run that study):"
    )
    console.print(f"    {escape(line)}")


@site_app.command("predict")
def predict_command(
    bundle: Annotated[Path, typer.Option(help="The model bundle (model.fedrad) to apply.")],
    out: Annotated[Path, typer.Option(help="Predictions CSV to write.")],
    manifest: ManifestOption = None,
    trust: Annotated[
        str | None,
        typer.Option(
            help="The aggregator's model-signing.pub (or its 64 hex digits): the bundle must "
            "be signed by it. Without it only the key inside the bundle is checked."
        ),
    ] = None,
    site: SiteOption = None,
    site_dir: Annotated[
        Path | None,
        typer.Option(
            help="Your folder in the study that made the bundle (its combat_estimates.npz): "
            "a training site harmonizes with its own estimates from it."
        ),
    ] = None,
    labels: LabelsOption = None,
    workers: WorkersOption = None,
) -> None:
    """Apply a released model to new cases: QC, extraction with the bundle's settings,
    ComBat, then per case the probability, class, threshold and the features that drove it.

    A case with a missing sequence or an empty region is named with its reason in the CSV
    and here; the others are predicted. Labels in the manifest are not read (blank or no
    label column is fine). Exit status: 0 every case predicted, 1 some not (listed),
    2 bad bundle, config or usage.
    """
    from fedrad.client.predict import predict_site
    from fedrad.client.predict_report import print_predictions
    from fedrad.common.model_bundle import load_bundle
    from fedrad.common.model_signing import trusted_key

    console = Console(highlight=False, soft_wrap=True)
    loaded = load_bundle(bundle, trusted_key(trust) if trust else None)
    if not loaded.trusted:
        console.print(
            "[bold yellow]warning:[/bold yellow] no --trust key: the bundle was checked only "
            f"against the key it carries ({loaded.signer[:16]}...), which proves it unaltered "
            "since signing but not who signed it. Pass the aggregator's model-signing.pub."
        )
    site_config = SiteConfig.from_yaml(site) if site else SiteConfig()
    if labels is not None:
        site_config = site_config.with_labels(labels)
    manifest_file = manifest_path(manifest, site_config)
    require_convention(site_config.labels is not None, manifest_file)
    name = site_config.name or (site_dir.resolve().name if site_dir else "new-site")
    predictions = predict_site(loaded, manifest_file, out, site_config, name, site_dir, workers)
    print_predictions(predictions, loaded, console)
    failed = (predictions.table["status"] != "predicted").any()
    raise typer.Exit(1 if failed else 0)


site_app.command()(join)
