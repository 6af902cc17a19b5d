"""The site's Flower ClientApp: answers each protocol request from the cached feature table.

It never extracts features inside a handler (extraction is `fedrad site extract`,
run beforehand) and keeps heavy imports inside the handlers, so that a SuperNode
starting a fresh process per message pays for them only when needed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

if TYPE_CHECKING:
    from fedrad.client.site import SiteData
    from fedrad.common.config import StudyConfig

SiteLoader = Callable[[Context], "tuple[SiteData, StudyConfig]"]
"""Gives a node's site data and study, from its context."""


def locate_from_node_config(context: Context) -> tuple[str, Path]:
    """Deployment: the SuperNode runs with --node-config 'features-path=... site-name=...'."""
    config = context.node_config
    if "features-path" not in config:
        raise KeyError("node config lacks 'features-path' (the site's features.parquet)")
    path = Path(str(config["features-path"]))
    return str(config.get("site-name", path.parent.name)), path


def study_from_node_config(context: Context) -> StudyConfig:
    from fedrad.common.config import StudyConfig

    study_path = context.node_config.get("study-path")
    return StudyConfig.from_yaml(str(study_path)) if study_path else StudyConfig()


class TableLoader:
    """Reads a site's feature table once per process (again only if the file changes)."""

    def __init__(
        self,
        locate: Callable[[Context], tuple[str, Path]] = locate_from_node_config,
        load_study: Callable[[Context], StudyConfig] = study_from_node_config,
    ):
        self.locate, self.load_study = locate, load_study
        self._loaded: dict[tuple[str, int], tuple[SiteData, StudyConfig]] = {}

    def __call__(self, context: Context) -> tuple[SiteData, StudyConfig]:
        from fedrad.client.site import SiteData

        name, path = self.locate(context)
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._loaded:
            study = self.load_study(context)
            self._loaded[key] = (SiteData.load(path, name, study), study)
        return self._loaded[key]


def make_client_app(load_site: SiteLoader | None = None) -> ClientApp:
    """Build the ClientApp; simulations pass their own loader (partition id -> site)."""
    from fedrad.common.messages import MESSAGE_TYPES

    load_site = load_site or TableLoader()
    app = ClientApp()

    def answer(kind: str) -> Callable[[Message, Context], Message]:
        def handler(msg: Message, context: Context) -> Message:
            from fedrad.client.site import handle
            from fedrad.common.messages import from_record, to_record

            data, study = load_site(context)
            reply = handle(kind, data, study, from_record(msg.content))
            return Message(to_record(reply), reply_to=msg)

        return handler

    register = {"query": app.query, "train": app.train, "evaluate": app.evaluate}
    for kind, message_type in MESSAGE_TYPES.items():
        category, action = message_type.split(".")
        register[category](action)(answer(kind))

    @app.train()
    def train_network(msg: Message, context: Context) -> Message:
        """A round of a Flower strategy (FedAvg, FedProx, ...): train the MLP locally."""
        from fedrad.client.local_training import train_round

        data, study = load_site(context)
        return Message(train_round(data, study, msg.content), reply_to=msg)

    return app


app = make_client_app()
