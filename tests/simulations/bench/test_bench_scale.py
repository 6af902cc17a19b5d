"""The scale benchmark's report: secure beside plain per size, the ratio only where both ran."""

from __future__ import annotations

import numpy as np
import pytest

from fedrad.client.data import SiteData
from fedrad.common.pipeline import Partition
from fedrad.simulations.bench.scale import bench_study, kind_table, ratios, report


def run(sites: int, secure: bool, wall_s: float) -> dict:
    rounds = {"newton": 4} | ({"secagg-sign": 4, "secagg-reveal": 4} if secure else {})
    return {
        "sites": sites,
        "secure": secure,
        "wall_s": wall_s,
        "peak_rss_mib": 1000.0,
        "bytes_per_site": {kind: 2048.0 for kind in rounds},
        "request_bytes_per_site": {kind: 1024.0 for kind in rounds},
        "rounds": rounds,
        "max_coefficient_difference": 1e-14,
        "auc": 0.8,
        "auc_difference": 1e-4,
    }


def test_ratio_is_secure_over_plain_and_only_for_sizes_with_both_runs():
    rows = [run(3, False, 10.0), run(3, True, 15.0), run(10, True, 30.0)]
    assert ratios(rows) == {3: 1.5}


def test_kind_table_dashes_the_kinds_a_run_never_sent():
    table = kind_table([run(3, False, 10.0), run(3, True, 15.0)]).splitlines()
    sign = next(line for line in table if "secagg-sign" in line)
    plain, secure = sign.split("|")[1:]
    assert plain.split() == ["-", "-"] and secure.split() == ["1.0/2.0", "4"]


def test_report_judges_the_largest_size_against_the_target():
    rows = [run(3, False, 10.0), run(3, True, 15.0), run(50, False, 10.0), run(50, True, 25.0)]
    assert "at 50 sites: x2.50, ABOVE the x2 target" in report(rows)
    assert "within" in report(rows[:2])


def test_a_stopped_run_is_named_and_left_out_of_the_comparison():
    stopped = {"sites": 50, "secure": False, "wall_s": 9.0, "peak_rss_mib": 1.0, "stopped": "why"}
    rows = [run(3, False, 10.0), run(3, True, 15.0), stopped, run(50, True, 25.0)]
    assert ratios(rows) == {3: 1.5}
    assert "50 sites  plain: STOPPED after 9.0 s: why" in report(rows)


def _site(cases: int, positives: int) -> SiteData:
    labels = ["HGG"] * positives + ["BM"] * (cases - positives)
    return SiteData(
        name="site01",
        extraction_hash="x",
        features=["f"],
        case_ids=[f"case{i:03d}" for i in range(cases)],
        labels=labels,
        x=np.zeros((cases, 1)),
        y=np.array([label == "HGG" for label in labels], dtype=float),
        batch=np.array(["site01"] * cases),
        origin=np.array(["site01"] * cases),
    )


@pytest.mark.parametrize("cases", [40, 60])
@pytest.mark.parametrize("share", [0.3, 0.5])
def test_every_fit_of_the_bench_study_carries_its_parameters_in_the_clear(cases, share):
    """The plain run must not stop at max_parameter_ratio: the capped model fits in every
    site's smallest training part, an inner fold's where the ridge penalty is tuned."""
    study = bench_study(cases)
    site = _site(cases, round(share * cases))
    inner = range(study.validation.inner_folds) if study.tunes_penalty else [None]
    fewest = min(
        site.rows(Partition("kfold", fold, inner=i), "train", study).sum()
        for fold in range(study.validation.folds)
        for i in inner
    )
    parameters = study.selection.max_features + 1
    assert parameters <= study.federation.max_parameter_ratio * fewest
