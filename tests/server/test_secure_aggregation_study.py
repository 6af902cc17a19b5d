"""A whole study under secure aggregation (ridge with ComBat, L1, leave-one-site-out with
ComBat, the MLP), as the aggregator records it: every summed reply, an MLP round's
included, leaves a site as masked words that tell nothing of its values (with the site's
signature on the release's full survivor set, and at most its signed consent to be left out
later), every other reply is one the protocol lets a site send alone and meets its rules,
the models are the plain study's, a total of one
site is never asked for, an unpinned site is set aside, and a site that drops is left out
of a refit only if its share alone meets the disclosure rules; otherwise the study stops."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from conftest import FaultyGrid, run_study, site_grid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flwr.app import Context, RecordDict

from fedrad.client.data import SiteData
from fedrad.client.identity import load_or_create_identity, public_hex
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import (
    MESSAGE_TYPES,
    PIPELINE_UNKNOWN,
    REFUSED,
    SITE_ERROR,
    SKIPPED,
    SUMMED,
    MlpRoundReply,
    MlpRoundSums,
    decode_reply,
    flatten,
    from_record,
)
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.secagg import (
    EncodingError,
    FixedPoint,
    ReleaseTag,
    sign_survivor_set,
    survivor_digest,
    verify_survivor_signature,
)
from fedrad.common.secagg.consent import sign_consent, verify_consent
from fedrad.common.secagg.verified_total import sign_words
from fedrad.server.app import make_server_app
from fedrad.server.secure_aggregation import SecureAggregation
from fedrad.server.study import StudyProtocol
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

BASE = StudyConfig(  # a fixed ridge penalty: the clear arms' small sites cannot carry inner folds
    federation=FederationSettings(min_cell_size=3),
    harmonization={"method": "none"},
    validation={"scheme": "holdout"},
    model={"ridge_lambda": 1.0},
)
STUDIES = {
    "ridge-with-combat": BASE.updated(harmonization={"method": "combat"}),
    # at most 3 features: in the clear, each site's inner-fold cases must carry the parameters
    # alone (federation.max_parameter_ratio), and these cohorts are small
    "lasso": BASE.updated(model={"kind": "lasso-logistic"}, selection={"max_features": 3}),
    "loso-with-combat": BASE.updated(
        harmonization={"method": "combat"}, validation={"scheme": "leave-one-site-out"}
    ),
    "mlp": BASE.updated(model={"kind": "mlp", "rounds": 3, "hidden_units": 4}),
}
SUMMED_TYPES = {MESSAGE_TYPES[kind]: kind for kind in SUMMED}
# a masked reply: its words, and the site's signatures on its survivor set and on the words
MASKED_ARRAYS = {"words", "survivors", "consent", "words-signature"}
# Control replies, instead of a result: why the site sits a request out (one line, in the
# study's terms), a refusal's code, that it failed (details in its own log), or that it lost
# its pipeline cache.
CONTROL = {SKIPPED, REFUSED, SITE_ERROR, PIPELINE_UNKNOWN}
# The replies the protocol lets a site send in the clear, per site, each with what it holds
# and why that may leave: the rest leave only as masked words (SUMMED_TYPES).
IN_THE_CLEAR = {
    # who the site is; counts per class exact only when every class has >= k, else "<k"
    "query.census": {
        "site",
        "extraction_hash",
        "study_hash",
        "features",
        "batches",
        "cases",
        "versions",
        "sequences_missing",
    },
    # its public study key and its census counts, each signed by its identity: no data
    # beyond the census (the counts, as suppressed, and how many batches)
    "query.secagg_keys": {
        "public_key",
        "signature",
        "identity",
        "cases",
        "batches",
        "counts_signature",
    },
    # nothing (or a refusal)
    "query.secagg_peers": set(),
    # the self seed of a release every survivor signed for: it unmasks only the total
    "query.secagg_reveal": {"self_seed", "pairwise", "peers"},
    # its AUC to 2 decimals and rates on a public step, only with >= k test cases a class
    "evaluate.site_metrics": {
        "auc",
        "sensitivity",
        "sensitivity_step",
        "specificity",
        "specificity_step",
    },
    # per-batch moments of >= k training cases, before and after harmonization
    "query.site_effect": {
        "batches",
        "counts",
        "raw_mean",
        "raw_m2",
        "harmonized_mean",
        "harmonized_m2",
    },
    # nothing: the site keeps its harmonized table
    "query.persist": set(),
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    return write_site_feature_tables(tmp_path_factory.mktemp("sites"), BASE, sizes=(36, 32, 40))


def recording_releases(monkeypatch) -> list[dict[str, tuple[str, list[str], bytes]]]:
    """Every release the aggregator unmasks, as it keeps it: per site, the quantities it
    asked (joined, as a consent names them), the release's sites, and the site's consent."""
    releases = []
    keep = SecureAggregation._keep_consents

    def recording(self, masked, quantities, participants):
        releases.append(
            {
                self.federation.label(node): (
                    " ".join(quantities[node]),
                    list(participants),
                    bytes(reply.consent),
                )
                for node, reply in masked.items()
            }
        )
        return keep(self, masked, quantities, participants)

    monkeypatch.setattr(SecureAggregation, "_keep_consents", recording)
    return releases


class RequestsKept(FaultyGrid):
    """A grid that also keeps the values of every request it delivers, per reply in `sent`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[dict] = []

    def deliver(self, message):
        values = dict(from_record(message.content).values)
        sent = len(self.sent)
        reply = super().deliver(message)
        if len(self.sent) > sent:
            self.asked.append(values)
        return reply


