"""What the aggregator sees hides each site: one masked vector, and a faked drop-out."""

import numpy as np
import pytest
from scipy.stats import kstest
from secagg_federation import federation, mask_all, tag

from fedrad.common.secagg import (
    EncodingError,
    FixedPoint,
    RevealRefused,
    SurvivorSetError,
    Unmasker,
    expand,
    verify_survivor_signature,
)
from fedrad.common.secagg.fixedpoint import LIMBS

# 4096 values: |corr| < 0.1 is then 6.4 standard errors, so a chance failure is ~1e-10.
N_VALUES = 4096


def limbs(words: np.ndarray) -> np.ndarray:
    """The words as signed numbers, one row per limb (the encoding is limb-major)."""
    return words.view(np.int64).astype(np.float64).reshape(LIMBS, -1)


def correlations(words: np.ndarray, values: np.ndarray) -> list[float]:
    """Each limb's correlation with the values (nan for a limb that is constant)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return [np.corrcoef(limb, values)[0, 1] for limb in limbs(words)]


def test_a_masked_vector_is_uncorrelated_with_the_sites_values_and_uniform():
    fed = federation(5)
    rng = np.random.default_rng(0)
    values = {
        s: 300 * np.sin(np.arange(N_VALUES) / 50) + rng.normal(0, 10, N_VALUES) for s in fed.names
    }
    fp = FixedPoint(5)
    site = fed.names[2]

    masked = mask_all(fed, values, fp, tag())[site]

    # The encoding alone would give the values away: its middle limb is ~16 x value.
    assert correlations(fp.encode(values[site]), values[site])[1] > 0.999
    assert np.all(np.abs(correlations(masked, values[site])) < 0.1)
    assert kstest(masked / 2.0**64, "uniform").statistic < 0.05
    bits = (masked[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.05)


def test_a_faked_drop_out_leaves_the_sites_value_behind_its_self_mask():
    fed = federation(5)
    rng = np.random.default_rng(1)
    values = {s: rng.uniform(-300, 300, 441) for s in fed.names}
    fp = FixedPoint(5)
    release = tag()
    victim = fed.names[2]
    others = [s for s in fed.names if s != victim]
    masked = mask_all(fed, values, fp, release)
    total_all_masked = np.sum(list(masked.values()), axis=0)  # every pairwise mask cancels

    # The aggregator received everything, then claims the victim dropped.
    n_words = fp.words(441)
    unmasker = Unmasker(release, fed.names, n_words)
    for site in others:
        unmasker.add(site, masked[site])
    survivors, dropped = unmasker.close()
    assert dropped == {victim}
    signatures = {s: fed.sites[s].sign_survivors(release, survivors, dropped) for s in survivors}
    reveals = [fed.sites[s].reveal(release, survivors, dropped, signatures) for s in others]
    for reveal in reveals:
        unmasker.apply(reveal)
    others_total = unmasker.total()
    np.testing.assert_allclose(
        fp.decode(others_total), np.sum([values[s] for s in others], axis=0), rtol=1e-9
    )

    # Its best estimate of the victim: everything it knows taken off the full masked total.
    residual = total_all_masked - others_total
    for reveal in reveals:
        residual -= expand(reveal.self_seed, n_words)
    victim_words = fp.encode(values[victim])
    assert np.mean(residual == victim_words) < 0.01
    assert np.all(np.abs(correlations(residual, values[victim])) < 0.5)
    with pytest.raises(EncodingError, match="unmasking is incomplete"):
        fp.decode(residual)
    # Only b_victim stands between it and the value (read here from the site's own state).
    victim_seed = fed.sites[victim].releases[release.encode()].self_seed
    assert np.array_equal(residual - expand(victim_seed, n_words), victim_words)

    # Asking the victim for b_victim fails: under the others' set it is not a survivor,
    with pytest.raises(RevealRefused, match="not among the survivors"):
        fed.sites[victim].reveal(release, survivors, dropped, signatures)
    # and the others signed a set without it, so "everyone survived" does not verify.
    everyone = fed.names
    fed.sites[victim].sign_survivors(release, everyone, [])
    with pytest.raises(SurvivorSetError, match=r"did not sign the survivor set"):
        fed.sites[victim].reveal(release, everyone, [], signatures)
    # ... and no survivor signs a second set for the same release.
    with pytest.raises(SurvivorSetError, match="already told a different survivor set"):
        fed.sites[others[0]].sign_survivors(release, everyone, [])


def test_a_site_refuses_to_reveal_its_self_seed_and_a_pairwise_seed_for_one_peer():
    fed = federation(4)
    release = tag()
    fp = FixedPoint(4)
    mask_all(fed, {s: np.zeros(8) for s in fed.names}, fp, release)
    site, peer = fed.names[0], fed.names[3]

    # The peer both survives (its b revealed by itself) and is dropped (s_ip wanted).
    with pytest.raises(RevealRefused, match=r"site-00.*'site-03'.*survivor and as dropped"):
        fed.sites[site].sign_survivors(release, fed.names, [peer])
    with pytest.raises(RevealRefused, match="survivor and as dropped"):
        fed.sites[site].reveal(release, fed.names, [peer], {})
    # Asking a site for its own pairwise seeds while calling it dropped.
    with pytest.raises(RevealRefused, match="not among the survivors"):
        fed.sites[site].reveal(release, fed.names[1:], [site], {})


def test_a_site_refuses_survivor_sets_that_would_expose_one_value():
    fed = federation(3)
    release = tag()
    fp = FixedPoint(3)
    mask_all(fed, {s: np.zeros(8) for s in fed.names}, fp, release)
    site = fed.names[0]

    # Everyone else "dropped": b_i and all pairwise seeds of site 0 would be its value.
    with pytest.raises(RevealRefused, match="fewer than 2"):
        fed.sites[site].sign_survivors(release, [site], fed.names[1:])
    # A peer that never took part in the release.
    with pytest.raises(RevealRefused, match="not the release's sites"):
        fed.sites[site].sign_survivors(release, fed.names, ["site-99"])
    with pytest.raises(RevealRefused, match="masked nothing"):
        fed.sites[site].sign_survivors(tag(iteration=7), fed.names, [])


def test_sites_told_different_survivor_sets_refuse_to_reveal():
    fed = federation(5)
    release = tag()
    fp = FixedPoint(5)
    mask_all(fed, {s: np.ones(8) for s in fed.names}, fp, release)
    a, b, c, d, e = fed.names
    told = {a: ([a, b, c, d], [e]), b: ([a, b, c, e], [d])}
    told.update({s: told[a] for s in (c, d)})
    signatures = {s: fed.sites[s].sign_survivors(release, *told[s]) for s in told}

    with pytest.raises(SurvivorSetError, match=r"site-00.*\['site-01'\] did not sign"):
        fed.sites[a].reveal(release, *told[a], signatures)
    with pytest.raises(SurvivorSetError, match=r"site-01.*did not sign"):
        fed.sites[b].reveal(release, *told[b], signatures)
    # A site asked to reveal for a set other than the one it signed refuses too.
    with pytest.raises(SurvivorSetError, match="different survivor set"):
        fed.sites[a].reveal(release, *told[b], signatures)


def test_the_survivor_digest_is_the_same_for_the_aggregator_and_every_site():
    fed = federation(4)
    release = tag()
    fp = FixedPoint(4)
    masked = mask_all(fed, {s: np.ones(8) for s in fed.names}, fp, release)
    unmasker = Unmasker(release, fed.names, fp.words(8))
    for site in reversed(fed.names[:3]):
        unmasker.add(site, masked[site])
    survivors, dropped = unmasker.close()
    signatures = {s: fed.sites[s].sign_survivors(release, survivors, dropped) for s in survivors}

    for site, signature in signatures.items():
        identity = fed.identities[site].public_key()
        assert verify_survivor_signature(identity, unmasker.digest(), signature)
