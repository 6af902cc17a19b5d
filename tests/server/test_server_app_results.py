"""The deployed ServerApp hands its results over as one complete results.json, with the
report.html `fedrad simulate` writes beside it."""

from __future__ import annotations

import json

import pytest

from fedrad.server.app import _writer_to


def test_results_appear_whole_with_their_report_and_leave_no_partial_file(tmp_path):
    out = tmp_path / "results"
    _writer_to(out)({"status": "stopped", "reason": "too few sites"})
    assert json.loads((out / "results.json").read_text())["reason"] == "too few sites"
    assert "too few sites" in (out / "report.html").read_text()
    assert sorted(path.name for path in out.iterdir()) == [
        "plotly.min.js", "report.html", "results.json",
    ]  # fmt: skip


def test_results_are_kept_when_the_report_cannot_be_written(tmp_path, monkeypatch):
    def broken(results, path):
        raise OSError("disk full")

    monkeypatch.setattr("fedrad.server.report.html.write_report", broken)
    out = tmp_path / "results"
    with pytest.raises(OSError, match="disk full"):
        _writer_to(out)({"status": "stopped", "reason": "too few sites"})
    assert json.loads((out / "results.json").read_text())["status"] == "stopped"