@pytest.fixture(scope="module", params=sorted(STUDIES))
def recorded(request, tables):
    """The same study over the same tables run masked and in the clear: (grid, results) each,
    and under "releases" what the masked run unmasked."""
    study = STUDIES[request.param]
    runs = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        runs["releases"] = recording_releases(monkeypatch)
        fitted = recording_fits(monkeypatch)
        for secure in (True, False):
            arm = study.updated(federation={"secure_aggregation": secure})
            if secure:
                runs["study"] = arm
            grid = site_grid(tables, arm, RequestsKept)
            fitted.clear()
            runs[secure] = (grid, run_study(grid, arm))
            runs["fits", secure] = list(fitted)
    return runs


def recording_fits(monkeypatch) -> list[PipelineParams]:
    """The pipeline of every fit the study makes, in order (its beta or network)."""
    fitted = []
    made = StudyProtocol._fitted

    def recording(self, params, model, nodes, selection):
        fitted.append(params)
        return made(self, params, model, nodes, selection)

    monkeypatch.setattr(StudyProtocol, "_fitted", recording)
    return fitted


def summed_replies(grid, node: int | None = None) -> list[tuple[str, object]]:
    """(message type, reply) of every reply to a SUMMED message type, in order."""
    return [
        (message_type, reply)
        for sender, message_type, reply in grid.sent
        if message_type in SUMMED_TYPES and node in (None, sender)
    ]


def _reveal_rounds(grid, nodes=(1, 2, 3)) -> list[int]:
    """How many times each node was asked to reveal for a survivor set."""
    return [
        sum(
            node == n and message_type == "query.secagg_reveal"
            for node, message_type, _ in grid.sent
        )
        for n in nodes
    ]


def test_every_summed_reply_leaves_a_site_as_masked_words_and_a_consent_only(recorded):
    grid, results = recorded[True]
    replies = summed_replies(grid)
    assert {"train.newton", "train.lasso_round", "train"} & {t for t, _ in replies}  # a model
    assert {"query.screen", "query.comoments"} <= {t for t, _ in replies}
    for message_type, reply in replies:
        assert not reply.has_error(), message_type
        arrays = reply.content["arrays"]
        assert set(arrays) == MASKED_ARRAYS, (message_type, list(arrays))
        assert arrays["words"].numpy().dtype == np.uint64
        survivors = arrays["survivors"].numpy()
        assert survivors.dtype == np.uint8 and survivors.shape == (64,), message_type
        consent = arrays["consent"].numpy()
        assert consent.dtype == np.uint8 and consent.size in (0, 64), message_type
        assert set(reply.content["values"]) == {"layout"}, message_type
    assert not results["events"]  # no site was set aside or left out on the way


