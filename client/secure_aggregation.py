"""A site's part in secure aggregation: its study key, its masked replies, its reveals.

Every SUMMED reply leaves the site only as fixed-point words under pairwise masks (which
cancel in the total) and a fresh self mask (revealed only for a survivor set every
survivor signed), so the aggregator learns totals over sites and nothing of one site.
What the site must remember between messages of a run (its study key, its peers' verified
keys, the tags it used, its unrevealed releases) lives in the node's Flower context state;
what it revealed, and among which sites, in its ledger, across runs (`ledger`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flwr.app import ConfigRecord, RecordDict

from fedrad.client.data import SiteData
from fedrad.client.fold_check import counts_from_text, counts_to_text, own_counts, short_part
from fedrad.client.ledger import site_ledger
from fedrad.common.config import StudyConfig
from fedrad.common.messages import (
    Empty,
    KeysReply,
    Kind,
    MaskedReply,
    Request,
    RevealReply,
    flatten,
    quantity_digests,
)
from fedrad.common.secagg import (
    FixedPoint,
    ReleaseTag,
    SecAggError,
    SignedKey,
    SiteMasker,
    StudyKeyPair,
    TagLedger,
)
from fedrad.common.secagg.consent import sign_consent, verify_consent
from fedrad.common.secagg.counts import sign_counts, verify_counts
from fedrad.common.secagg.site import Release
from fedrad.common.secagg.verified_total import sign_words
from fedrad.common.stats.fold_bounds import SiteCounts

_STATE = "secagg"
# Releases are revealed a round or two after they are masked; older ones are forgotten.
RELEASES_KEPT = 16


class SecAggRefused(Exception):
    """A secure-aggregation request this site will not serve; `code` is all the aggregator
    is told, the detail stays in the site's log."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


def study_key(study: StudyConfig) -> bytes:
    """What a site's exchange key and every release tag are bound to: this study."""
    return study.study_hash.encode()


