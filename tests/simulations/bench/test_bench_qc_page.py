"""The qc.html benchmark prints its figures serial beside parallel, and both runs draw
the same thumbnails (no assertion on time: the machine is shared)."""

from __future__ import annotations

from fedrad.simulations.bench.qc_page import main


def test_benchmark_prints_both_runs_per_100_cases_the_page_size_and_that_they_agree(
    tmp_path, capsys
):
    main(["--cases", "3", "--size", "40", "--workers", "2", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cohort: 3 synthetic cases x 2 sequences (t1c, flair)")
    assert any(line.startswith("thumbnails serial (1 worker): ") for line in lines)
    assert any(line.startswith("thumbnails parallel (2 workers): ") for line in lines)
    assert any(line.startswith("qc.html: ") and "; 6 images of " in line for line in lines)
    assert lines[-1].startswith("thumbnails speedup: ") and lines[-1].endswith("identical: true")
    assert (tmp_path / "qc" / "qc.html").stat().st_size > 6 * 1000