def test_every_reply_of_a_study_is_masked_words_or_a_per_site_reply_the_rules_allow(recorded):
    grid, _ = recorded[True]
    k = recorded["study"].federation.min_cell_size
    seen = set()
    for _, message_type, reply in grid.sent:
        assert not reply.has_error(), message_type
        content = reply.content
        control = set(from_record(content).values) & CONTROL
        if control:  # one value instead of a result: a one-line reason, a code
            assert set(content["arrays"]) == set() and len(from_record(content).values) == 1
            continue
        if message_type in SUMMED_TYPES:  # only masked words, as the test above checks
            assert set(content["arrays"]) == MASKED_ARRAYS, message_type
            assert set(content) == {"arrays", "values"}, message_type  # no metrics in the clear
            continue
        assert message_type in IN_THE_CLEAR, f"{message_type} leaves a site in the clear"
        payload = from_record(content)
        assert set(payload.arrays) | set(payload.values) <= IN_THE_CLEAR[message_type]
        _within_the_rules(message_type, payload, k)
        seen.add(message_type)
    assert {"query.census", "query.secagg_keys", "query.secagg_reveal"} <= seen


def _within_the_rules(message_type: str, payload, k: int) -> None:
    """A per-site reply holds counts and figures only as the rules release them."""
    values = payload.values
    if message_type in ("query.census", "query.secagg_keys"):  # the same counts
        for count in values["cases"]:
            assert count in (f"<{k}", f">={k}") or int(count) >= k, count
    elif message_type == "query.site_effect":
        assert min(values["counts"]) >= k
    elif message_type == "evaluate.site_metrics":
        assert values["auc"] == round(values["auc"], 2)
        for rate in ("sensitivity", "specificity"):
            if rate in values:
                steps = values[rate] / values[f"{rate}_step"]
                assert steps == pytest.approx(round(steps), abs=1e-9), (rate, values)
    elif message_type == "query.secagg_reveal":
        assert payload.arrays["pairwise"].size == 0  # nobody dropped: no pairwise seed


def _own_test_cases(path: Path, name: str, study: StudyConfig) -> tuple[int, int]:
    """(positives, negatives) among the cases a site's own figures are over: its holdout
    test part, or every case of a site held out."""
    data = SiteData.load(path, name, study)
    scheme = study.validation.scheme
    test = data.rows(
        Partition("unseen" if scheme == "leave-one-site-out" else scheme), "test", study
    )
    positives = int(data.y[test].sum())
    return positives, int(test.sum()) - positives


def test_a_site_sends_its_own_figures_exactly_when_it_has_k_test_cases_of_each_class(
    recorded, tables
):
    grid, _ = recorded[True]
    study = recorded["study"]
    k = study.federation.min_cell_size
    figures = {
        node
        for node, message_type, reply in grid.sent
        if message_type == "evaluate.site_metrics"
        and not set(from_record(reply.content).values) & CONTROL
    }
    assert figures
    for node, (name, path) in enumerate(tables.items(), start=1):
        positives, negatives = _own_test_cases(path, name, study)
        assert (node in figures) == (min(positives, negatives) >= k), (name, positives, negatives)


@pytest.mark.parametrize("recorded", ["mlp"], indirect=True)
def test_no_mlp_round_reply_carries_a_sites_weights_in_the_clear(recorded):
    grid, _ = recorded[True]
    rounds = [reply for _, message_type, reply in grid.sent if message_type == "train"]
    assert len(rounds) == 3 * recorded["study"].model.rounds * len(recorded["fits", True])
    for reply in rounds:
        assert set(reply.content["arrays"]) == MASKED_ARRAYS
        assert "metrics" not in reply.content  # no example count or loss of its own either
    # every round past the first came with the release its weights were averaged from,
    # which each site recomputed and found to give exactly those weights (client/mlp_verify)
    asked = [v for (_, t, _), v in zip(grid.sent, grid.asked, strict=True) if t == "train"]
    later = [values for values in asked if values["server-round"] > 1]
    total_rounds = recorded["study"].model.rounds
    assert len(later) == len(rounds) // total_rounds * (total_rounds - 1) > 0
    assert all("secagg.prior.tag" in values for values in later)
    plain, _ = recorded[False]
    clear = [reply for _, message_type, reply in plain.sent if message_type == "train"]
    assert len(clear) == len(rounds)
    assert all("hidden.weight" in reply.content["arrays"] for reply in clear)


