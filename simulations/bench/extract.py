"""Benchmark: FedRad's site extraction against a plain sequential pyradiomics loop.

Both arms extract the same cohort (4 sequences x 3 regions, original + LoG + wavelet, every
feature class) with the same study settings, each in a fresh process. The cohort is
synthetic by default; `--real-mri DIR` takes the real 240 x 240 x 155 case of
../shared/data/real-mri instead, and `--site site.yaml` a site's own cases (cases that pass
`fedrad site check`: plain pyradiomics stops at the first bad file; the manifest needs the
columns t1c, flair, t2, t1; the label convention comes from the site config):

- plain: what a radiomics script does - one `RadiomicsFeatureExtractor`, and
  `execute(image_path, mask_path, label=...)` for every case x sequence x region, with
  pyradiomics' and the libraries' defaults for everything the study does not fix;
- fedrad: `extract_site` with its worker pool, on an empty cache.

It prints cases/minute, the ratio and peak memory, checks the values feature by feature,
and ends with `extract speedup: <ratio>x identical: <true|false>` (wall-clock ratio).
"identical" means every value is equal (==), except two documented cases
(docs/extraction.md): LoG features without resampling (the working-volume lever) need only
agree within 1e-9 relative, and GLCM MCC may differ in its last bits (within 1e-12),
because plain pyradiomics' eigenvalues round differently from run to run with
multithreaded BLAS. Each kind is counted and printed. CPU seconds are printed too: on a
machine shared with other jobs they show the work each arm did, which wall time hides, and
the machine's load average before, between and after the arms is printed with them.
On a shared machine one run's ratio moves with the load: `--repeats N` runs both arms N
times, alternating, and the last line gives the median ratio (identical only if every run
was).

    python -m fedrad.simulations.bench.extract --cases 8 --workers 2 [--repeats 3]
        [--size 192 | --real-mri ../shared/data/real-mri | --site site.yaml]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from fedrad.client.site_config import SiteConfig, site_layout
from fedrad.common.config import FEATURE_CLASSES, ExtractionSettings, StudyConfig
from fedrad.common.feature_table import feature_name, read_feature_table
from fedrad.common.radiomics.features import enabled_features, region_mask

SEQUENCES = ("t1c", "flair", "t2", "t1")
REAL_CASE = "TCGA-FG-6692"  # real-mri's case with all three tissues, BraTS-2020 labels
REAL_LABELS = {1: "necrosis", 2: "oedema", 4: "enhancing"}
LEVER_TOLERANCE = 1e-9
MCC_TOLERANCE = 1e-12


def bench_study(resample: bool) -> StudyConfig:
    extraction = ExtractionSettings(
        sequences=SEQUENCES,
        feature_classes=FEATURE_CLASSES,
        filters=("original", "log", "wavelet"),
        log_sigmas_mm=(1.0, 2.0, 3.0),
        resampled_spacing_mm=(2.0, 2.0, 2.0) if resample else None,
    )
    return StudyConfig(extraction=extraction)


def plain_extractor(settings: ExtractionSettings, diagnostics: bool = True):
    """The study's settings as a pyradiomics user would pass them: `additionalInfo` at its
    default (on) unless `diagnostics` is False; it adds diagnostics, never changes values."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    kwargs = {**settings.pyradiomics_settings(), "additionalInfo": diagnostics}
    extractor = RadiomicsFeatureExtractor(**kwargs)
    extractor.disableAllImageTypes()
    extractor.enableImageTypes(**settings.pyradiomics_image_types())
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**enabled_features(settings))
    return extractor


def plain_features(
    extractor,
    images: Mapping[str, str | sitk.Image],
    mask: str | sitk.Image,
    regions: Mapping[str, int | sitk.Image],
) -> dict[str, float]:
    """One case, plain pyradiomics, named like FedRad's feature table.

    `regions` maps a region to its label value in `mask`, or to its own binary mask (label
    1) for a region made of several labels. Shape comes from the first sequence's call.
    """
    features: dict[str, float] = {}
    for index, (sequence, image) in enumerate(images.items()):
        for region, label in regions.items():
            if isinstance(label, sitk.Image):
                result = extractor.execute(image, label, label=1)
            else:
                result = extractor.execute(image, mask, label=label)
            for key, value in result.items():
                if key.startswith("diagnostics_"):
                    continue
                image_type = key.split("_", 1)[0]
                is_shape = key.startswith("original_shape_")
                if is_shape and index > 0:
                    continue
                named = feature_name("mask" if is_shape else sequence, region, image_type, key)
                features[named] = float(np.real(value))
    return features


