"""The aggregator's Flower ServerApp: runs the study and hands over its results.

A study that cannot run (too few sites, none passing a rule) hands over why, and how far
it got, instead of raising: the condition is one the protocol anticipates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedrad.common.config import StudyConfig
from fedrad.server.federation import GridTransport, StudyCannotRun
from fedrad.server.results import stopped_results
from fedrad.server.study import StudyProtocol

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
        try:
            results = protocol.run()
        except StudyCannotRun as stop:
            log(f"the study cannot run: {stop}")
            results = stopped_results(run_study, protocol.federation, str(stop))
        sink(results)

    return app


def _study_from(run_config: dict) -> StudyConfig:
    path = run_config.get("study-path")
    return StudyConfig.from_yaml(str(path)) if path else StudyConfig()


def _writer_to(out_dir: Path) -> ResultsSink:
    def write(results: dict) -> None:
        """results.json atomically (temp file + rename), so whoever watches for it never
        reads half of it, and published once report.html beside it (as `fedrad simulate`
        writes it) is there too, or failed."""
        from fedrad.server.report.html import write_report

        out_dir.mkdir(parents=True, exist_ok=True)
        partial = out_dir / "results.json.partial"
        partial.write_text(json.dumps(results, indent=2))
        try:
            write_report(results, out_dir / "report.html")
        finally:
            partial.replace(out_dir / "results.json")

    return write


app = make_server_app()