def test_a_sites_consent_is_its_signature_over_the_releases_quantities_and_sites_only(
    recorded, tables
):
    grid, _ = recorded[True]
    releases = recorded["releases"]
    names = list(tables)
    for node, name in enumerate(names, start=1):
        identity = load_or_create_identity(tables[name].parent)
        sent = [
            bytes(r.content["arrays"]["consent"].numpy()) for _, r in summed_replies(grid, node)
        ]
        kept = [release[name] for release in releases if name in release]
        assert sent == [consent for _, _, consent in kept]  # every masked reply was unmasked
        for quantities, participants, consent in kept:
            assert name in participants and set(participants) <= set(names)
            if quantities.startswith("scores/"):
                # a site's score histograms alone would place each test score on the grid
                assert consent == b""
                continue
            # every site here has >= k cases of each class (and batch): each may stand alone
            assert verify_consent(identity.public_key(), quantities, participants, consent)
            # Ed25519 is deterministic: the consent is exactly this signature, nothing more
            assert consent == sign_consent(identity, quantities, participants)


def test_a_sites_survivor_signature_is_over_its_releases_full_set_only(recorded, tables):
    grid, _ = recorded[True]
    names = list(tables)
    identities = {
        node: load_or_create_identity(tables[name].parent)
        for node, name in enumerate(names, start=1)
    }
    checked = 0
    for (node, message_type, reply), values in zip(grid.sent, grid.asked, strict=True):
        if message_type not in SUMMED_TYPES:
            continue
        own = names[node - 1]
        participants = sorted({own, *values["secagg.peers"]})
        assert len(participants) >= 2 and set(participants) <= set(names)
        tag = ReleaseTag(recorded["study"].study_hash, *json.loads(values["secagg.tag"]))
        digest = survivor_digest(tag, participants, [])  # everyone survives, none dropped
        signature = bytes(reply.content["arrays"]["survivors"].numpy())
        identity = identities[node]
        assert verify_survivor_signature(identity.public_key(), digest, signature)
        # Ed25519 is deterministic: exactly this signature, nothing of the site's values
        assert signature == sign_survivor_set(identity, digest)
        # and its signature on its masked words, for that set, is exactly this one
        words = reply.content["arrays"]["words"].numpy()
        signed = bytes(reply.content["arrays"]["words-signature"].numpy())
        assert signed == sign_words(identity, tag, participants, [], words)
        checked += 1
    assert checked == len(summed_replies(grid))


def test_a_masked_study_gives_the_plain_studys_models(recorded):
    (_, masked), (_, plain) = recorded[True], recorded[False]
    assert masked["model"]["training_sites"] == plain["model"]["training_sites"]
    fits = recorded["fits", True], recorded["fits", False]
    assert len(fits[0]) == len(fits[1]) > 0
    for secure, clear in zip(*fits, strict=True):
        if clear.network is not None:  # the MLP: FedAvg of a masked total, not of each site
            for name, weights in clear.network.items():
                np.testing.assert_allclose(secure.network[name], weights, rtol=0, atol=1e-9)
        else:
            np.testing.assert_allclose(secure.beta, clear.beta, rtol=1e-9, atol=1e-9)
    losses = masked["model"].get("train_loss_by_round")  # the pooled weighted mean
    if losses is not None:
        assert losses == pytest.approx(plain["model"]["train_loss_by_round"], abs=1e-9)
    assert masked["metrics"]["federated"]["auc"] == pytest.approx(
        plain["metrics"]["federated"]["auc"], abs=1e-9
    )


