"""A malicious aggregator drives the real ClientApp message by message: it substitutes keys,
fakes a drop-out, reuses tags, asks for a total of one site, or for the same quantity among
other sites (to learn a site's share by difference). Each time the site refuses, and what
the aggregator holds stays masked; only the honest path unmasks, and then exactly.

A release is two rounds: each site masks, signing with its masked reply the one survivor
set it will ever reveal for (all the release's sites, none dropped), then reveals once
every survivor's signature covers that set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FaultyGrid, site_grid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedrad.client.app import make_client_app
from fedrad.client.data import SiteData
from fedrad.client.identity import load_or_create_identity, public_hex
from fedrad.common.config import FederationSettings, StudyConfig
from fedrad.common.messages import (
    MESSAGE_TYPES,
    REFUSED,
    Kind,
    Payload,
    Request,
    decode_reply,
    encode_request,
    flatten,
    quantity_digests,
)
from fedrad.common.pipeline import Partition, PipelineParams
from fedrad.common.secagg import (
    EncodingError,
    FixedPoint,
    ReleaseTag,
    Reveal,
    StudyKeyPair,
    Unmasker,
    expand,
    sign_survivor_set,
    survivor_digest,
    verify_survivor_signature,
)
from fedrad.common.secagg.consent import sign_consent, verify_consent
from fedrad.common.secagg.verified_total import sign_words
from fedrad.common.stats.moments import Standardizer
from fedrad.server.federation import GridTransport
from fedrad.simulations.synth.features import write_site_feature_tables

A, B, C = "site01", "site02", "site03"
SITES = (A, B, C)
BASE = StudyConfig(
    federation=FederationSettings(min_cell_size=3),
    harmonization={"method": "none"},
    validation={"scheme": "holdout"},
)
FIELDS = [0, "newton", 1, "total", 0]  # fit, phase, iteration, quantity, attempt


@pytest.fixture
def tables(tmp_path_factory) -> dict[str, Path]:
    """Fresh site folders for each test: each test is a new run, and what a site released
    in a study is kept in its folder over every run of it (client/ledger.py)."""
    tables = write_site_feature_tables(tmp_path_factory.mktemp("sites"), BASE, sizes=(36, 32, 40))
    for path in tables.values():  # the identity each site loads: known up front, to pin
        load_or_create_identity(path.parent)
    return tables


@pytest.fixture
def pins(tables) -> dict[str, str]:
    """Every site's public identity key, as a coordinator pins them in the study."""
    return {name: public_hex(load_or_create_identity(path.parent)) for name, path in tables.items()}


@pytest.fixture
def study(pins) -> StudyConfig:
    return BASE.updated(federation={"site_keys": pins})


class Aggregator:
    """The aggregator's end of the real ClientApp: it picks every message itself."""

    def __init__(self, grid: FaultyGrid, names=SITES):
        self.grid = grid
        self.transport = GridTransport(grid, timeout_s=30)
        self.nodes = {name: node for node, name in enumerate(names, start=1)}

    def ask(self, kind: Kind, requests: dict[str, Request]) -> dict[str, Payload]:
        payloads = {self.nodes[name]: encode_request(r, ())[0] for name, r in requests.items()}
        replies, failed = self.transport.ask(kind, payloads)
        assert not failed, failed
        return {name: replies[self.nodes[name]] for name in requests}

    def ask_one(self, kind: Kind, name: str, request: Request) -> Payload:
        return self.ask(kind, {name: request})[name]

    # -- the honest key exchange ------------------------------------------------------------------
    def keys(self, names=SITES) -> dict[str, Payload]:
        replies = self.ask(Kind.SECAGG_KEYS, {name: Request() for name in names})
        assert all(REFUSED not in reply.values for reply in replies.values()), replies
        return replies

    def relay(self, keys: dict[str, Payload], to=SITES) -> dict[str, Payload]:
        return self.ask(Kind.SECAGG_PEERS, {name: relay_request(keys) for name in to})

    def exchange(self, names=SITES) -> None:
        replies = self.relay(self.keys(names), to=names)
        assert all(REFUSED not in reply.values for reply in replies.values()), replies


