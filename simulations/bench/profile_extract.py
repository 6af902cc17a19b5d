"""Where each arm of `bench_extract` spends its time, stage by stage, per case.

Both arms run one after the other in this process, each with one ITK and one BLAS thread
(as FedRad's workers), under cProfile, on the benchmark's cohort and settings. For every
stage it prints seconds per case in each arm, then the ceiling the feature classes put on
the speedup: pyradiomics' feature code runs on the same arrays in both arms (values must
be identical), so even with every other FedRad stage at zero, `workers` processes cannot
beat `workers x plain / feature classes`.

    python -m fedrad.simulations.bench.profile_extract --cases 2 [--no-resample]
        [--size 192 | --real-mri ../shared/data/real-mri | --site site.yaml]

cProfile adds a little to every Python call, so pure-Python stages read somewhat high;
compare the arms with each other, not with `bench_extract`'s wall times.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fedrad.client.extract import extract_site
from fedrad.client.parallel import single_thread
from fedrad.client.site_config import SiteConfig
from fedrad.simulations.bench.extract import (
    bench_study,
    cohort_arguments,
    plain_loop,
    write_cohort,
)

Stage = list[tuple[str, str]]  # (end of the source file's path, function name)

_IMAGEOPERATIONS = "radiomics/imageoperations.py"
_FILTERS = [(_IMAGEOPERATIONS, "getLoGImage"), (_IMAGEOPERATIONS, "getWaveletImage")]
_MATRICES = [
    (f"radiomics/{name}.py", "_calculateMatrix")
    for name in ("glcm", "glrlm", "glszm", "gldm", "ngtdm")
]
_SHARED = {
    "reading files": [("SimpleITK/extra.py", "ReadImage")],
    "filters (LoG, wavelet)": _FILTERS,
    "shape": [("radiomics/featureextractor.py", "computeShape")],
}
PLAIN_STAGES: dict[str, Stage] = {
    **_SHARED,
    "resampling": [(_IMAGEOPERATIONS, "resampleImage")],
    "feature classes": [("radiomics/featureextractor.py", "computeFeatures")],
    "  GLCM MCC": [("radiomics/glcm.py", "getMCCFeatureValue")],
    "  texture matrices": _MATRICES,
}
FEDRAD_STAGES: dict[str, Stage] = {
    **_SHARED,
    "resampling": [
        ("common/radiomics/resampling.py", "resample"),
        ("common/radiomics/resampling.py", "onto"),
    ],
    "feature classes": [("common/radiomics/feature_classes.py", "compute_features")],
    "  GLCM MCC": [("common/radiomics/glcm.py", "getMCCFeatureValue")],
    "  texture matrices": _MATRICES,
}
TOP_LEVEL = ("reading files", "resampling", "filters (LoG, wavelet)", "shape", "feature classes")


def stage_seconds(profile: cProfile.Profile, stages: dict[str, Stage]) -> dict[str, float]:
    """Cumulative seconds of each stage's functions, and the profile's total as `total`."""
    stats = pstats.Stats(profile)
    seconds = {"total": stats.total_tt}
    for name, functions in stages.items():
        seconds[name] = sum(
            cumulative
            for (path, _, function), (_, _, _, cumulative, _) in stats.stats.items()
            if any(path.endswith(end) and function == wanted for end, wanted in functions)
        )
    return seconds


def profile_arms(
    site_path: Path, resample: bool, out: Path
) -> tuple[dict[str, float], dict[str, float], int]:
    """(plain, fedrad) stage seconds for every case of the site, single-threaded, and the
    number of cases."""
    single_thread()
    study = bench_study(resample)
    plain = cProfile.Profile()
    with Progress(transient=True) as progress:
        cases = len(plain.runcall(plain_loop, site_path, study, progress))
    site = SiteConfig.from_yaml(site_path)
    fedrad = cProfile.Profile()
    fedrad.runcall(
        extract_site, site.manifest, out, study, workers=1, show_progress=False, site=site
    )
    return stage_seconds(plain, PLAIN_STAGES), stage_seconds(fedrad, FEDRAD_STAGES), cases


def report(plain: dict[str, float], fedrad: dict[str, float], cases: int, workers: int) -> None:
    table = Table(title=f"seconds per case, one thread, {cases} cases")
    for column in ("stage", "plain", "fedrad", "plain / fedrad"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    rows = [(name, plain[name], fedrad[name]) for name in PLAIN_STAGES]
    rows.append(("everything else", *(_rest(arm) for arm in (plain, fedrad))))
    rows.append(("total", plain["total"], fedrad["total"]))
    for name, ours, theirs in rows:
        ratio = f"{ours / theirs:.2f}x" if theirs > 0 else "-"
        table.add_row(name, f"{ours / cases:.2f}", f"{theirs / cases:.2f}", ratio)
    Console().print(table)
    features = fedrad["feature classes"]
    print(
        f"feature classes: {features / fedrad['total']:.0%} of FedRad's time; "
        f"{workers} workers, every other stage at zero: "
        f"ceiling {workers * plain['total'] / features:.2f}x"
    )


def _rest(seconds: dict[str, float]) -> float:
    return seconds["total"] - sum(seconds[name] for name in TOP_LEVEL)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cohort_arguments(parser, cases=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fedrad-profile-") as tmp:
        root = Path(tmp)
        site, cohort = write_cohort(root, args)
        print(f"cohort: {cohort}")
        plain, fedrad, cases = profile_arms(site, args.resample, root / "features.parquet")
    report(plain, fedrad, cases, args.workers)


if __name__ == "__main__":
    main()
