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

SiteLocator = Callable[[Context], tuple[str, Path]]
"""Maps a node's context to (site name, feature table path)."""


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


def make_client_app(
    locate: SiteLocator = locate_from_node_config,
    load_study: Callable[[Context], StudyConfig] = study_from_node_config,
) -> ClientApp:
    """Build the ClientApp; simulations pass their own locator (partition id -> site)."""
    from fedrad.common.messages import MESSAGE_TYPES

    app = ClientApp()
    loaded: dict[tuple[str, float], tuple[SiteData, StudyConfig]] = {}

    def site(context: Context) -> tuple[SiteData, StudyConfig]:
        from fedrad.client.site import SiteData

        name, path = locate(context)
        key = (str(path), path.stat().st_mtime)
        if key not in loaded:
            study = load_study(context)
            loaded[key] = (SiteData.load(path, name, study), study)
        return loaded[key]

    def answer(kind: str) -> Callable[[Message, Context], Message]:
        def handler(msg: Message, context: Context) -> Message:
            from fedrad.client.site import handle
            from fedrad.common.messages import from_record, to_record

            data, study = site(context)
            reply = handle(kind, data, study, from_record(msg.content))
            return Message(to_record(reply), reply_to=msg)

        return handler

    register = {"query": app.query, "train": app.train, "evaluate": app.evaluate}
    for kind, message_type in MESSAGE_TYPES.items():
        category, action = message_type.split(".")
        register[category](action)(answer(kind))
    return app


app = make_client_app()
