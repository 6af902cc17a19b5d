"""The trap-weights attack on a masked MLP study (Boenisch et al. 2021), by a curious
aggregator using the server's own secure aggregation against the real ClientApp.

In the clear the step bound only slows trap weights (test_mlp_plan.py). Under secure
aggregation a site is relayed, with each round past the first, the previous round's signed
masked words and reveals, recomputes their total and serves the round only if its weights
are FedAvg's mean of it. Steered trap weights are refused (and read training rows again
with that check patched out), as are a peer's words the aggregator forged to make the total
say what it wants (served again with the signature check patched out)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import site_grid

from fedrad.client import mlp_verify
from fedrad.client.data import SiteData
from fedrad.client.identity import load_or_create_identity, public_hex
from fedrad.client.local_pipeline import model_inputs
from fedrad.common import relayed_release
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import REFUSED, Kind, MlpRoundSums, Request, flatten, unflatten
from fedrad.common.models import mlp
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.secagg import FixedPoint, ReleaseTag, Reveal, Unmasker
from fedrad.common.secagg import verified_total as verified
from fedrad.common.stats.moments import Standardizer
from fedrad.server.federation import Federation, GridTransport
from fedrad.server.phases.census import census
from fedrad.server.secure_aggregation import SecureAggregation
from fedrad.simulations.synth.features import write_site_feature_tables

HOLDOUT = Partition("holdout")
# as test_mlp_plan.py's study (one SGD step per round), masked, over two sites
STUDY = StudyConfig(
    federation=FederationSettings(min_cell_size=3, min_sites=2),
    harmonization={"method": "none"},
    validation={"scheme": "holdout"},
    model={
        "kind": "mlp",
        "hidden_units": 48,
        "rounds": 6,
        "local_epochs": 1,
        "batch_size": 256,
        "learning_rate": 0.5,
    },
)
N_INPUTS = 4
TRAPS = range(48)


@pytest.fixture
def tables(tmp_path_factory) -> dict[str, Path]:
    """Fresh site folders per test (a site's ledger of releases lives in its folder)."""
    tables = write_site_feature_tables(tmp_path_factory.mktemp("sites"), STUDY, sizes=(60, 40))
    for path in tables.values():
        load_or_create_identity(path.parent)
    return tables


@pytest.fixture
def study(tables) -> StudyConfig:
    pins = {name: public_hex(load_or_create_identity(p.parent)) for name, p in tables.items()}
    return STUDY.updated(federation={"site_keys": pins})


class CuriousAggregator:
    """The server's secure aggregation, with the aggregator choosing each round's weights."""

    def __init__(self, tables: dict[str, Path], study: StudyConfig):
        self.grid = site_grid(tables, study)
        self.federation = Federation(GridTransport(self.grid, timeout_s=60), log=lambda _: None)
        census(self.federation, study, len(tables))
        self.federation.secure = SecureAggregation(self.federation, study)
        self.federation.secure.exchange_keys(self.federation.included())
        first = next(iter(tables))
        data = SiteData.load(tables[first], first, study)
        x = data.columns(data.features)[:, :N_INPUTS]
        self.pipeline = PipelineParams(  # the first features, scaled as one site's
            features=data.features,
            selected=np.arange(N_INPUTS),
            standardizer=Standardizer(mean=x.mean(axis=0), scale=x.std(axis=0)),
        )

    def round(
        self, weights: dict, server_round: int, relayed: relayed_release.RelayedRelease | None
    ) -> MlpRoundSums | list[str]:
        """The round's unmasked total, or the refusal codes of the sites that refused it."""
        request = Request(
            replace(self.pipeline, network=weights),
            HOLDOUT,
            values={"server-round": server_round},
        )
        if relayed is not None:
            request = relayed_release.attach(request, relayed)
        before = len(self.grid.sent)
        nodes = self.federation.included()
        try:
            return self.federation.total(Kind.MLP_ROUND, {n: request for n in nodes})
        except Exception:
            replies = [reply for _, _, reply in self.grid.sent[before:]]
            codes = [str(r.content["values"][REFUSED]) for r in replies if _refused(r)]
            assert codes, "the round failed without a refusal"
            return codes

    @property
    def last(self) -> relayed_release.RelayedRelease:
        return self.federation.secure.last

    def own_start(self) -> dict[str, np.ndarray]:
        settings = STUDY.model
        return mlp.initial_weights(N_INPUTS, settings.hidden_units, settings.seed)


def _refused(reply) -> bool:
    return "values" in reply.content and REFUSED in reply.content["values"]


def training_rows(tables, study, pipeline: PipelineParams) -> np.ndarray:
    """Every site's standardized training rows: what must never leave them."""
    rows = []
    for name, path in tables.items():
        data = SiteData.load(path, name, study)
        train = data.rows(HOLDOUT, "train", study)
        rows.append(model_inputs(data, pipeline, HOLDOUT, train, study))
    return np.concatenate(rows)


def steered_trap(start: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """test_mlp_plan.py's trap from the site's own start: each trap neuron keeps its
    direction, shrunk to length 0.2, and fires beyond 2 of its standard deviations."""
    trap = {name: value.copy() for name, value in start.items()}
    for j in TRAPS:
        direction = start["hidden.weight"][j] / np.linalg.norm(start["hidden.weight"][j])
        trap["hidden.weight"][j] = 0.2 * direction
        trap["hidden.bias"][j] = -2.0 * 0.2
    return trap


def toward(sent: dict, trap: dict, bound: float) -> dict[str, np.ndarray]:
    """One step from `sent` toward `trap`, within the step bound."""
    step = min(1.0, 0.99 * bound / mlp.distance(trap, sent))
    return {name: (value + (trap[name] - value) * step) for name, value in sent.items()}


def read_rows(sent: dict, mean: dict) -> np.ndarray:
    """Boenisch et al.'s reading of the trap neurons, off the round's FedAvg mean."""
    weight_step = mean["hidden.weight"] - sent["hidden.weight"]
    bias_step = mean["hidden.bias"] - sent["hidden.bias"]
    return np.array([weight_step[j] / bias_step[j] for j in TRAPS if abs(bias_step[j]) > 1e-7])


def close(recovered: np.ndarray, rows: np.ndarray, tolerance: float = 1e-3) -> int:
    return sum(bool(np.any(np.all(np.abs(rows - row) < tolerance, axis=1))) for row in recovered)


def steer(agg: CuriousAggregator, trap: dict) -> tuple[dict, MlpRoundSums | list[str]]:
    """Round 1 from the sites' own start, then each later round a step toward `trap`,
    relayed with the previous round's release; the last weights sent and their answer."""
    sent = agg.own_start()
    answer = agg.round(sent, 1, None)
    assert isinstance(answer, MlpRoundSums), answer
    for server_round in range(2, STUDY.model.rounds + 1):
        sent = toward(sent, trap, STUDY.model.mlp_step_bound)
        answer = agg.round(sent, server_round, agg.last)
        if not isinstance(answer, MlpRoundSums):
            break
    return sent, answer


def test_steered_trap_weights_are_refused_as_not_the_rounds_total(tables, study):
    agg = CuriousAggregator(tables, study)
    trap = steered_trap(agg.own_start())
    assert STUDY.model.mlp_step_bound < mlp.distance(trap, agg.own_start())
    _, answer = steer(agg, trap)
    assert answer == [mlp_verify.NOT_THE_TOTAL] * 2  # both sites, at round 2
    for path in tables.values():
        assert "round 2 weights differ" in (path.parent / "site.log").read_text()


def test_with_the_check_patched_out_the_same_steered_trap_reads_rows(tables, study, monkeypatch):
    monkeypatch.setattr(mlp_verify, "check", lambda *_: None)  # the defence removed
    agg = CuriousAggregator(tables, study)
    sent, answer = steer(agg, steered_trap(agg.own_start()))
    assert isinstance(answer, MlpRoundSums)  # every step within the bound was served
    recovered = read_rows(sent, answer.mean(sent).weights)
    assert close(recovered, training_rows(tables, study, agg.pipeline)) >= 5


def test_honest_rounds_relayed_with_their_release_are_served(tables, study):
    agg = CuriousAggregator(tables, study)
    weights = agg.own_start()
    for server_round in range(1, STUDY.model.rounds + 1):
        relayed = agg.last if server_round > 1 else None
        total = agg.round(weights, server_round, relayed)
        assert isinstance(total, MlpRoundSums), total
        weights = total.mean(weights).weights  # FedAvg's global weights of one reply
    # a round without its release, or relayed another round's, is refused
    assert agg.round(weights, 2, None) == [mlp_verify.UNVERIFIED] * 2


def unmasked_words(study: StudyConfig, release: relayed_release.RelayedRelease) -> np.ndarray:
    """The release's total as the aggregator unmasked it, in words."""
    tag = ReleaseTag(study.study_hash, *release.tag)
    unmasker = Unmasker(tag, release.survivors, release.words[release.survivors[0]].size)
    for site in release.survivors:
        unmasker.add(site, release.words[site])
    for site in release.survivors:
        unmasker.apply(Reveal(site, tag, release.self_seeds[site], release.pairwise[site]))
    return unmasker.total()


def forge(study, release, like: dict, target: dict):
    """`release` with the last site's words shifted (the aggregator knows the total, so it
    can shift one peer's words by any amount) so that its total says the sites moved to
    `target`; and the global weights a site derives from that total."""
    layout = flatten(MlpRoundSums(np.zeros(mlp.flat(like).size), 0, 0.0))[1]
    fixed = FixedPoint(len(release.survivors))
    honest = unmasked_words(study, release)
    total = unflatten(Kind.MLP_ROUND, fixed.decode(honest), layout)
    n = total.num_examples
    wanted = FixedPoint.encode(flatten(MlpRoundSums(n * mlp.flat(target), n, 0.0))[0])
    victim_peer = release.survivors[-1]
    words = dict(release.words)
    words[victim_peer] = words[victim_peer] + (wanted - honest)
    derived = unflatten(Kind.MLP_ROUND, fixed.decode(wanted), layout).mean(like).weights
    return replace(release, words=words), derived


@pytest.mark.parametrize("signature_checked", [True, False])
def test_a_peers_words_forged_to_steer_the_total_are_refused(
    tables, study, monkeypatch, signature_checked
):
    if not signature_checked:  # the defence removed: any words pass as the peer's
        monkeypatch.setattr(verified, "verify_words", lambda *_: True)
    agg = CuriousAggregator(tables, study)
    start = agg.own_start()
    assert isinstance(agg.round(start, 1, None), MlpRoundSums)
    # the trap one bounded step away, as if the sites' own updates had moved there
    target = toward(start, steered_trap(start), STUDY.model.mlp_step_bound)
    release, weights = forge(study, agg.last, start, target)
    assert mlp.distance(weights, target) < 1e-6  # the target, to float32 rounding
    answer = agg.round(weights, 2, release)
    first, forged_peer = release.survivors
    replies = {agg.federation.label(node): reply for node, _, reply in agg.grid.sent[-2:]}
    assert _refused(replies[forged_peer])  # its own words were altered, it knows
    if signature_checked:
        assert answer == [mlp_verify.UNVERIFIED] * 2
        log = (tables[first].parent / "site.log").read_text()  # the detail stays at the site
        assert f"words relayed for site {forged_peer!r} are not signed by that site" in log
    else:
        assert not _refused(replies[first])  # the other site served the forged round