def relay_request(keys: dict[str, Payload]) -> Request:
    """What the aggregator relays: every site's exchange key, its signature and identity,
    and its signed census counts (none for a key the aggregator made up)."""
    names = list(keys)
    unsigned = np.zeros(64, dtype=np.uint8)
    return Request(
        arrays={
            "public": np.stack([keys[n].arrays["public_key"] for n in names]),
            "signature": np.stack([keys[n].arrays["signature"] for n in names]),
            "identity": np.stack([keys[n].arrays["identity"] for n in names]),
            "counts_signature": np.stack(
                [keys[n].arrays.get("counts_signature", unsigned) for n in names]
            ),
        },
        values={
            "secagg.sites": names,
            "secagg.cases": [json.dumps(list(keys[n].values.get("cases", []))) for n in names],
            "secagg.batches": [int(keys[n].values.get("batches", 0)) for n in names],
        },
    )


def pipeline(tables, study: StudyConfig, beta: float = 0.1) -> PipelineParams:
    features = SiteData.load(tables[A], A, study).features
    return PipelineParams(
        features=features,
        selected=np.arange(3),
        standardizer=Standardizer(mean=np.full(3, 1000.0), scale=np.full(3, 2.0)),
        beta=np.array([-0.2, beta, -beta, 0.05]),
    )


def newton(tables, study, fields=FIELDS, peers=None, beta: float = 0.1) -> Request:
    """A NEWTON request of the study's plan, as one masked release (`peers` of the release)."""
    values = {} if fields is None else {"secagg.tag": json.dumps(fields)}
    if peers is not None:
        values["secagg.peers"] = list(peers)
    return Request(pipeline(tables, study, beta), Partition("holdout"), values=values)


