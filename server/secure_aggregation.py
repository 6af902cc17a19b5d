"""The aggregator's side of secure aggregation: relay the sites' keys, unmask only totals.

Once per study the sites' signed exchange keys are collected and relayed (each checked
against the identity the study pins, so a site that is not pinned is named, not relayed).
Then every SUMMED request is one release in two rounds: the sites' masked replies, each
signed for the one survivor set its site will reveal for (all the release's sites), are
summed; then the survivors' reveals, sent every signature, strip the masks from the total.
A site that drops or refuses in either round is handled by the failure policy: the
release is abandoned unrevealed, the computation restarts, and its releases get new tags.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from fedrad.common.config import StudyConfig
from fedrad.common.messages import (
    KeysReply,
    Kind,
    MalformedReply,
    MaskedReply,
    Request,
    RevealReply,
    quantity_digests,
    unflatten,
)
from fedrad.common.relayed_release import RelayedRelease
from fedrad.common.secagg import (
    EncodingError,
    FixedPoint,
    KeyVerificationError,
    ReleaseTag,
    Reveal,
    SignedKey,
    Unmasker,
    UnmaskError,
    verify,
)
from fedrad.common.secagg.counts import verify_counts
from fedrad.server.federation import Federation, SiteFailed, StudyCannotRun


class SecureAggregation:
    """Totals of SUMMED replies over the sites of one study, never a site's own value."""

    def __init__(self, federation: Federation, study: StudyConfig):
        self.federation, self.study = federation, study
        self.min_sites = max(2, study.federation.min_sites)
        self.releases = 0
        self.last: RelayedRelease | None = None  # the last release, as sites may verify it
        # quantity digest -> (the sites of its last release, their consents to be left out)
        self.released: dict[str, tuple[list[str], dict[str, tuple[str, np.ndarray]]]] = {}

    # -- keys, once per study -------------------------------------------------------------------
    def exchange_keys(self, nodes: list[int]) -> None:
        """Collect each site's signed study key and relay them all to every site."""
        federation = self.federation
        replies, problems = federation.gather(Kind.SECAGG_KEYS, {n: Request() for n in nodes})
        for problem in problems.values():
            federation.set_aside(_as_failure(problem), "key exchange")
        keys: dict[int, KeysReply] = {}
        for node, reply in replies.items():
            reason = self._unverified(node, reply)
            if reason:
                federation.set_aside(SiteFailed(node, reason), "key exchange")
            else:
                keys[node] = reply
        if len(keys) < self.min_sites:
            raise StudyCannotRun(
                f"key exchange: {len(keys)} site(s) have verified keys; secure aggregation "
                f"needs {self.min_sites} (federation.min_sites): {federation.reasons()}"
            )
        relay = Request(
            arrays={
                field: np.stack([getattr(keys[n], field) for n in keys])
                for field in ("public_key", "signature", "identity", "counts_signature")
            },
            values={
                "secagg.sites": [federation.label(n) for n in keys],
                "secagg.cases": [json.dumps(list(keys[n].cases)) for n in keys],
                "secagg.batches": [int(keys[n].batches) for n in keys],
            },
        )
        relay.arrays["public"] = relay.arrays.pop("public_key")
        _, problems = federation.gather(Kind.SECAGG_PEERS, {n: relay for n in keys})
        for problem in problems.values():
            federation.set_aside(_as_failure(problem), "key exchange")

    def _unverified(self, node: int, reply: KeysReply) -> str | None:
        """Why a site's key cannot be relayed (not pinned, or not signed by its identity)."""
        name = self.federation.label(node)
        pinned = self.study.federation.site_keys
        identity = bytes(reply.identity)
        if pinned and pinned.get(name) != identity.hex():
            return (
                f"its identity key is not the one federation.site_keys pins for {name!r} "
                "(the site prints its key with `fedrad site keygen`)"
            )
        signed = SignedKey(
            name, self.study.study_hash.encode(), bytes(reply.public_key), bytes(reply.signature)
        )
        try:
            verify(signed, identity, self.study.study_hash.encode())
        except (KeyVerificationError, ValueError) as exc:
            return f"its study key does not verify ({exc})"
        cases = [str(count) for count in reply.cases]
        try:
            verify_counts(
                identity,
                bytes(reply.counts_signature),
                name,
                self.study.study_hash.encode(),
                cases,
                reply.batches,
            )
        except KeyVerificationError as exc:
            return f"its census counts do not verify ({exc})"
        census = self.federation.sites[node]
        told = [census.cases.get(label, "0") for label in self.study.federation.classes]
        if cases != told or reply.batches != len(census.batches):
            return "the counts it signed for the other sites differ from its census"
        return None

    # -- one release per SUMMED request --------------------------------------------------------
    def total(
        self,
        kind: Kind,
        requests: dict[int, Request],
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The reply of `kind` summed over the requested sites, unmasked from masked replies."""
        federation = self.federation
        if len(requests) < self.min_sites:
            raise StudyCannotRun(
                f"{kind}: a total over {len(requests)} site(s) would show a site's own values; "
                f"secure aggregation needs {self.min_sites} (federation.min_sites)"
            )
        self.releases += 1
        fields = [0, str(kind), self.releases, "total", 0]
        tag = ReleaseTag(self.study.study_hash, *fields)
        names = {node: federation.label(node) for node in requests}
        participants = sorted(names.values())
        quantities = {node: quantity_digests(kind, request) for node, request in requests.items()}
        masked_requests = {
            node: self._with_consents(
                replace(
                    request,
                    values={
                        **request.values,
                        "secagg.tag": json.dumps(fields),
                        "secagg.peers": [names[n] for n in requests if n != node],
                    },
                ),
                quantities[node],
                participants,
            )
            for node, request in requests.items()
        }
        masked = self._ask(kind, masked_requests)
        layout = self._common_layout(kind, masked)
        unmasker = Unmasker(tag, names.values(), next(iter(masked.values())).words.size)
        for node, reply in masked.items():
            try:
                unmasker.add(names[node], reply.words)
            except UnmaskError as exc:
                raise SiteFailed(node, f"malformed update: {exc}") from exc
        survivors, dropped = unmasker.close()
        sets = {
            "secagg.tag": json.dumps(fields),
            "secagg.survivors": sorted(survivors),
            "secagg.dropped": sorted(dropped),
        }
        reveal_request = Request(  # every site signed the full set with its masked reply
            arrays={"signatures": np.stack([masked[n].survivors for n in masked])},
            values={**sets, "secagg.signers": [names[n] for n in masked]},
        )
        reveals: dict[int, RevealReply] = self._ask(
            Kind.SECAGG_REVEAL, {n: reveal_request for n in masked}
        )
        applied: dict[str, Reveal] = {}
        for node, reply in reveals.items():
            pairwise = {
                str(peer): bytes(row)
                for peer, row in zip(reply.peers, reply.pairwise, strict=False)
            }
            applied[names[node]] = Reveal(names[node], tag, bytes(reply.self_seed), pairwise)
            try:
                unmasker.apply(applied[names[node]])
            except UnmaskError as exc:
                raise SiteFailed(node, f"malformed reveal: {exc}") from exc
        try:
            total = unflatten(kind, FixedPoint(len(masked)).decode(unmasker.total()), layout)
        except (EncodingError, MalformedReply) as exc:
            raise StudyCannotRun(
                f"{kind}: the total over {', '.join(sorted(survivors))} did not unmask ({exc}); "
                "a site sent masked words that do not match its reveal"
            ) from exc
        self._keep_consents(masked, quantities, participants)
        self.last = _relayable(fields, names, masked, applied, dropped)
        problem = check(total) if check is not None else None
        if problem:
            raise StudyCannotRun(f"{kind}: the sites' total is malformed: {problem}")
        return total

    def _with_consents(self, request: Request, quantities: list[str], participants: list[str]):
        """The request, with the consents of the sites a repeated quantity now leaves out
        (each site refuses a quantity among fewer sites without them)."""
        consenters, consented, signatures = [], [], []
        for quantity in quantities:
            before, consents = self.released.get(quantity, ([], {}))
            if set(participants) - set(before) and before:
                kind = quantity.split("/", 1)[0]
                raise StudyCannotRun(
                    f"a {kind} total released over {', '.join(before)} would be released again "
                    f"over {', '.join(participants)}: the two totals would give the shares of "
                    "the sites in one and not the other (e.g. leave-one-site-out without "
                    "harmonization); run it with harmonization, or without secure aggregation"
                )
            for site in sorted(set(before) - set(participants)):
                if site not in consents:
                    raise StudyCannotRun(
                        f"{site} left after its share entered released totals, and its share "
                        "alone does not meet the disclosure rules (fewer than "
                        "federation.min_cell_size cases of a class or batch), so a total "
                        "without it would expose that share; rerun the study without it"
                    )
                if site not in consenters:
                    consenters.append(site)
                    consented.append(consents[site][0])
                    signatures.append(consents[site][1])
        if not consenters:
            return request
        return replace(
            request,
            arrays={**request.arrays, "secagg.consents": np.stack(signatures)},
            values={
                **request.values,
                "secagg.consenters": consenters,
                "secagg.consented": consented,
            },
        )

    def _keep_consents(self, masked, quantities, participants: list[str]) -> None:
        """Remember who took part in each quantity's release, and who consented to being
        left out of a later one."""
        for node, reply in masked.items():
            name = self.federation.label(node)
            joined = " ".join(quantities[node])
            for quantity in quantities[node]:
                before, consents = self.released.get(quantity, ([], {}))
                if before != participants:
                    consents = {}
                if reply.consent.size:
                    consents[name] = (joined, reply.consent)
                self.released[quantity] = (participants, consents)

    def _ask(self, kind: Kind, requests: dict[int, Request]) -> dict[int, Any]:
        """Every site's reply, or the first problem raised (a release with a site missing is
        abandoned unrevealed: the failure policy restarts it under new tags)."""
        replies = self.federation.ask(kind, requests)
        if kind is not Kind.SECAGG_REVEAL:
            for node, reply in replies.items():
                if not isinstance(reply, MaskedReply):
                    raise SiteFailed(node, f"sent its {kind} reply in the clear, not masked")
        return replies

    def _common_layout(self, kind: Kind, masked: dict[int, MaskedReply]) -> list:
        """The layout every site's masked reply shares, each signed for its survivor set."""
        nodes = list(masked)
        layout = masked[nodes[0]].layout
        for node in nodes:
            if masked[node].survivors.shape != (64,):
                raise SiteFailed(node, f"malformed update: its masked {kind} reply is unsigned")
        for node in nodes[1:]:
            if (
                masked[node].layout != layout
                or masked[node].words.size != masked[nodes[0]].words.size
            ):
                raise SiteFailed(
                    node,
                    f"malformed update: its masked {kind} reply is laid out unlike "
                    f"{self.federation.label(nodes[0])}'s",
                )
        return layout


def _relayable(fields, names, masked, reveals: dict[str, Reveal], dropped) -> RelayedRelease:
    """A release as the aggregator unmasked it, for the sites to recompute its total."""
    signed = {names[n]: (reply.words, bytes(reply.words_signature)) for n, reply in masked.items()}
    return RelayedRelease(
        list(fields),
        sorted(signed),
        sorted(dropped),
        {name: words for name, (words, _) in signed.items()},
        {name: signature for name, (_, signature) in signed.items()},
        {name: reveal.self_seed for name, reveal in reveals.items()},
        {name: dict(reveal.pairwise) for name, reveal in reveals.items()},
    )


def _as_failure(problem: Exception) -> SiteFailed:
    if isinstance(problem, SiteFailed):
        return problem
    return SiteFailed(problem.node_id, str(problem))