def test_a_sites_masked_words_are_uncorrelated_with_its_values_and_look_uniform(recorded):
    (masked_grid, _), (plain_grid, _) = recorded[True], recorded[False]
    masked, plain = summed_replies(masked_grid, node=1), summed_replies(plain_grid, node=1)
    assert [t for t, _ in masked] == [t for t, _ in plain]  # the same requests, in order
    words, encoded = [], []
    for (message_type, secret), (_, clear) in zip(masked, plain, strict=True):
        reply = decode_reply(SUMMED_TYPES[message_type], from_record(clear.content))
        if isinstance(reply, MlpRoundReply):  # as a masked study's site sums it
            reply = MlpRoundSums.of(reply)
        values, _ = flatten(reply)
        words.append(secret.content["arrays"]["words"].numpy())
        encoded.append(FixedPoint.encode(values))  # the site's own words before masking
        assert words[-1].shape == encoded[-1].shape
    words, encoded = np.concatenate(words), np.concatenate(encoded)
    assert words.size > 1000
    assert np.mean(words == encoded) < 1e-3
    uniform = words / 2.0**64
    assert abs(np.mean(uniform) - 0.5) < 0.05
    assert abs(np.mean(uniform < 0.25) - 0.25) < 0.05  # the encodings crowd both ends
    assert abs(np.corrcoef(uniform, encoded / 2.0**64)[0, 1]) < 0.1
    limbs = words.view(np.int64).reshape(-1)
    assert np.mean(np.abs(limbs) < 2**50) < 0.01  # plain limbs are below 2^48 in magnitude


def test_the_masked_words_of_one_release_summed_over_sites_are_still_masked(recorded):
    grid, _ = recorded[True]
    first = [summed_replies(grid, node=node)[0] for node in (1, 2, 3)]
    assert len({message_type for message_type, _ in first}) == 1
    total = np.sum(
        np.stack([reply.content["arrays"]["words"].numpy() for _, reply in first]),
        axis=0,
        dtype=np.uint64,
    )
    with pytest.raises(EncodingError):  # the self masks stay until each site reveals its own
        FixedPoint(3).decode(total)


# -- a total of one site ---------------------------------------------------------------------------
def _server_run(
    tables, study, grid_class=FaultyGrid, drop_after: dict[int, int] | None = None
) -> tuple[dict, FaultyGrid]:
    """The ServerApp over the sites of `tables`: what it hands over, and the grid."""
    handed = []
    grid = site_grid(tables, study, grid_class)
    grid.drop_after.update(drop_after or {})
    server = make_server_app(study, handed.append, expected_sites=len(tables), log=lambda _: 0)
    server(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}))
    (results,) = handed
    return results, grid


@pytest.mark.parametrize(("scheme", "n_sites"), [("leave-one-site-out", 2), ("single-site", 3)])
def test_a_fit_over_a_single_site_stops_the_study_instead_of_unmasking_it(tables, scheme, n_sites):
    study = BASE.updated(validation={"scheme": scheme})
    some = dict(list(tables.items())[:n_sites])
    results, grid = _server_run(some, study)
    assert results["status"] == "stopped"
    assert "federation.min_sites" in results["reason"]
    assert "needs 2" in results["reason"]  # max(2, min_sites) sites per total
    assert not summed_replies(grid)  # no site was asked for a sum at all
    assert all(site["status"] == "included" for site in results["sites"])  # nobody to blame


class SilentFromNewton(FaultyGrid):
    """site02 falls silent at its first Newton request, for good."""

    def deliver(self, message):
        node, message_type = message.metadata.dst_node_id, message.metadata.message_type
        if node == 2 and message_type == "train.newton":
            self.drop_after[2] = 0
        return super().deliver(message)


