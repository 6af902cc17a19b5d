"""A site recomputes a release's total from the survivors' signed masked words and their
reveals: exactly the aggregator's total when both are honest (drop-outs included), and
refused when the aggregator forges a peer's words, leaves a survivor out, or alters a
revealed seed (its total stays masked, which decoding refuses)."""

import numpy as np
import pytest
from secagg_federation import federation, mask_all, tag, unmask

from fedrad.common.secagg import EncodingError, FixedPoint, Reveal
from fedrad.common.secagg.verified_total import UnverifiedTotal, sign_words, verified_total

SITES = 5


def honest_release(dropped=()):
    """Masked words, word signatures, reveals and the aggregator's total of one release."""
    rng = np.random.default_rng(7)
    fed = federation(SITES)
    values = {s: rng.uniform(-3, 3, 355) for s in fed.names}
    fp, release = FixedPoint(SITES), tag("mlp-round")
    masked = mask_all(fed, values, fp, release)
    arrived = {s: w for s, w in masked.items() if s not in dropped}
    survivors = sorted(arrived)
    signatures = {
        s: sign_words(fed.identities[s], release, survivors, dropped, arrived[s]) for s in arrived
    }
    # the reveals the aggregator applied, as each survivor gave them
    unmasker = unmask(fed, arrived, fed.names, release)
    reveals = [fed.sites[s].releases[release.encode()].reveal for s in survivors]
    identities = {s: k.public_key() for s, k in fed.identities.items()}
    return fed, release, survivors, arrived, signatures, identities, reveals, unmasker, values


@pytest.mark.parametrize("dropped", [(), ("site-03",)])
def test_a_site_recomputes_exactly_the_aggregators_total(dropped):
    fed, release, alive, words, signed, identities, reveals, unmasker, values = honest_release(
        dropped
    )
    total = verified_total(release, alive, dropped, words, signed, identities, reveals)
    assert np.array_equal(total, unmasker.total())
    want = np.sum([v for s, v in values.items() if s not in dropped], axis=0)
    np.testing.assert_allclose(FixedPoint(SITES).decode(total), want, rtol=0, atol=1e-12)


def test_words_the_aggregator_forged_for_a_peer_are_refused():
    fed, release, alive, words, signed, identities, reveals, _, _ = honest_release()
    shifted = dict(words)
    shifted["site-02"] = words["site-02"] + FixedPoint.encode(np.full(355, 0.5))
    with pytest.raises(UnverifiedTotal, match="'site-02' are not signed by that site"):
        verified_total(release, alive, [], shifted, signed, identities, reveals)
    # nor does signing them with another identity (the aggregator's own) pass as the peer's
    forged = dict(signed)
    forged["site-02"] = sign_words(
        fed.identities["site-01"], release, alive, [], shifted["site-02"]
    )
    with pytest.raises(UnverifiedTotal, match="'site-02'"):
        verified_total(release, alive, [], shifted, forged, identities, reveals)


def test_words_signed_for_another_release_or_survivor_set_are_refused():
    fed, release, alive, words, signed, identities, reveals, _, _ = honest_release()
    with pytest.raises(UnverifiedTotal, match="not signed"):
        verified_total(tag("mlp-round", iteration=1), alive, [], words, signed, identities, [])
    with pytest.raises(UnverifiedTotal, match="not signed"):
        verified_total(release, alive, ["site-09"], words, signed, identities, reveals)


def test_a_survivor_left_out_or_a_reveal_altered_is_refused():
    fed, release, alive, words, signed, identities, reveals, _, _ = honest_release()
    fewer = {s: w for s, w in words.items() if s != "site-04"}
    with pytest.raises(UnverifiedTotal, match="not for its survivors"):
        verified_total(release, alive, [], fewer, signed, identities, reveals)
    with pytest.raises(UnverifiedTotal, match="lacks the reveals"):
        verified_total(release, alive, [], words, signed, identities, reveals[1:])
    altered = [Reveal(r.site, r.tag, bytes(32), r.pairwise) for r in reveals[:1]]
    total = verified_total(release, alive, [], words, signed, identities, altered + reveals[1:])
    with pytest.raises(EncodingError, match="incomplete"):
        FixedPoint(SITES).decode(total)  # what a site does next: refused, not decoded
