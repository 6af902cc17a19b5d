"""The aggregator's Flower ServerApp: runs the study protocol and hands over its results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedrad.common.config import StudyConfig
from fedrad.server.federation import GridTransport
from fedrad.server.protocol import StudyProtocol

ResultsSink = Callable[[dict], None]


def make_server_app(
    study: StudyConfig | None = None,
    on_results: ResultsSink | None = None,
    expected_sites: int | None = None,
    log: Callable[[str], None] = print,
) -> ServerApp:
    """Build the ServerApp; by default it reads `study-path` and `out-dir` from run_config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_config = context.run_config
        run_study = study or _study_from(run_config)
        sink = on_results or _writer_to(Path(str(run_config.get("out-dir", "."))).resolve())
        transport = GridTransport(grid, run_study.federation.round_timeout_s)
        protocol = StudyProtocol(transport, run_study, expected_sites, log=log)
        sink(protocol.run())

    return app


def _study_from(run_config: dict) -> StudyConfig:
    path = run_config.get("study-path")
    return StudyConfig.from_yaml(str(path)) if path else StudyConfig()


def _writer_to(out_dir: Path) -> ResultsSink:
    def write(results: dict) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))

    return write


app = make_server_app()
