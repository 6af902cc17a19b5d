"""The site's Flower ClientApp: answers each protocol request from the cached feature table.

It never extracts features inside a handler (extraction is `fedrad site extract`,
run beforehand): every message kind goes to its handler in `handlers`, through the one
wire contract of `fedrad.common.messages`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedrad.client import mlp_verify
from fedrad.client.data import SiteData, TableMismatch
from fedrad.client.handlers import alone_ok, handle
from fedrad.client.ledger import LedgerUnusable, bind_ledger
from fedrad.client.secure_aggregation import (
    SECAGG_HANDLERS,
    SecAggError,
    SecAggRefused,
    SiteSecAgg,
    release_tag,
)
from fedrad.client.site_log import site_log
from fedrad.common.config import StudyConfig
from fedrad.common.messages import (
    MESSAGE_TYPES,
    PIPELINE_UNKNOWN,
    REFUSED,
    SITE_ERROR,
    Kind,
    Payload,
    PipelineUnknown,
    decode_request,
    encode_reply,
    from_record,
    kept,
    payload_from_bytes,
    to_record,
)

SiteLoader = Callable[[Context], tuple[SiteData, StudyConfig]]
"""Gives a node's site data and study, from its context."""


def locate_from_node_config(context: Context) -> tuple[str, Path]:
    """Deployment: the SuperNode runs with --node-config 'features-path=... site-name=...'."""
    config = context.node_config
    if "features-path" not in config:
        raise KeyError("node config lacks 'features-path' (the site's features.parquet)")
    path = Path(str(config["features-path"]))
    return str(config.get("site-name", path.parent.name)), path


def study_from_node_config(context: Context) -> StudyConfig:
    study_path = context.node_config.get("study-path")
    return StudyConfig.from_yaml(str(study_path)) if study_path else StudyConfig()


# What every TableLoader of this process has read, by (loader, path, mtime); newest last.
_LOADED: OrderedDict[tuple[str, str, int], tuple[SiteData, StudyConfig]] = OrderedDict()
TABLES_KEPT = 256  # more sites than a simulation runs in one process


class TableLoader:
    """Reads a site's feature table once per process (again only if the file changes).

    The tables live in this module, not on the loader: the simulation engine sends its
    workers a fresh copy of the ClientApp, loader included, with every message. A loader's
    token (kept in its copies) keeps apart the tables and studies of different loaders."""

    def __init__(
        self,
        locate: Callable[[Context], tuple[str, Path]] = locate_from_node_config,
        load_study: Callable[[Context], StudyConfig] = study_from_node_config,
    ):
        self.locate, self.load_study = locate, load_study
        self.token = secrets.token_hex(16)

    def __call__(self, context: Context) -> tuple[SiteData, StudyConfig]:
        name, path = self.locate(context)
        key = (self.token, str(path), path.stat().st_mtime_ns)
        if key not in _LOADED:
            study = self.load_study(context)
            _LOADED[key] = (SiteData.load(path, name, study), study)
            while len(_LOADED) > TABLES_KEPT:
                _LOADED.popitem(last=False)
        return _LOADED[key]


class PipelineCache:
    """Fixed pipeline parts this node has been sent, by digest, in its Flower context state
    (which the runtime keeps between a node's messages); the newest PIPELINES_KEPT, as the
    aggregator's mirror of this cache assumes (`messages.kept`). Arrays are stored once by
    content: a fit's successive stages share ComBat's arrays, and the state travels with
    every message."""

    def __init__(self, state: RecordDict):
        self.state = state

    def __contains__(self, digest: str) -> bool:
        return f"pipeline:{digest}" in self.state

    def __getitem__(self, digest: str) -> Payload:
        entry = self.state[f"pipeline:{digest}"]
        arrays = self.state["pipeline:arrays"]
        return Payload(
            {
                name: arrays[key].numpy()
                for name, key in zip(entry["names"], entry["keys"], strict=True)
            },
            json.loads(entry["values"]),
        )

    def __setitem__(self, digest: str, fixed: Payload) -> None:
        order = kept(tuple(self._order()), digest)
        for old in set(self._order()) - set(order):
            del self.state[f"pipeline:{old}"]
        stored = dict(self.state["pipeline:arrays"]) if "pipeline:arrays" in self.state else {}
        keys = [_content_key(value) for value in fixed.arrays.values()]
        for key, value in zip(keys, fixed.arrays.values(), strict=True):
            stored.setdefault(key, Array(np.ascontiguousarray(value)))
        self.state[f"pipeline:{digest}"] = ConfigRecord(
            {"names": list(fixed.arrays), "keys": keys, "values": json.dumps(fixed.values)}
        )
        self.state["pipeline:order"] = ConfigRecord({"digests": list(order)})
        used = {key for d in order for key in self.state[f"pipeline:{d}"]["keys"]}
        self.state["pipeline:arrays"] = ArrayRecord(
            {key: array for key, array in stored.items() if key in used}
        )

    def _order(self) -> list[str]:
        if "pipeline:order" not in self.state:
            return []
        return list(self.state["pipeline:order"]["digests"])