def test_a_site_dropping_below_min_sites_stops_the_study_before_a_smaller_total_is_unmasked(
    tables,
):
    study = BASE.updated(federation={"min_sites": 3})
    results, grid = _server_run(tables, study, SilentFromNewton)
    assert results["status"] == "stopped"
    assert "federation.min_sites" in results["reason"]
    assert "needs 3" in results["reason"]
    assert {s["name"]: s["status"] for s in results["sites"]}["site02"] == "dropped"
    # site01 and site03 masked their Newton terms, but that release was abandoned: every
    # release they revealed for was one site02 revealed for too
    assert [t for t, _ in summed_replies(grid, node=1)][-1] == "train.newton"
    counts = _reveal_rounds(grid)
    assert counts[0] > 0 and len(set(counts)) == 1, counts


# -- pinned identities -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pins(tables) -> dict[str, str]:
    return {name: public_hex(load_or_create_identity(path.parent)) for name, path in tables.items()}


@pytest.mark.parametrize("pin", ["absent", "another-key"])
def test_a_site_whose_identity_is_not_pinned_is_set_aside_and_the_study_goes_on(tables, pins, pin):
    site_keys = {name: pins[name] for name in ("site01", "site02")}
    if pin == "another-key":
        site_keys["site03"] = "ab" * 32
    study = BASE.updated(federation={"site_keys": site_keys, "min_sites": 2})
    grid = site_grid(tables, study)
    results = run_study(grid, study)
    site = {s["name"]: s for s in results["sites"]}
    assert site["site03"]["status"] == "dropped"
    assert "federation.site_keys" in site["site03"]["reason"]
    assert [e["site"] for e in results["events"]] == ["site03"]
    assert results["events"][0]["reason"].startswith("key exchange")
    assert site["site01"]["status"] == site["site02"]["status"] == "included"
    assert results["model"]["training_sites"] == ["site01", "site02"]
    # the site set aside was asked for its key, and for nothing after
    asked = {message_type for node, message_type, _ in grid.sent if node == 3}
    assert asked == {"query.census", "query.secagg_keys"}


def test_too_few_pinned_sites_stop_the_study_at_key_exchange(tables, pins):
    study = BASE.updated(federation={"site_keys": {"site01": pins["site01"]}, "min_sites": 2})
    results, grid = _server_run(tables, study)
    assert results["status"] == "stopped"
    assert results["reason"].startswith("key exchange")
    assert "federation.min_sites" in results["reason"]
    assert "federation.site_keys" in results["reason"]
    assert not summed_replies(grid)


# -- differencing across restarts ------------------------------------------------------------------
# A site that drops mid-fit has had its share in released totals (ComBat's sums, screening,
# co-moments...). A refit without it releases those quantities again among fewer sites,
# and the difference is its share: allowed only when the site signed, when it masked, that
# its share alone meets the per-site rules. (A site dropping before any release is simply
# left out: tests/server/test_protocol.py::
# test_site_dropping_out_mid_fit_is_named_and_the_fit_equals_pooled_without_it.)
def test_a_site_dropping_mid_fit_after_releases_is_left_out_with_its_consent(
    tables, pins, monkeypatch
):
    releases = recording_releases(monkeypatch)
    attached = []  # (quantities, sites, consents attached) of each release the aggregator asks
    with_consents = SecureAggregation._with_consents

    def recording(self, request, quantities, participants):
        sent = with_consents(self, request, quantities, participants)
        consents = zip(
            sent.values.get("secagg.consenters", []),
            sent.values.get("secagg.consented", []),
            sent.arrays.get("secagg.consents", []),
            strict=True,
        )
        attached.append((quantities, participants, {s: (q, bytes(c)) for s, q, c in consents}))
        return sent

    monkeypatch.setattr(SecureAggregation, "_with_consents", recording)
    pinned = BASE.updated(federation={"site_keys": pins})
    results, _ = _server_run(tables, pinned, SilentFromNewton)
    site = {s["name"]: s for s in results["sites"]}
    assert site["site02"]["status"] == "dropped"
    assert [e["site"] for e in results["events"]] == ["site02"]
    # the refit equals the pooled fit of the others
    assert results["model"]["training_sites"] == ["site01", "site03"]
    rest = {name: path for name, path in tables.items() if name != "site02"}
    pooled = pooled_reference(rest, BASE)["model"]
    for name, value in pooled["coefficients"].items():
        assert results["model"]["coefficients"][name] == pytest.approx(value, abs=1e-9)
    # what was released with site02 was released again without it, never with another site,
    # and each time with site02's consent attached, genuine under its pinned identity
    among: dict[str, list[list[str]]] = {}
    for release in releases:
        quantities, participants, _ = release["site01"]
        for quantity in quantities.split(" "):
            among.setdefault(quantity, []).append(participants)
    again = {q: sets for q, sets in among.items() if len({tuple(s) for s in sets}) > 1}
    assert again  # the refit did repeat quantities (the first screening pass, at least)
    for sets in again.values():
        assert all(set(later) <= set(earlier) for earlier, later in pairwise(sets))
    site02 = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pins["site02"]))
    everyone = ["site01", "site02", "site03"]
    refit = [(q, c) for q, p, c in attached if p != everyone and set(q) & set(again)]
    assert refit
    assert all(not c for _, p, c in attached if p == everyone)  # none needed at first
    for quantities, consents in refit:
        assert set(consents) == {"site02"}
        consented, signature = consents["site02"]
        assert set(quantities) <= set(consented.split(" "))
        assert verify_consent(site02, consented, everyone, signature)