def masked_round(
    agg: Aggregator, tables, study, names=SITES
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every named site's masked NEWTON words for one release among SITES, and its
    signature (sent with them) on the survivor set "all of SITES survive"."""
    requests = {n: newton(tables, study, peers=[p for p in SITES if p != n]) for n in names}
    replies = agg.ask(Kind.NEWTON, requests)
    for name, reply in replies.items():
        assert_masked_only(tables, study, name, Kind.NEWTON, requests[name], reply, SITES)
    words = {name: reply.arrays["words"] for name, reply in replies.items()}
    return words, {name: reply.arrays["survivors"] for name, reply in replies.items()}


def assert_masked_only(
    tables, study, name, kind: Kind, request: Request, reply: Payload, sites
) -> bytes:
    """A masked reply holds its words, a survivor-set signature, a consent and a signature
    on its words for that set, nothing else.
    The signature is the site's over "all the release's sites survive, none dropped" for the
    request's tag; the consent is empty or the site's signature over the request's quantities
    and the release's sites. Neither carries anything more (Ed25519 signs deterministically:
    the same bytes as signing just those, so nothing more derived from the values). Returns the
    consent."""
    assert set(reply.arrays) == {"words", "survivors", "consent", "words-signature"}, (
        name,
        list(reply.arrays),
    )
    assert set(reply.values) == {"layout"}, (name, reply.values)
    assert reply.arrays["words"].dtype == np.uint64
    identity = load_or_create_identity(tables[name].parent)
    survivors = reply.arrays["survivors"]
    assert survivors.dtype == np.uint8 and survivors.shape == (64,), (name, survivors.shape)
    release = ReleaseTag(study.study_hash, *json.loads(request.values["secagg.tag"]))
    digest = survivor_digest(release, sites, [])
    assert verify_survivor_signature(identity.public_key(), digest, bytes(survivors))
    assert bytes(survivors) == sign_survivor_set(identity, digest)
    consent = reply.arrays["consent"]
    assert consent.dtype == np.uint8 and consent.size in (0, 64), (name, consent.shape)
    if consent.size:
        quantities = " ".join(quantity_digests(kind, request))
        assert verify_consent(identity.public_key(), quantities, sites, bytes(consent))
        assert bytes(consent) == sign_consent(identity, quantities, sites)
    words_signature = bytes(reply.arrays["words-signature"])
    assert words_signature == sign_words(identity, release, sites, [], reply.arrays["words"])
    return bytes(consent)


def sets(survivors, dropped=(), fields=FIELDS) -> dict:
    return {
        "secagg.tag": json.dumps(fields),
        "secagg.survivors": sorted(survivors),
        "secagg.dropped": sorted(dropped),
    }


def reveal(
    agg: Aggregator, name: str, survivors, dropped, signatures: dict, fields=FIELDS
) -> Payload:
    request = Request(
        arrays={
            "signatures": np.array(
                [list(bytes(signatures[n])) for n in signatures], np.uint8
            ).reshape(-1, 64)
        },
        values={**sets(survivors, dropped, fields), "secagg.signers": list(signatures)},
    )
    return agg.ask_one(Kind.SECAGG_REVEAL, name, request)


def forged(study: StudyConfig, survivors, dropped=(), fields=FIELDS) -> bytes:
    """A survivor-set signature the aggregator makes itself: under a key no site pins."""
    digest = survivor_digest(ReleaseTag(study.study_hash, *fields), survivors, dropped)
    return sign_survivor_set(Ed25519PrivateKey.generate(), digest)


def as_reveal(study: StudyConfig, name: str, reply: Payload) -> Reveal:
    pairwise = {
        str(peer): bytes(row)
        for peer, row in zip(reply.values.get("peers", []), reply.arrays["pairwise"], strict=True)
    }
    return Reveal(name, tag(study), bytes(reply.arrays["self_seed"]), pairwise)


def tag(study: StudyConfig) -> ReleaseTag:
    return ReleaseTag(study.study_hash, *FIELDS)


def plain_terms(tables, study: StudyConfig, names=SITES) -> dict[str, np.ndarray]:
    """Each site's NEWTON terms as the same tables answer them in a study without masking."""
    clear = study.updated(federation={"secure_aggregation": False})
    agg = Aggregator(site_grid(tables, clear))
    replies = agg.ask(Kind.NEWTON, {n: newton(tables, clear, fields=None) for n in names})
    return {n: flatten(decode_reply(Kind.NEWTON, reply))[0] for n, reply in replies.items()}


def refused(reply: Payload) -> str | None:
    """The refusal code of a reply that carries nothing else, or None."""
    if REFUSED not in reply.values:
        return None
    assert not reply.arrays and set(reply.values) == {REFUSED}, reply
    return str(reply.values[REFUSED])


# -- key substitution ----------------------------------------------------------------------------
def test_an_exchange_key_the_aggregator_signed_under_another_sites_name_is_refused(tables, study):
    agg = Aggregator(site_grid(tables, study))
    keys = agg.keys()
    # The aggregator's own key pair and identity, standing in for site02 towards site01: it
    # would then share site01's pairwise mask with site02 and could strip it.
    impostor, ours = Ed25519PrivateKey.generate(), StudyKeyPair.generate()
    forged = ours.sign(B, study.study_hash.encode(), impostor)
    keys[B] = Payload(
        arrays={
            "public_key": np.frombuffer(forged.public_key, dtype=np.uint8),
            "signature": np.frombuffer(forged.signature, dtype=np.uint8),
            "identity": np.frombuffer(impostor.public_key().public_bytes_raw(), dtype=np.uint8),
        }
    )
    assert refused(agg.relay(keys, to=[A])[A]) == "KeyVerificationError"
    # nothing is masked afterwards, with the forged peer or without it
    for peers in ([B, C], [C]):
        reply = agg.ask_one(Kind.NEWTON, A, newton(tables, study, peers=peers))
        assert refused(reply) is not None
        assert "words" not in reply.arrays


def test_a_genuine_key_relayed_under_another_sites_name_is_refused(tables, study):
    agg = Aggregator(site_grid(tables, study))
    keys = agg.keys()
    keys[B], keys[C] = keys[C], keys[B]  # site03's signed key, relayed as site02's
    replies = agg.relay(keys)
    assert {name: refused(reply) for name, reply in replies.items()} == dict.fromkeys(
        SITES, "KeyVerificationError"
    )