def differences(fedrad: dict[str, float], plain: dict[str, float], resampled: bool) -> dict:
    """Counts of equal, tolerated (lever, MCC) and differing values, and the worst of each."""
    counts = {"equal": 0, "within_lever": 0, "mcc_rounding": 0, "different": 0, "missing": 0}
    worst: dict[str, tuple[float, str]] = {}
    for name in sorted(set(fedrad) | set(plain)):
        if name not in fedrad or name not in plain:
            counts["missing"] += 1
            continue
        ours, theirs = fedrad[name], plain[name]
        if ours == theirs or (math.isnan(ours) and math.isnan(theirs)):
            counts["equal"] += 1
            continue
        relative = abs(ours - theirs) / max(abs(theirs), 1e-300)
        if not resampled and "_log-sigma-" in name and relative <= LEVER_TOLERANCE:
            kind = "within_lever"
        elif name.endswith("_glcm_MCC") and relative <= MCC_TOLERANCE:
            kind = "mcc_rounding"
        else:
            kind = "different"
        counts[kind] += 1
        worst[kind] = max(worst.get(kind, (0.0, "")), (relative, name))
    return {**counts, "worst": worst}


# -- the two arms, each run in its own process --------------------------------------------
def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def _cpu_seconds(*whos: int) -> float:
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime for who in whos)


def plain_loop(site_path: Path, study: StudyConfig, progress) -> dict[str, dict[str, float]]:
    """Every case of the site's manifest through plain pyradiomics: {case: {name: value}}."""
    site = SiteConfig.from_yaml(site_path)
    regions = site_layout(site, study.extraction).regions
    rows = list(csv.DictReader(site.manifest.open()))
    extractor = plain_extractor(study.extraction)
    folder = site.manifest.parent
    features = {}
    bar = progress.add_task("plain pyradiomics loop", total=len(rows))
    for row in rows:
        images = {sequence: str(folder / row[sequence]) for sequence in SEQUENCES}
        mask = str(folder / row["mask"])
        features[row["case_id"]] = plain_features(
            extractor, images, mask, plain_regions(mask, regions)
        )
        progress.advance(bar)
    return features


def plain_regions(mask: str, regions: Mapping[str, tuple[int, ...]]) -> dict[str, int | sitk.Image]:
    """What a script passes pyradiomics per region: its label value, or a binary mask for a
    region the site labels with several values."""
    if all(len(values) == 1 for values in regions.values()):
        return {region: values[0] for region, values in regions.items()}
    labels = sitk.ReadImage(mask)
    return {
        region: values[0] if len(values) == 1 else region_mask(labels, values)
        for region, values in regions.items()
    }


def run_plain(site_path: Path, study: StudyConfig, out: Path) -> None:
    """The plain loop; writes {seconds, peak_mb, features: {case: {name: value}}} to `out`."""
    import radiomics
    from rich.progress import Progress

    radiomics.setVerbosity(logging.ERROR)  # its INFO/WARNING lines would bury the figures
    start = time.perf_counter()
    with Progress() as progress:
        features = plain_loop(site_path, study, progress)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds(resource.RUSAGE_SELF),
        "peak_mb": _peak_mb(resource.RUSAGE_SELF),
        "features": features,
    }
    out.write_text(json.dumps(result))


def run_fedrad(site_path: Path, study: StudyConfig, out: Path, workers: int) -> None:
    from fedrad.client.extract import extract_site

    site = SiteConfig.from_yaml(site_path)
    table = out.with_suffix(".parquet")
    start = time.perf_counter()
    report = extract_site(site.manifest, table, study, workers=workers, site=site)
    seconds = time.perf_counter() - start
    frame = read_feature_table(table)[0].set_index("case_id").drop(columns="label")
    result = {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN),
        "peak_mb": _peak_mb(resource.RUSAGE_SELF),
        "peak_worker_mb": _peak_mb(resource.RUSAGE_CHILDREN),
        "failed": report.failed,
        "features": {case: row.to_dict() for case, row in frame.iterrows()},
    }
    out.write_text(json.dumps(result))