def release_tag(study: StudyConfig, values: dict) -> ReleaseTag:
    """The release a request names (`secagg.tag`: fit, phase, iteration, quantity, attempt),
    in this site's own study; a tag of another study is refused."""
    try:
        fit, phase, iteration, quantity, attempt = json.loads(str(values["secagg.tag"]))
        return ReleaseTag(
            study.study_hash, int(fit), str(phase), int(iteration), str(quantity), int(attempt)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SecAggRefused("release-tag-unreadable", f"release tag: {exc}") from exc


class SiteSecAgg:
    """One site's secure-aggregation state, read from and written back to its context."""

    def __init__(self, state: RecordDict, data: SiteData, study: StudyConfig):
        self.data, self.study = data, study
        record = state[_STATE] if _STATE in state else ConfigRecord()
        self.state, self.record = state, record
        if record.get("study") != study.study_hash:
            record.clear()  # a new study: nothing of another study's keys or releases applies

    def save(self) -> None:
        self.record["study"] = self.study.study_hash
        self.state[_STATE] = self.record

    # -- keys ---------------------------------------------------------------------------------
    def new_keys(self) -> KeysReply:
        keys = StudyKeyPair.generate()
        self.record["exchange"] = keys.private_key.private_bytes_raw()
        self.record["verified"] = "{}"  # secrets of the old key are of no use now
        self.save()
        signed = keys.sign(self.data.name, study_key(self.study), self.data.identity)
        identity = self.data.identity.public_key().public_bytes_raw()
        counts = own_counts(self.data, self.study)
        cases = list(counts.cases.values())  # in the study's class order, as the census
        counts_signature = sign_counts(
            self.data.identity, self.data.name, study_key(self.study), cases, counts.batches
        )
        return KeysReply(
            _bytes(signed.public_key),
            _bytes(signed.signature),
            _bytes(identity),
            cases,
            counts.batches,
            _bytes(counts_signature),
        )

    def set_peers(self, request: Request) -> Empty:
        """Verify every relayed key against the study's pins (or, where the study pins none,
        the identities relayed with them) and keep them; one bad key refuses them all."""
        names = [str(name) for name in request.values.get("secagg.sites", [])]
        arrays = request.arrays
        try:
            signed = [
                {
                    "site": name,
                    "public": bytes(arrays["public"][i]).hex(),
                    "signature": bytes(arrays["signature"][i]).hex(),
                    "identity": bytes(arrays["identity"][i]).hex(),
                }
                for i, name in enumerate(names)
            ]
        except (KeyError, IndexError) as exc:
            raise SecAggRefused("peer-keys-unreadable", f"relayed keys: {exc}") from exc
        masker = self._verifying_masker(signed)  # verifies every key, or raises
        verified = masker.verified_peers()
        identities = {peer: identity for peer, (_, identity) in verified.items()}
        own = self.data.identity.public_key().public_bytes_raw()
        counts = self._verified_counts(names, request, identities | {self.data.name: own})
        self.record["verified"] = json.dumps(
            {peer: [s.hex(), i.hex()] for peer, (s, i) in verified.items()}
        )
        self.record["counts"] = counts_to_text(counts)
        self.save()
        return Empty()

    def _verified_counts(
        self, names: list[str], request: Request, identities: Mapping[str, bytes]
    ) -> dict[str, SiteCounts]:
        """Every relayed site's census counts, each checked against its identity's signature."""
        classes = self.study.federation.classes
        try:
            cases = [json.loads(str(text)) for text in request.values["secagg.cases"]]
            batches = [int(n) for n in request.values["secagg.batches"]]
            signatures = [bytes(row) for row in request.arrays["counts_signature"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SecAggRefused("peer-counts-unreadable", f"relayed counts: {exc}") from exc
        counts = {}
        for name, site_cases, site_batches, signature in zip(
            names, cases, batches, signatures, strict=False
        ):
            identity = identities.get(name)
            if identity is None or len(site_cases) != len(classes):
                raise SecAggRefused("peer-counts-unreadable", f"counts relayed for {name!r}")
            try:
                verify_counts(
                    identity,
                    signature,
                    name,
                    study_key(self.study),
                    site_cases,
                    site_batches,
                )
            except SecAggError as exc:
                raise SecAggRefused("peer-counts-unverified", str(exc)) from exc
            counts[name] = SiteCounts(dict(zip(classes, site_cases, strict=True)), site_batches)
        return counts

    def masker(self) -> SiteMasker:
        """This site's masker over the peers it verified when they were relayed."""
        self._check_own_pin()
        return SiteMasker.from_verified(
            self.data.name,
            self.data.identity,
            _verified_peers(str(self.record.get("verified", "{}"))),
            min_survivors=max(2, self.study.federation.min_sites),
            ledger=TagLedger(bytes.fromhex(t) for t in self.record.get("ledger", [])),
            releases=_releases_from(str(self.record.get("releases", "{}"))),
        )

    def _check_own_pin(self) -> None:
        if "exchange" not in self.record:
            raise SecAggRefused("no-study-key", "masking asked before this site made its study key")
        pinned = self.study.federation.site_keys
        own = self.data.identity.public_key().public_bytes_raw().hex()
        if pinned and pinned.get(self.data.name) != own:
            raise SecAggRefused(
                "identity-not-pinned",
                f"this site's identity key {own} is not the one the study pins for "
                f"{self.data.name!r}",
            )

    def _verifying_masker(self, peers: list[dict]) -> SiteMasker:
        """A masker over the relayed keys, each verified against the study's pins (or, where
        the study pins none, the identities relayed with them)."""
        self._check_own_pin()
        pinned = self.study.federation.site_keys
        trusted = pinned or {peer["site"]: peer["identity"] for peer in peers}
        signed = [
            SignedKey(
                peer["site"],
                study_key(self.study),
                bytes.fromhex(peer["public"]),
                bytes.fromhex(peer["signature"]),
            )
            for peer in peers
        ]
        keys = StudyKeyPair(X25519PrivateKey.from_private_bytes(bytes(self.record["exchange"])))
        return SiteMasker(
            self.data.name,
            self.data.identity,
            keys,
            study_key(self.study),
            {name: bytes.fromhex(key) for name, key in trusted.items()},
            signed,
            min_survivors=max(2, self.study.federation.min_sites),
        )

    def keep(self, masker: SiteMasker) -> None:
        self.record["ledger"] = sorted(tag.hex() for tag in masker.ledger.used)
        recent = dict(list(masker.releases.items())[-RELEASES_KEPT:])
        self.record["releases"] = _releases_to(recent)
        self.save()

    # -- releases -----------------------------------------------------------------------------
    def mask(self, kind: Kind, reply, request: Request, alone_ok: bool) -> MaskedReply:
        """`reply` as masked fixed-point words for the release the request names, if this
        site never revealed the same quantity among other sites (see `_check_repeat`);
        with this site's consent to be left out later when its share is `alone_ok`."""
        tag = release_tag(self.study, request.values)
        peers = [str(p) for p in request.values.get("secagg.peers", []) if str(p) != self.data.name]
        participants = sorted({*peers, self.data.name})
        masker = self.masker()
        quantities = quantity_digests(kind, request)
        released = site_ledger(self.state).current().released
        for quantity in quantities:
            self._check_repeat(quantity, participants, released.get(quantity), request)
        vector, layout = flatten(reply)
        words = masker.mask(FixedPoint(len(participants)).encode(vector), tag, peers)
        self._check_fold_rule(request, participants)  # before anything of it is kept
        # signed now, for the one survivor set it will reveal for: all of them (so an
        # aggregator cannot later tell it, or them, that a site dropped)
        survivors = masker.sign_survivors(tag, participants, [])
        pending = json.loads(str(self.record.get("pending", "{}")))
        # each quantity with the sites it was released among when this check passed
        pending[tag.encode().hex()] = {quantity: released.get(quantity) for quantity in quantities}
        self.record["pending"] = json.dumps(dict(list(pending.items())[-RELEASES_KEPT:]))
        self.keep(masker)
        consent = b""
        if alone_ok:
            consent = sign_consent(self.data.identity, _joined(quantities), participants)
        signed = sign_words(self.data.identity, tag, participants, [], words)
        return MaskedReply(words, layout, _bytes(survivors), _bytes(consent), _bytes(signed))

    def _check_fold_rule(self, request: Request, participants: list[str]) -> None:
        """Refuse a share of a total whose fold test parts, over its sites, may hold fewer
        than k of a class (`fold_check.py`): the aggregator's rule, not taken on trust."""
        counts = counts_from_text(str(self.record.get("counts", "{}")))
        short = short_part(self.study, request, participants, counts)
        if isinstance(short, str):
            raise SecAggRefused("peer-counts-unknown", f"no signed counts of {short!r}")
        if short is not None:
            which = "inner fold" if short.inner else "fold"
            raise SecAggRefused(
                "fold-below-k",
                f"{which} {short.fold + 1}'s test part may hold {short.held} {short.label} "
                f"cases over {', '.join(participants)}",
            )

    def _check_repeat(
        self, quantity: str, participants: list[str], before: list[str] | None, request: Request
    ) -> None:
        """Refuse a quantity released before among other sites: the two totals would give
        the shares of the sites in one and not the other. Fewer sites are allowed when each
        one left out consented, for that release, to its share being known alone."""
        if before is None or before == participants:
            return
        left_out = sorted(set(before) - set(participants))
        if set(participants) - set(before):
            raise SecAggRefused(
                "released-among-other-sites",
                f"{quantity} was released among {before}; now asked among {participants}",
            )
        values = request.values
        consents = {
            str(site): (str(quantities), bytes(signature))
            for site, quantities, signature in zip(
                values.get("secagg.consenters", []),
                values.get("secagg.consented", []),
                request.arrays.get("secagg.consents", []),
                strict=False,
            )
        }
        identities = self._identities()
        for site in left_out:
            quantities, signature = consents.get(site, ("", b""))
            if (
                site not in identities
                or quantity not in quantities.split(" ")
                or not verify_consent(identities[site], quantities, before, signature)
            ):
                raise SecAggRefused(
                    "released-among-other-sites",
                    f"{quantity} was released among {before}; {site} did not consent to "
                    "being left out",
                )

    def _identities(self) -> dict[str, Ed25519PublicKey]:
        """The identity keys of the peers this site verified: whose consents it accepts."""
        verified = _verified_peers(str(self.record.get("verified", "{}")))
        return {peer: identity for peer, (_, identity) in verified.items()}

    def identities(self) -> dict[str, Ed25519PublicKey]:
        """Whose signed words this site accepts in a relayed release: its verified peers'
        identity keys and its own."""
        return self._identities() | {self.data.name: self.data.identity.public_key()}

    def reveal(self, request: Request) -> RevealReply:
        tag = release_tag(self.study, request.values)
        signers = [str(name) for name in request.values.get("secagg.signers", [])]
        signatures = {
            name: bytes(row)
            for name, row in zip(signers, request.arrays.get("signatures", []), strict=False)
        }
        masker = self.masker()
        survivors, dropped = _sets(request.values)
        checked = json.loads(str(self.record.get("pending", "{}"))).get(tag.encode().hex(), {})
        ledger = site_ledger(self.state)
        released = ledger.current().released
        _check_unchanged(checked, released, sorted(survivors))
        reveal = masker.reveal(tag, survivors, dropped, signatures)
        # once revealed, the total may be known: the quantity counts as released among
        # them, on disk before the seeds leave (a repeat among the same sites adds nothing)
        fresh = [quantity for quantity in checked if released.get(quantity) != sorted(survivors)]
        if fresh:
            ledger.record({"released": fresh, "sites": sorted(survivors)})
        self.keep(masker)
        peers = sorted(reveal.pairwise)
        pairwise = np.array([list(reveal.pairwise[p]) for p in peers], dtype=np.uint8).reshape(
            -1, 32
        )
        return RevealReply(_bytes(reveal.self_seed), pairwise, peers)


@functools.lru_cache(maxsize=256)
def _verified_peers(text: str) -> Mapping[str, tuple[bytes, Ed25519PublicKey]]:
    """Each verified peer's shared secret and identity key, from the state's JSON of them.
    Parsed once per process: it is set when the keys are relayed, and every message of
    the study rebuilds the masker from it."""
    return MappingProxyType(
        {
            peer: (bytes.fromhex(secret), Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)))
            for peer, (secret, key) in json.loads(text).items()
        }
    )


def _check_unchanged(
    checked: dict[str, list[str] | None], released: dict[str, list[str]], survivors: list[str]
) -> None:
    """Refuse to reveal a quantity released among other sites since it was masked (with the
    sites `checked` names): two releases masked before either is revealed would otherwise
    both pass `_check_repeat`."""
    for quantity, before in checked.items():
        if released.get(quantity) not in (before, survivors):
            raise SecAggRefused(
                "released-among-other-sites",
                f"{quantity} was released among {released[quantity]} after it was masked "
                f"among {survivors}",
            )


def _sets(values: dict) -> tuple[list[str], list[str]]:
    survivors = [str(s) for s in values.get("secagg.survivors", [])]
    dropped = [str(s) for s in values.get("secagg.dropped", [])]
    return survivors, dropped


def _joined(quantities: list[str]) -> str:
    """The quantities of one release as one consent covers them."""
    return " ".join(quantities)


def _bytes(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).copy()


def _releases_to(releases: dict[bytes, Release]) -> str:
    return json.dumps(
        {
            key.hex(): {
                "self": release.self_seed.hex(),
                "participants": sorted(release.participants),
                "signed": release.signed_digest.hex() if release.signed_digest else None,
            }
            for key, release in releases.items()
        }
    )


def _releases_from(text: str) -> dict[bytes, Release]:
    return {
        bytes.fromhex(key): Release(
            bytes.fromhex(entry["self"]),
            frozenset(entry["participants"]),
            bytes.fromhex(entry["signed"]) if entry["signed"] else None,
        )
        for key, entry in json.loads(text).items()
    }


Handler = Callable[[SiteSecAgg, Request], object]
SECAGG_HANDLERS: dict[Kind, Handler] = {
    Kind.SECAGG_KEYS: lambda site, _request: site.new_keys(),
    Kind.SECAGG_PEERS: SiteSecAgg.set_peers,
    Kind.SECAGG_REVEAL: SiteSecAgg.reveal,
}

__all__ = ["SECAGG_HANDLERS", "SecAggError", "SecAggRefused", "SiteSecAgg", "release_tag"]