def test_census_counts_the_aggregator_inflates_in_the_relay_are_refused(tables, study):
    """More cases of a class at a peer than it signed would let a short fold pass every
    site's own fold rule (`client/fold_check.py`): the relay is refused whole."""
    agg = Aggregator(site_grid(tables, study))
    keys = agg.keys()
    inflated = [str(int(count) + 100) for count in keys[B].values["cases"]]
    keys[B] = Payload(arrays=keys[B].arrays, values=keys[B].values | {"cases": inflated})
    assert refused(agg.relay(keys, to=[A])[A]) == "peer-counts-unverified"
    reply = agg.ask_one(Kind.NEWTON, A, newton(tables, study, peers=[B, C]))
    assert "words" not in reply.arrays


def test_a_site_whose_identity_the_study_does_not_pin_masks_nothing(tables, study, pins):
    unpinned = study.updated(federation={"site_keys": {n: pins[n] for n in (B, C)}})
    agg = Aggregator(site_grid(tables, unpinned))
    keys = agg.keys()
    assert refused(agg.relay(keys, to=[A])[A]) == "identity-not-pinned"
    reply = agg.ask_one(Kind.NEWTON, A, newton(tables, unpinned, peers=[B, C]))
    assert refused(reply) == "identity-not-pinned"


# -- a faked drop-out ----------------------------------------------------------------------------
def test_a_faked_drop_out_cannot_expose_the_site_it_names(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    # site01's masked value did arrive; with it, each site signed "all three survive"
    words, signed = masked_round(agg, tables, study)
    # and no message asks a site to sign a survivor set the aggregator names afterwards
    assert "query.secagg_sign" not in MESSAGE_TYPES.values()
    # site02 and site03 are told site01 dropped out (to reveal their pairwise seeds with it),
    # with every signature the aggregator can offer: none on that set exists
    other = [0, "newton", 2, "total", 0]  # the sites' genuine signatures of another release
    elsewhere = _mask(agg, study, tables, other, list(SITES), beta=0.3)
    offers = {
        "their-own-on-the-full-set": {n: signed[n] for n in (B, C)},
        "swapped": {B: signed[C], C: signed[B]},
        "of-another-release": {n: elsewhere[n].arrays["survivors"] for n in (B, C)},
        "forged": {n: forged(study, [B, C], [A]) for n in (B, C)},
        "none": {},
    }
    for name in (B, C):
        for offer, signatures in offers.items():
            reply = reveal(agg, name, [B, C], [A], signatures)
            assert refused(reply) == "SurvivorSetError", (name, offer, reply.values)
    # site01 is told everyone survived, which it signed (and so did site02 and site03): it
    # reveals its self seed; told it dropped, it reveals nothing
    genuine = offers["their-own-on-the-full-set"]
    assert refused(reveal(agg, A, [B, C], [A], genuine)) == "RevealRefused"
    told_a = reveal(agg, A, SITES, (), genuine)
    assert refused(told_a) is None
    revealed = as_reveal(study, A, told_a)
    assert revealed.pairwise == {}  # nobody dropped: no pairwise seed leaves site01 either
    # site01's words, stripped of its self mask, still hold its pairwise masks with site02
    # and site03, whose seeds never left them
    residue = words[A] - expand(revealed.self_seed, words[A].size)
    plain = plain_terms(tables, study)
    with pytest.raises(EncodingError):
        FixedPoint(1).decode(residue)
    assert np.mean(residue == FixedPoint.encode(plain[A])) < 0.01
    # uniform words: their mean within 5 standard errors of 1/2 (a chance of 6e-7 to fail)
    assert abs(np.mean(residue / 2.0**64) - 0.5) < 5 * np.sqrt(1 / 12 / residue.size)
    # nor do the others' words give it: their sum still holds those pairwise and self masks
    with pytest.raises(EncodingError):
        FixedPoint(2).decode(words[B] + words[C])


def test_a_reveal_whose_signatures_cover_another_set_is_refused(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    _, signed = masked_round(agg, tables, study)
    other = [0, "newton", 2, "total", 0]
    elsewhere = _mask(agg, study, tables, other, list(SITES), beta=0.3)
    # the set site01 signed, with signatures over other sets: another release's full set,
    # a set naming a site dropped (forged: no site signed one), the set under a foreign key
    offers = {
        "of-another-release": {n: elsewhere[n].arrays["survivors"] for n in (B, C)},
        "dropping-site03": {B: forged(study, [A, B], [C]), C: signed[C]},
        "relabelled": {B: signed[C], C: signed[C]},
        "forged": {n: forged(study, SITES) for n in (B, C)},
        "one-missing": {B: signed[B]},
    }
    for offer, signatures in offers.items():
        reply = reveal(agg, A, SITES, (), signatures)
        assert refused(reply) == "SurvivorSetError", (offer, reply.values)
    # the genuine signatures of this release's set, and only they, get its reveal
    assert refused(reveal(agg, A, SITES, (), {n: signed[n] for n in (B, C)})) is None


def test_a_site_reveals_only_for_the_survivor_set_it_signed_when_it_masked(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    _, signed = masked_round(agg, tables, study)
    for survivors, dropped in (([A, B], [C]), ([A, C], [B])):
        peer = next(n for n in survivors if n != A)
        for signature in (signed[peer], forged(study, survivors, dropped)):
            reply = reveal(agg, A, survivors, dropped, {peer: signature})
            assert refused(reply) == "SurvivorSetError", (survivors, reply.values)
    first = reveal(agg, A, SITES, (), {n: signed[n] for n in (B, C)})
    assert refused(first) is None
    again = reveal(agg, A, SITES, (), {n: signed[n] for n in (B, C)})  # the same, again
    np.testing.assert_array_equal(again.arrays["self_seed"], first.arrays["self_seed"])


def test_a_release_a_site_is_missing_from_is_revealed_by_nobody(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    words, signed = masked_round(agg, tables, study, names=[B, C])  # site01 never answers
    assert refused(reveal(agg, A, SITES, (), signed)) == "RevealRefused"  # it masked nothing
    for name in (B, C):
        # the set they signed lacks site01's signature (a forged one does not verify); a set
        # naming site01 dropped is not the one they signed
        for signatures in (signed, {**signed, A: forged(study, SITES)}):
            assert refused(reveal(agg, name, SITES, (), signatures)) == "SurvivorSetError"
        assert refused(reveal(agg, name, [B, C], [A], signed)) == "SurvivorSetError"
    with pytest.raises(EncodingError):  # so the total of site02 and site03 stays masked
        FixedPoint(2).decode(words[B] + words[C])


# -- release tags ----------------------------------------------------------------------------------
def test_a_release_tag_used_once_is_refused_for_a_second_masked_value(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    first = agg.ask_one(Kind.NEWTON, A, newton(tables, study, peers=[B, C], beta=0.1))
    assert "words" in first.arrays
    second = agg.ask_one(Kind.NEWTON, A, newton(tables, study, peers=[B, C], beta=0.3))
    assert refused(second) == "TagReuseError"
    # the same fields under another kind name the same release: refused too
    calibration = Request(
        parts=[newton(tables, study, fields=None)],
        arrays={"gamma": np.zeros(2)},
        values={"secagg.tag": json.dumps(FIELDS), "secagg.peers": [B, C]},
    )
    assert refused(agg.ask_one(Kind.CALIBRATION, A, calibration)) == "TagReuseError"
    rerun = newton(tables, study, fields=[*FIELDS[:4], 1], peers=[B, C], beta=0.3)
    assert "words" in agg.ask_one(Kind.NEWTON, A, rerun).arrays  # a new attempt is a new tag


@pytest.mark.parametrize(
    "tag_text",
    [
        json.dumps(["0123456789abcdef", *FIELDS]),  # a tag naming a study: the site names its own
        json.dumps([0, "newton", -1, "total", 0]),
        json.dumps([0, "", 1, "total", 0]),
        "newton/1",
    ],
)
def test_an_unreadable_release_tag_is_refused_before_any_work(tables, study, tag_text):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    request = newton(tables, study, peers=[B, C])
    request.values["secagg.tag"] = tag_text
    assert refused(agg.ask_one(Kind.NEWTON, A, request)) == "release-tag-unreadable"


def _switchable_grid(tables, current: list[StudyConfig]) -> FaultyGrid:
    """Sites whose study is whatever `current[0]` is when a message arrives (one node state)."""
    data = {name: SiteData.load(path, name, current[0]) for name, path in tables.items()}
    app = make_client_app(lambda context: (data[str(context.node_config["site-name"])], current[0]))
    return FaultyGrid(app, [{"site-name": name} for name in tables])


def test_a_release_of_another_study_is_not_revealed(tables, study):
    current = [study]
    agg = Aggregator(_switchable_grid(tables, current))
    agg.exchange()
    _, signed = masked_round(agg, tables, study)
    signatures = {n: signed[n] for n in (B, C)}
    current[0] = StudyConfig.model_validate({**study.model_dump(mode="json"), "name": "other"})
    assert current[0].study_hash != study.study_hash
    # the node's state of the first study does not carry over: not its keys...
    assert refused(reveal(agg, A, SITES, (), signatures)) == "no-study-key"
    agg.exchange()
    # ...nor its releases: the same release fields in the other study name none it masked
    assert refused(reveal(agg, A, SITES, (), signatures)) == "RevealRefused"


def test_exchange_keys_signed_for_another_study_are_refused(tables, study):
    current = [study]
    agg = Aggregator(_switchable_grid(tables, current))
    old_keys = agg.keys()
    current[0] = study.updated(validation={"seed": 1})
    new_keys = agg.keys()  # fresh keys for this study; the aggregator relays its peers' old ones
    assert refused(agg.relay(new_keys, to=[A])[A]) is None
    stale = {A: new_keys[A], B: old_keys[B], C: new_keys[C]}
    assert refused(agg.relay(stale, to=[A])[A]) == "KeyVerificationError"


# -- a total of one site ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peers", "min_sites"),
    [(None, 1), ([], 1), ([A], 1), ([B], 3)],
    ids=["no-peers-named", "no-peers", "only-itself", "fewer-than-min-sites"],
)
def test_a_release_among_too_few_sites_is_refused(tables, study, peers, min_sites):
    study = study.updated(federation={"min_sites": min_sites})
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    reply = agg.ask_one(Kind.NEWTON, A, newton(tables, study, peers=peers))
    assert refused(reply) == "RevealRefused"


def test_a_survivor_set_of_one_site_is_not_revealed(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    masked_round(agg, tables, study)
    assert refused(reveal(agg, A, [A], [B, C], {})) == "RevealRefused"
    assert refused(reveal(agg, A, [A], [B, C], {A: forged(study, [A], [B, C])})) == (
        "RevealRefused"
    )


# -- the honest path ---------------------------------------------------------------------------
def test_an_honest_release_unmasks_to_exactly_the_sum_of_the_sites_terms(tables, study):
    # (a release with a site missing is abandoned unrevealed: see
    # test_a_release_a_site_is_missing_from_is_revealed_by_nobody)
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    survivors, dropped = list(SITES), []
    words, signatures = masked_round(agg, tables, study)
    unmasker = Unmasker(tag(study), SITES, words[A].size)
    for name in survivors:
        unmasker.add(name, words[name])
    assert unmasker.close() == (frozenset(survivors), frozenset(dropped))
    masked_sum = np.sum(np.stack([words[n] for n in survivors]), axis=0, dtype=np.uint64)
    with pytest.raises(EncodingError):  # before the reveals, the sum is still masked
        FixedPoint(len(survivors)).decode(masked_sum)
    for name in survivors:
        reply = reveal(agg, name, survivors, dropped, signatures)
        assert refused(reply) is None
        unmasker.apply(as_reveal(study, name, reply))
    total = unmasker.decode(FixedPoint(len(survivors)))
    plain = plain_terms(tables, study, names=survivors)
    np.testing.assert_allclose(total, sum(plain.values()), rtol=1e-9, atol=1e-9)


# -- differencing across releases ------------------------------------------------------------------
def _attempt(n: int) -> list:
    """The release fields of FIELDS' quantity under attempt `n` (a fresh tag)."""
    return [*FIELDS[:4], n]


def _mask(agg, study, tables, fields, names, consents=None, beta: float = 0.1) -> dict:
    """Each named site's reply to one NEWTON release among `names`, with the consents
    (site -> (the quantities it signed for, signature)) of the sites it leaves out."""
    requests = {}
    for name in names:
        request = newton(tables, study, fields, [p for p in names if p != name], beta)
        if consents:
            request.values["secagg.consenters"] = list(consents)
            request.values["secagg.consented"] = [q for q, _ in consents.values()]
            request.arrays["secagg.consents"] = np.array(
                [list(signature) for _, signature in consents.values()], np.uint8
            ).reshape(-1, 64)
        requests[name] = request
    return agg.ask(Kind.NEWTON, requests)


def _unmask(agg, study, fields, replies: dict[str, Payload]) -> np.ndarray:
    """The honest unmasking of one release every site in `replies` masked for."""
    names = list(replies)
    assert not any(map(refused, replies.values())), replies
    release = ReleaseTag(study.study_hash, *fields)
    unmasker = Unmasker(release, names, replies[names[0]].arrays["words"].size)
    for name, reply in replies.items():
        unmasker.add(name, reply.arrays["words"])
    told = {"secagg.tag": json.dumps(fields), "secagg.survivors": sorted(names)}
    request = Request(  # each site signed the release's full set with its masked reply
        arrays={"signatures": np.stack([replies[n].arrays["survivors"] for n in names])},
        values={**told, "secagg.signers": list(names)},
    )
    for name, reply in agg.ask(Kind.SECAGG_REVEAL, dict.fromkeys(names, request)).items():
        assert refused(reply) is None, (name, reply.values)
        unmasker.apply(Reveal(name, release, bytes(reply.arrays["self_seed"]), {}))
    return unmasker.decode(FixedPoint(len(names)))


def _quantity(tables, study, beta: float = 0.1) -> str:
    """The one quantity a NEWTON request at `beta` asks, as a consent names it."""
    return " ".join(quantity_digests(Kind.NEWTON, newton(tables, study, None, beta=beta)))


def _released_among_everyone(agg, tables, study) -> tuple[np.ndarray, tuple[str, bytes]]:
    """FIELDS' quantity released among SITES: its total, and site01's consent to be left out."""
    replies = _mask(agg, study, tables, FIELDS, list(SITES))
    consent = assert_masked_only(
        tables, study, A, Kind.NEWTON, newton(tables, study), replies[A], SITES
    )
    assert len(consent) == 64  # site01 has >= k cases of each class: its share may stand alone
    return _unmask(agg, study, FIELDS, replies), (_quantity(tables, study), consent)


def _other_consents(tables, study, agg: Aggregator) -> dict[str, tuple[str, bytes]]:
    """What an aggregator might pass off as site01's consent to be left out of FIELDS'
    quantity among SITES: (the quantities it claims were signed, the signature)."""
    quantity, own = _quantity(tables, study), load_or_create_identity(tables[A].parent)
    # site01's genuine consent for another quantity (Newton terms at another beta)
    other = _mask(agg, study, tables, [0, "newton", 2, "total", 0], list(SITES), beta=0.3)[A]
    other_quantity, other_consent = (
        _quantity(tables, study, beta=0.3),
        bytes(other.arrays["consent"]),
    )
    assert verify_consent(own.public_key(), other_quantity, SITES, other_consent)
    return {
        "forged": (quantity, sign_consent(Ed25519PrivateKey.generate(), quantity, SITES)),
        "another-quantity": (other_quantity, other_consent),
        "another-quantity-relabelled": (quantity, other_consent),
        # site01's own key, but over another set of sites than the release it left
        "for-other-sites": (quantity, sign_consent(own, quantity, [A, B])),
    }


def test_the_same_quantity_released_among_fewer_sites_without_consent_is_refused(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    _released_among_everyone(agg, tables, study)
    replies = _mask(agg, study, tables, _attempt(1), [B, C])  # site01 left out, unasked
    # refused either as an extra outside the plan or, where it is dropped on the way, as
    # the released quantity it still is
    assert {refused(r) for r in replies.values()} <= {
        "value-outside-plan",
        "released-among-other-sites",
    }
    assert len(replies) == 2


@pytest.mark.parametrize(
    "consent",
    ["forged", "another-quantity", "another-quantity-relabelled", "for-other-sites"],
)
def test_the_same_quantity_released_among_fewer_sites_with_a_false_consent_is_refused(
    tables, study, consent
):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    false = _other_consents(tables, study, agg)[consent]
    _released_among_everyone(agg, tables, study)
    replies = _mask(agg, study, tables, _attempt(1), [B, C], consents={A: false})
    # refused either as an extra outside the plan or, where it is dropped on the way, as
    # the released quantity it still is
    assert {refused(r) for r in replies.values()} <= {
        "value-outside-plan",
        "released-among-other-sites",
    }
    assert len(replies) == 2


def test_a_release_among_fewer_sites_with_the_left_out_sites_consent_differs_by_its_share(
    tables, study
):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    everyone, consent = _released_among_everyone(agg, tables, study)
    others = _unmask(
        agg, study, _attempt(1), _mask(agg, study, tables, _attempt(1), [B, C], {A: consent})
    )
    # the difference is site01's share, in the clear: what site01 consented to, since its
    # share alone meets the per-site rules (as if it had been sent without masking)
    np.testing.assert_allclose(
        everyone - others, plain_terms(tables, study, names=[A])[A], rtol=1e-9, atol=1e-9
    )


def test_a_quantity_released_among_fewer_sites_is_not_released_among_all_again(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    _, consent = _released_among_everyone(agg, tables, study)
    _unmask(agg, study, _attempt(1), _mask(agg, study, tables, _attempt(1), [B, C], {A: consent}))
    replies = _mask(agg, study, tables, _attempt(2), list(SITES))
    assert {n: refused(replies[n]) for n in (B, C)} == dict.fromkeys(
        (B, C), "released-among-other-sites"
    )


def test_the_same_quantity_released_among_more_sites_is_refused(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    replies = _mask(agg, study, tables, FIELDS, [A, B])
    _unmask(agg, study, FIELDS, replies)
    # the total among all three, less the one among site01 and site02, is site03's share
    again = _mask(agg, study, tables, _attempt(1), list(SITES))
    assert {n: refused(r) for n, r in again.items()} == {
        A: "released-among-other-sites",
        B: "released-among-other-sites",
        C: None,  # site03 never released it: it masks, but no total can be unmasked
    }


def test_the_same_quantity_masked_again_among_the_same_sites_is_served(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    everyone, _ = _released_among_everyone(agg, tables, study)
    again = _unmask(agg, study, _attempt(1), _mask(agg, study, tables, _attempt(1), list(SITES)))
    np.testing.assert_allclose(again, everyone, rtol=1e-12, atol=1e-12)  # nothing new learned


def test_an_extra_no_handler_reads_does_not_make_a_released_quantity_new(tables, study):
    agg = Aggregator(site_grid(tables, study))
    agg.exchange()
    _released_among_everyone(agg, tables, study)
    requests = {
        n: newton(tables, study, _attempt(1), [p for p in (B, C) if p != n]) for n in (B, C)
    }
    for request in requests.values():
        request.values["note"] = "the same Newton terms"
    replies = agg.ask(Kind.NEWTON, requests)
    # refused either as an extra outside the plan or, where it is dropped on the way, as
    # the released quantity it still is
    assert {refused(r) for r in replies.values()} <= {
        "value-outside-plan",
        "released-among-other-sites",
    }
    assert len(replies) == 2
