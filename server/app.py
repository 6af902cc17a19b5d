"""The aggregator's Flower ServerApp: runs the study and hands over its results.

A study that cannot run (too few sites, none passing a rule) hands over why, and how far
it got, instead of raising: the condition is one the protocol anticipates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedrad.common.config import StudyConfig
from fedrad.server.federation import GridTransport, StudyCannotRun
from fedrad.server.results import stopped_results, write_results
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
        """report.html (as `fedrad simulate` writes it), then results.json, atomically:
        whoever watches for results.json finds the report there too (or its failure
        logged) and never reads half a file; the results are written whatever happens."""
        from fedrad.server.report.html import write_report

        try:
            write_report(results, out_dir / "report.html")
        finally:
            write_results(results, out_dir / "results.json")

    return write


app = make_server_app()
