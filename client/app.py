"""The site's Flower ClientApp: answers each protocol phase from the cached feature table.

It never extracts features inside a handler (extraction is `fedrad site extract`,
run beforehand) and keeps heavy imports inside the handlers, so that a SuperNode
starting a fresh process per message pays for them only when needed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

if TYPE_CHECKING:
    from fedrad.client.site import SiteData
    from fedrad.common.config import StudyConfig

SiteLocator = Callable[[Context], tuple[str, Path]]
"""Maps a node's context to (site name, feature table path)."""


def locate_from_node_config(context: Context) -> tuple[str, Path]:
    """Deployment: the SuperNode is started with --node-config 'features-path=... site-name=...'."""
    config = context.node_config
    if "features-path" not in config:
        raise KeyError("node config lacks 'features-path' (the site's features.parquet)")
    path = Path(str(config["features-path"]))
    return str(config.get("site-name", path.parent.name)), path


def study_from_node_config(context: Context) -> StudyConfig:
    from fedrad.common.config import StudyConfig

    study_path = context.node_config.get("study-path")
    return StudyConfig.from_yaml(str(study_path)) if study_path else StudyConfig()


def make_client_app(
    locate: SiteLocator = locate_from_node_config,
    load_study: Callable[[Context], StudyConfig] = study_from_node_config,
) -> ClientApp:
    """Build the ClientApp; simulations pass their own locator (partition id -> site)."""
    app = ClientApp()
    cache: dict[tuple[str, float], tuple[SiteData, StudyConfig]] = {}

    def site(context: Context) -> tuple[SiteData, StudyConfig]:
        from fedrad.client.site import SiteData

        name, path = locate(context)
        key = (str(path), path.stat().st_mtime)
        if key not in cache:
            study = load_study(context)
            cache[key] = (SiteData.load(path, name, study), study)
        return cache[key]

    @app.query("census")
    def census(msg: Message, context: Context) -> Message:
        from fedrad.client import site as local

        data, study = site(context)
        record = ConfigRecord(
            {
                "site": data.name,
                "extraction-hash": data.extraction_hash,
                "study-hash": study.study_hash,
                "features": data.features,
                **local.census(data, study),
            }
        )
        return Message(RecordDict({"census": record}), reply_to=msg)

    @app.query("moments")
    def moments(msg: Message, context: Context) -> Message:
        from fedrad.client import site as local

        data, study = site(context)
        features = list(msg.content["config"]["features"])
        return _reply_or_skip(
            msg, lambda: _moments_reply(local.training_moments(data, features, study))
        )

    @app.train("newton")
    def newton(msg: Message, context: Context) -> Message:
        from fedrad.client import site as local

        data, study = site(context)
        features, standardizer, beta = _model_from(msg)

        def compute() -> RecordDict:
            terms = local.training_newton_terms(data, features, standardizer, beta, study)
            return RecordDict(
                {
                    "terms": ArrayRecord(
                        {"gradient": Array(terms.gradient), "hessian": Array(terms.hessian)}
                    ),
                    "metrics": MetricRecord({"deviance": terms.deviance, "n": terms.n}),
                }
            )

        return _reply_or_skip(msg, compute)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        from fedrad.client import site as local

        data, study = site(context)
        features, standardizer, beta = _model_from(msg)

        def compute() -> RecordDict:
            result = local.holdout_evaluation(data, features, standardizer, beta, study)
            counts = result.counts
            metrics = {"tp": counts.tp, "fn": counts.fn, "tn": counts.tn, "fp": counts.fp}
            if result.local_auc == result.local_auc:  # not NaN: both classes present
                metrics["local-auc"] = result.local_auc
            return RecordDict(
                {
                    "histograms": ArrayRecord(
                        {
                            "positives": Array(result.positives_histogram),
                            "negatives": Array(result.negatives_histogram),
                        }
                    ),
                    "metrics": MetricRecord(metrics),
                }
            )

        return _reply_or_skip(msg, compute)

    return app


def _moments_reply(moments) -> RecordDict:
    return RecordDict(
        {
            "moments": ArrayRecord({"mean": Array(moments.mean), "m2": Array(moments.m2)}),
            "metrics": MetricRecord({"n": moments.n}),
        }
    )


def _model_from(msg: Message):
    from fedrad.common.moments import Standardizer

    arrays = msg.content["model"]
    standardizer = Standardizer(mean=arrays["mean"].numpy(), scale=arrays["scale"].numpy())
    return list(msg.content["config"]["features"]), standardizer, arrays["beta"].numpy()


def _reply_or_skip(msg: Message, compute: Callable[[], RecordDict]) -> Message:
    """Reply with the phase's aggregates, or with the reason this site sits the phase out."""
    from fedrad.client.site import SiteSkipped

    try:
        content = compute()
    except SiteSkipped as skipped:
        content = RecordDict({"skipped": ConfigRecord({"reason": str(skipped)})})
    return Message(content, reply_to=msg)


app = make_client_app()