RARE = BASE.updated(federation={"min_cell_size": 5})


@pytest.fixture(scope="module")
def rare(tmp_path_factory) -> tuple[dict[str, Path], FaultyGrid, dict]:
    """site02 has 4 positive training cases, below k = 5 (site01 has 5, site03 16): under
    secure aggregation it still trains, inside totals. (tables, grid, results)."""
    tables = write_site_feature_tables(tmp_path_factory.mktemp("rare"), RARE, sizes=(36, 22, 40))
    for name, positives in (("site01", 5), ("site02", 4)):  # test precondition
        data = SiteData.load(tables[name], name, RARE)
        assert data.y[data.rows(Partition("holdout"), "train", RARE)].sum() == positives
    grid = site_grid(tables, RARE)
    return tables, grid, run_study(grid, RARE)


def test_a_site_with_a_rare_class_trains_inside_totals_without_consenting_to_stand_alone(rare):
    _, grid, results = rare
    assert all(s["status"] == "included" for s in results["sites"])
    assert results["model"]["training_sites"] == ["site01", "site02", "site03"]
    # it is left out only where its own values would leave it alone: the site-effect report
    assert [(e["event"], e["site"], e["reason"].split(":")[0]) for e in results["events"]] == [
        ("left out", "site02", "site effects")
    ]
    consents = {
        node: {
            (t, r.content["arrays"]["consent"].numpy().size) for t, r in summed_replies(grid, node)
        }
        for node in (1, 2, 3)
    }
    assert ("train.newton", 0) in consents[2]
    # its share of anything trained meets no rule alone: it never consents to be left out
    # (the calibration line is over test cases only, which every site has >= k of)
    assert {size for t, size in consents[2] if t != "evaluate.calibration"} == {0}
    # the others consent for all they train on; nobody for its score histograms
    others = consents[1] | consents[3]
    assert {size for t, size in others if t != "evaluate.scores"} == {64}
    assert {size for t, size in others if t == "evaluate.scores"} == {0}


def test_a_site_with_a_rare_class_dropping_mid_fit_stops_the_study_instead_of_a_refit(rare):
    tables, clean, _ = rare
    asked = [message_type for node, message_type, _ in clean.sent if node == 2]
    before_newton = asked.index("train.newton")  # screening, co-moments released with it
    results, grid = _server_run(tables, RARE, drop_after={2: before_newton})
    assert results["status"] == "stopped"
    assert "site02" in results["reason"]
    assert "federation.min_cell_size" in results["reason"]
    assert {s["name"]: s["status"] for s in results["sites"]}["site02"] == "dropped"
    # nothing was released without it: the Newton release it missed was abandoned, and no
    # refit was asked of site01 and site03
    assert [t for t, _ in summed_replies(grid, node=1)][-1] == "train.newton"
    counts = _reveal_rounds(grid)
    assert counts[0] > 0 and len(set(counts)) == 1, counts
