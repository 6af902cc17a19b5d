"""The deployed ServerApp hands its results over as one complete results.json."""

from __future__ import annotations

import json

from fedrad.server.app import _writer_to


def test_results_appear_whole_and_leave_no_partial_file(tmp_path):
    out = tmp_path / "results"
    _writer_to(out)({"status": "stopped", "reason": "too few sites"})
    assert json.loads((out / "results.json").read_text())["reason"] == "too few sites"
    assert [path.name for path in out.iterdir()] == ["results.json"]