def _content_key(array: np.ndarray) -> str:
    contiguous = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{contiguous.dtype.str}|{contiguous.shape}".encode())
    digest.update(contiguous.tobytes())
    return digest.hexdigest()[:32]


def answer(kind: Kind, data: SiteData, study: StudyConfig, content: RecordDict, state) -> Payload:
    """This site's reply to one message of `kind`. A strategy's round carries our request in
    its config (`request`) beside the global weights, which become the pipeline's network
    (as an MLP round under secure aggregation sends them)."""
    payload = from_record(content)
    if kind is Kind.MLP_ROUND and "request" in payload.values:
        weights, config = payload.arrays, payload.values
        payload = payload_from_bytes(bytes(config.pop("request")))
        payload.arrays |= {f"network.{name}": value for name, value in weights.items()}
        payload.values |= config
    try:
        request = decode_request(payload, PipelineCache(state))
    except PipelineUnknown as unknown:
        return Payload(values={PIPELINE_UNKNOWN: str(unknown)})
    folder = data.table_path.parent if data.table_path else None
    secagg = SiteSecAgg(state, data, study)
    try:
        bind_ledger(state, folder, data.name, study)
        if kind in SECAGG_HANDLERS:
            return encode_reply(kind, SECAGG_HANDLERS[kind](secagg, request))
        release = None
        if "secagg.tag" in request.values:
            release_tag(study, request.values)  # an unreadable tag is refused before any work

            def release(reply):
                masked = secagg.mask(kind, reply, request, alone_ok(kind, data, study, request))
                if kind is Kind.MLP_ROUND:
                    mlp_verify.remember(state, request, masked)
                return masked

        if kind is Kind.MLP_ROUND and mlp_verify.applies(study):
            mlp_verify.check(request, study, state, data.name, secagg.identities())
        return handle(kind, data, study, request, release, state)
    except (SecAggError, SecAggRefused, LedgerUnusable) as refused:
        code = getattr(refused, "code", type(refused).__name__)
        site_log(data.name, folder).warning("refused %s (%s): %s", kind, code, refused)
        return Payload(values={REFUSED: code})


def make_client_app(load_site: SiteLoader | None = None) -> ClientApp:
    """Build the ClientApp; simulations pass their own loader (partition id -> site). Every
    kind of the wire contract is registered the same way, under its Flower message type."""
    load_site = load_site or TableLoader()
    app = ClientApp()

    def handler_of(kind: Kind) -> Callable[[Message, Context], Message]:
        def handler(msg: Message, context: Context) -> Message:
            data = None
            try:
                data, study = load_site(context)
                reply = answer(kind, data, study, msg.content, context.state)
            except Exception as exc:  # its text may hold paths or values: it stays here
                folder = data.table_path.parent if data and data.table_path else None
                site_log(data.name if data else "unloaded", folder).exception("%s failed", kind)
                public = str(exc) if isinstance(exc, TableMismatch) else "site-error"
                reply = Payload(values={SITE_ERROR: public})
            return Message(to_record(reply, kind), reply_to=msg)

        return handler

    register = {"query": app.query, "train": app.train, "evaluate": app.evaluate}
    for kind, message_type in MESSAGE_TYPES.items():
        category, _, action = message_type.partition(".")
        route = register[category](action) if action else register[category]()
        route(handler_of(kind))
    return app


app = make_client_app()