def _arm(kind: str, site_path: Path, resample: bool, out: Path, workers: int) -> dict:
    command = [sys.executable, "-m", "fedrad.simulations.bench.extract", "--arm", kind]
    command += ["--site", str(site_path), "--result", str(out), "--workers", str(workers)]
    command += [] if resample else ["--no-resample"]
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def cohort_arguments(parser: argparse.ArgumentParser, cases: int) -> None:
    """The options that choose the benchmark's cohort and study (shared with profile_extract)."""
    parser.add_argument("--cases", type=int, default=cases)
    parser.add_argument("--size", type=int, default=96, help="volume edge in voxels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-resample", dest="resample", action="store_false")
    cohort = parser.add_mutually_exclusive_group()
    cohort.add_argument(
        "--real-mri",
        type=Path,
        metavar="DIR",
        help=f"the real case {REAL_CASE} of DIR (../shared/data/real-mri), --cases times",
    )
    cohort.add_argument(
        "--site",
        type=Path,
        metavar="YAML",
        help="a site's own cases that pass `fedrad site check`: its site config, naming a "
        "manifest with columns " + ", ".join(SEQUENCES),
    )


def write_cohort(root: Path, args: argparse.Namespace) -> tuple[Path, str]:
    """The benchmark's cohort under `root`: (its site config, a description)."""
    if args.site is not None:
        site = SiteConfig.from_yaml(args.site)
        if site.manifest is None:
            raise SystemExit(f"{args.site}: the site config names no manifest")
        return args.site, f"the cases of {site.manifest}"
    if args.real_mri is not None:
        return _real_site(root, args.real_mri, args.cases), (
            f"the real case {REAL_CASE} (240 x 240 x 155, 1 mm) under "
            f"{args.cases} case id{'s' if args.cases != 1 else ''}"
        )
    from fedrad.simulations.synth.cohort import generate_cohort

    (manifest,) = generate_cohort(
        root / "cohort", 1, args.cases, args.seed, args.size, sequences=SEQUENCES
    )
    site = _write_site(root / "site.yaml", {"name": "synthetic", "manifest": str(manifest)})
    return site, f"{args.cases} synthetic cases, {args.size}^2 voxels in-plane"


def _real_site(root: Path, data: Path, cases: int) -> Path:
    """A site config and manifest listing the real case `cases` times (every copy is
    extracted from scratch: FedRad's cache is per case id)."""
    folder = data / REAL_CASE
    if not (folder / "seg.nii.gz").is_file():
        raise SystemExit(f"{folder}: no seg.nii.gz (expected ../shared/data/real-mri)")
    paths = [str(folder.resolve() / f"{name}.nii.gz") for name in (*SEQUENCES, "seg")]
    manifest = root / "real-mri.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")  # quotes a path with a comma
        writer.writerow(["case_id", "label", *SEQUENCES, "mask"])
        writer.writerows([f"{REAL_CASE}-{copy:02d}", "HGG", *paths] for copy in range(1, cases + 1))
    site = {"name": "real-mri", "manifest": str(manifest), "labels": REAL_LABELS}
    return _write_site(root / "real-mri.yaml", site)


