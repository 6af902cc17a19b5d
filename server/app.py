"""The aggregator's Flower ServerApp: runs the study and hands over its results.

A study that cannot run (too few sites, none passing a rule) hands over why, and how far
it got, instead of raising: the condition is one the protocol anticipates. A deployed
study (an `out-dir` in its run config) keeps a checkpoint of its finished phases there,
and with `resume = true` continues from it (docs/protocol.md 8). The run is recorded as it
goes in the run store (server/store/; docs/store.md): the simulation hands its own writer,
a deployed study writes to `store-url` from its run config, else runs.db in its out-dir."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from sqlalchemy.exc import SQLAlchemyError

from fedrad.common.config import StudyConfig
from fedrad.common.user_error import UserError
from fedrad.server.checkpoint import Checkpoint, CheckpointUnusable
from fedrad.server.federation import GridTransport, StudyCannotRun
from fedrad.server.model_release import bundle_payload, release_bundle, signing_key_in
from fedrad.server.results import stopped_results, write_results
from fedrad.server.store.writer import RunWriter
from fedrad.server.study import StudyProtocol

ResultsSink = Callable[[dict], None]
ModelSink = Callable[[dict], None]  # the unsigned payload of model.fedrad


def make_server_app(
    study: StudyConfig | None = None,
    on_results: ResultsSink | None = None,
    expected_sites: int | None = None,
    log: Callable[[str], None] = print,
    store: RunWriter | None = None,
    on_model: ModelSink | None = None,
) -> ServerApp:
    """Build the ServerApp; by default it reads `study-path` and `out-dir` from run_config,
    and records the run in `store` (by default, the store its run config names). The final
    model goes to `on_model` as a bundle's payload; by default a deployed study signs it and
    writes out-dir/model.fedrad (docs/model-bundle.md)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_config = context.run_config
        run_study = study or _study_from(run_config)
        out_dir = Path(str(run_config.get("out-dir", "."))).resolve()
        try:
            checkpoint = _checkpoint(run_config, run_study, context.run_id, out_dir)
        except CheckpointUnusable as unusable:  # the checkpoint stays as it is, for a look
            log(f"the study cannot resume: {unusable}")
            return
        writer = _started(store or _deployed_store(run_config, out_dir, log), run_study, context)
        sink = on_results or _writer_to(out_dir, writer)
        transport = GridTransport(grid, run_study.federation.round_timeout_s)
        protocol = StudyProtocol(
            transport, run_study, expected_sites, log=log, checkpoint=checkpoint, observer=writer
        )
        try:
            results = protocol.run()
        except StudyCannotRun as stop:  # may be resumed, e.g. once enough sites are back
            log(f"the study cannot run: {stop}")
            results = stopped_results(run_study, protocol.federation, str(stop))
            if writer is not None:
                writer.finished(results)
            sink(results)
            return
        except Exception as crash:  # the store shows how far it got, and why it ended
            if writer is not None:
                writer.failed(f"{type(crash).__name__}: {crash}")
            raise
        if writer is not None:
            writer.finished(results)
        release = on_model or _releaser(run_config, out_dir, log)
        if release is not None and protocol.final is not None:
            try:
                payload = bundle_payload(results, protocol.final, context.run_id)
            except (KeyError, TypeError, ValueError) as exc:  # the results stand without it
                log(f"model bundle: not written ({type(exc).__name__}: {exc})")
            else:
                release(payload)
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


def _deployed_store(run_config, out_dir: Path, log: Callable[[str], None]) -> RunWriter | None:
    """The writer of a deployed study: to `store-url`, else to runs.db in its out-dir; None
    in a simulation given none (no out-dir)."""
    from fedrad.server.store.engine import open_store, store_url

    url = run_config.get("store-url") or ("out-dir" in run_config and store_url(out_dir))
    if not url:
        return None
    try:
        engine = open_store(str(url))
    except (SQLAlchemyError, OSError) as exc:
        log(f"run store: cannot open it ({exc}); the study runs without it")
        return None
    started_by = str(run_config.get("started-by") or getpass.getuser())
    return RunWriter(engine, "deployment", started_by, log)


def _started(writer: RunWriter | None, study: StudyConfig, context: Context) -> RunWriter | None:
    """`writer` with its run begun, or None if the store refuses it (the study runs on)."""
    if writer is None:
        return None
    try:
        writer.start(study, context.run_id)
    except SQLAlchemyError as exc:
        writer.log(f"run store: cannot record the run ({exc}); the study runs without it")
        return None
    return writer


def _releaser(run_config, out_dir: Path, log: Callable[[str], None]) -> ModelSink | None:
    """A deployed study's bundle writer: signed with the `signing-key` its run config names
    (`fedrad keys init` made it), else with one made in its out-dir; None in a simulation.
    A bundle that cannot be written is logged: the results stand without it."""
    if "out-dir" not in run_config:
        return None

    def release(payload: dict) -> None:
        try:
            named = run_config.get("signing-key")
            key = Path(str(named)) if named else signing_key_in(out_dir, log)
            log(f"model bundle: {release_bundle(payload, key, out_dir)}, signed with {key}")
        except (UserError, OSError) as exc:
            log(f"model bundle: not written ({exc})")

    return release


def _writer_to(out_dir: Path, store: RunWriter | None = None) -> ResultsSink:
    def write(results: dict) -> None:
        """report.html (as `fedrad simulate` writes it), then results.json, atomically:
        whoever watches for results.json finds the report there too (or its failure
        logged) and never reads half a file; the results are written whatever happens.
        Both are then listed in the run store with their sha256."""
        from fedrad.server.report.html import write_report

        files = {"report": out_dir / "report.html", "results": out_dir / "results.json"}
        try:
            write_report(results, files["report"])
        finally:
            write_results(results, files["results"])
        if store is not None:
            store.published(results, files)

    return write


app = make_server_app()
