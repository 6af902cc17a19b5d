"""The aggregator's Flower ServerApp: runs the study and hands over its results.

A study that cannot run (too few sites, none passing a rule) hands over why, and how far
it got, instead of raising: the condition is one the protocol anticipates. A deployed
study (an `out-dir` in its run config) keeps a checkpoint of its finished phases there,
and with `resume = true` continues from it (docs/protocol.md 8)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedrad.common.config import StudyConfig
from fedrad.server.checkpoint import Checkpoint, CheckpointUnusable
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
        out_dir = Path(str(run_config.get("out-dir", "."))).resolve()
        sink = on_results or _writer_to(out_dir)
        try:
            checkpoint = _checkpoint(run_config, run_study, context.run_id, out_dir)
        except CheckpointUnusable as unusable:  # the checkpoint stays as it is, for a look
            log(f"the study cannot resume: {unusable}")
            return
        transport = GridTransport(grid, run_study.federation.round_timeout_s)
        protocol = StudyProtocol(
            transport, run_study, expected_sites, log=log, checkpoint=checkpoint
        )
        try:
            results = protocol.run()
        except StudyCannotRun as stop:  # may be resumed, e.g. once enough sites are back
            log(f"the study cannot run: {stop}")
            sink(stopped_results(run_study, protocol.federation, str(stop)))
            return
        sink(results)
        if checkpoint is not None:
            checkpoint.finish()

    return app


def _study_from(run_config: dict) -> StudyConfig:
    path = run_config.get("study-path")
    return StudyConfig.from_yaml(str(path)) if path else StudyConfig()


def _checkpoint(run_config, study: StudyConfig, run_id: int, out_dir: Path) -> Checkpoint | None:
    """The deployed study's checkpoint (out-dir/checkpoint): continued with `resume`, else
    begun anew. None in a simulation (no out-dir): nothing there outlives the run."""
    if "out-dir" not in run_config:
        return None
    if run_config.get("resume"):
        return Checkpoint.resume(out_dir / "checkpoint", study, run_id)
    return Checkpoint.fresh(out_dir / "checkpoint", study, run_id)


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