def _write_site(path: Path, site: dict) -> Path:
    """A site config file; YAML written by the YAML library, whatever the paths hold."""
    path.write_text(yaml.safe_dump(site))
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cohort_arguments(parser, cases=8)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run both arms this many times, alternating; the last line gives the median ratio",
    )
    parser.add_argument("--arm", choices=["plain", "fedrad"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    study = bench_study(args.resample)
    if args.arm == "plain":
        return run_plain(args.site, study, args.result)
    if args.arm == "fedrad":
        return run_fedrad(args.site, study, args.result, args.workers)
    _compare(args, study)


def _compare(args: argparse.Namespace, study: StudyConfig) -> None:
    with tempfile.TemporaryDirectory(prefix="fedrad-bench-") as tmp:
        root = Path(tmp)
        site, cohort = write_cohort(root, args)
        settings = study.extraction
        regions = site_layout(SiteConfig.from_yaml(site), settings).regions
        print(
            f"cohort: {cohort}; "
            f"{len(SEQUENCES)} sequences x {len(regions)} regions, filters "
            f"{'+'.join(settings.filters)} (LoG sigmas {list(settings.log_sigmas_mm)} mm), "
            f"{len(settings.feature_classes)} feature classes, resampling "
            f"{settings.resampled_spacing_mm or 'off'}; {os.cpu_count()} cores"
        )
        runs = []
        for run in range(1, args.repeats + 1):
            if args.repeats > 1:
                print(f"-- run {run} of {args.repeats}")
            runs.append(_run_arms(args, site, root / f"run{run}"))
    ratios = [ratio for ratio, _ in runs]
    identical = all(same for _, same in runs)
    if args.repeats > 1:
        listed = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        print(f"wall-clock ratio per run: {listed}; median {statistics.median(ratios):.2f}x")
    print(f"extract speedup: {statistics.median(ratios):.2f}x identical: {str(identical).lower()}")


def _run_arms(args: argparse.Namespace, site: Path, root: Path) -> tuple[float, bool]:
    """Both arms once, writing under `root` (FedRad's cache starts empty every run), their
    figures printed; (wall-clock ratio, values identical)."""
    root.mkdir()
    load = [os.getloadavg()[0]]
    plain = _arm("plain", site, args.resample, root / "plain.json", args.workers)
    load.append(os.getloadavg()[0])
    fedrad = _arm("fedrad", site, args.resample, root / "fedrad.json", args.workers)
    load.append(os.getloadavg()[0])
    # other jobs on the machine slow each arm differently: the wall-clock ratio moves with them
    print(
        "machine load (1-minute average) before / between / after the arms: "
        + " / ".join(f"{value:.1f}" for value in load)
    )
    cases = len(plain["features"])
    for name, arm, memory in [
        ("plain pyradiomics", plain, f"{plain['peak_mb']:.0f} MB"),
        (
            f"fedrad ({args.workers} workers)",
            fedrad,
            f"{fedrad['peak_mb']:.0f} MB main + {fedrad['peak_worker_mb']:.0f} MB largest worker",
        ),
    ]:
        rate = 60 * cases / arm["seconds"]
        print(
            f"{name}: {arm['seconds']:.1f} s wall ({arm['cpu_seconds']:.1f} s CPU), "
            f"{rate:.2f} cases/minute, peak RSS {memory}"
        )
    counts = {"equal": 0, "within_lever": 0, "mcc_rounding": 0, "different": 0, "missing": 0}
    worst: dict = {}
    for case, values in plain["features"].items():
        found = differences(fedrad["features"].get(case, {}), values, args.resample)
        for key in counts:
            counts[key] += found[key]
        for kind, pair in found["worst"].items():
            worst[kind] = max(worst.get(kind, (0.0, "")), tuple(pair))
    per_case = len(next(iter(plain["features"].values())))
    print(
        f"values: {per_case} features/case; {counts['equal']} equal (==), "
        f"{counts['within_lever']} within {LEVER_TOLERANCE:g} (LoG working-volume lever), "
        f"{counts['mcc_rounding']} GLCM MCC within {MCC_TOLERANCE:g} (BLAS rounding), "
        f"{counts['different']} different, {counts['missing']} missing; "
        f"failed cases: {sorted(fedrad['failed']) or 'none'}"
    )
    for kind, (relative, name) in worst.items():
        print(f"largest relative difference ({kind}): {relative:.3g} at {name}")
    identical = counts["different"] == counts["missing"] == 0 and not fedrad["failed"]
    ratio = plain["seconds"] / fedrad["seconds"]
    cpu_ratio = plain["cpu_seconds"] / fedrad["cpu_seconds"]
    print(f"CPU-time ratio (work per case, independent of cores): {cpu_ratio:.2f}x")
    print(f"wall-clock ratio: {ratio:.2f}x")
    return ratio, identical


if __name__ == "__main__":
    main()
