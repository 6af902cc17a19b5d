"""The unmasked total equals the float sum, with and without drop-outs, at 1e-9 relative."""

import numpy as np
import pytest
from secagg_federation import federation, mask_all, secure_sum, tag, unmask

from fedrad.common.secagg import FixedPoint, Reveal, SiteMasker, Unmasker, UnmaskError

N_FEATURES = 20  # + intercept: a 21 x 21 Hessian
CASES_PER_SITE = 1500  # the study's case cap
CLIP = 5.0  # standardized features clipped to +-5


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def site_design(rng: np.random.Generator, n_cases: int, shift: float):
    x = np.clip(rng.standard_normal((n_cases, N_FEATURES)) + shift, -CLIP, CLIP)
    x = np.hstack([np.ones((n_cases, 1)), x])
    true_beta = np.linspace(-1.0, 1.0, N_FEATURES + 1)
    y = (rng.random(n_cases) < 1 / (1 + np.exp(-x @ true_beta))).astype(float)
    return x, y


def newton_parts(x: np.ndarray, y: np.ndarray, beta: np.ndarray):
    """A site's logistic-regression Hessian X'WX and score X'(y - p) at beta."""
    p = 1 / (1 + np.exp(-x @ beta))
    return (x * (p * (1 - p))[:, None]).T @ x, x.T @ (y - p)


def test_five_site_hessian_total_equals_the_float_sum_to_1e_9():
    rng = np.random.default_rng(0)
    fed = federation(5)
    hessians = {}
    for i, site in enumerate(fed.names):
        x, y = site_design(rng, CASES_PER_SITE - 100 * i, shift=0.1 * i)
        hessians[site] = newton_parts(x, y, np.zeros(N_FEATURES + 1))[0].ravel()
    assert 200 < np.max(np.abs(hessians[fed.names[0]])) < 500  # magnitude ~300
    fp = FixedPoint(5)

    total = secure_sum(fed, hessians, fp, tag("hessian"))

    assert relative_error(total, np.sum(list(hessians.values()), axis=0)) < 1e-9


def test_fifty_site_total_equals_the_float_sum_to_1e_9():
    rng = np.random.default_rng(1)
    fed = federation(50)
    values = {s: rng.uniform(-300, 300, 441) for s in fed.names}
    fp = FixedPoint(50)

    total = secure_sum(fed, values, fp, tag("hessian"))

    assert relative_error(total, np.sum(list(values.values()), axis=0)) < 1e-9


def test_total_after_drop_outs_equals_the_survivors_float_sum():
    rng = np.random.default_rng(2)
    fed = federation(50)
    values = {s: rng.uniform(-300, 300, 441) for s in fed.names}
    gone = (fed.names[0], fed.names[17], fed.names[49])
    fp = FixedPoint(50)

    total = secure_sum(fed, values, fp, tag("hessian"), dropped=gone)

    want = np.sum([v for s, v in values.items() if s not in gone], axis=0)
    assert relative_error(total, want) < 1e-9


def test_radiomic_sums_and_tiny_gradients_share_one_release_without_a_bound():
    rng = np.random.default_rng(5)
    fed = federation(5)
    gone = (fed.names[3],)
    values = {
        s: np.concatenate(
            [rng.uniform(1e18, 1e20, 50), -rng.uniform(1e18, 1e20, 50), rng.normal(0, 1e-12, 50)]
        )
        for s in fed.names
    }
    fp = FixedPoint(5)

    total = secure_sum(fed, values, fp, tag("sums"), dropped=gone)

    want = np.sum([v for s, v in values.items() if s not in gone], axis=0)
    # Large entries keep their float precision; tiny ones are off by 2^-53 per site at most,
    # against magnitudes ~1e-12.
    np.testing.assert_allclose(total, want, rtol=1e-15, atol=4 * 2.0**-53)


def test_federated_newton_coefficients_equal_the_pooled_ones_to_1e_9():
    rng = np.random.default_rng(3)
    fed = federation(5)
    data = {s: site_design(rng, CASES_PER_SITE - 50 * i, 0.2 * i) for i, s in enumerate(fed.names)}
    x_all = np.vstack([x for x, _ in data.values()])
    y_all = np.concatenate([y for _, y in data.values()])
    fp = FixedPoint(5)
    federated = pooled = np.zeros(N_FEATURES + 1)
    for iteration in range(4):
        parts = {s: newton_parts(x, y, federated) for s, (x, y) in data.items()}
        hessians = {s: h.ravel() for s, (h, _) in parts.items()}
        scores = {s: g for s, (_, g) in parts.items()}
        hessian = secure_sum(fed, hessians, fp, tag("hessian", iteration))
        hessian = hessian.reshape(N_FEATURES + 1, N_FEATURES + 1)
        score = secure_sum(fed, scores, fp, tag("score", iteration))
        federated = federated + np.linalg.solve(hessian, score)
        pooled_hessian, pooled_score = newton_parts(x_all, y_all, pooled)
        pooled = pooled + np.linalg.solve(pooled_hessian, pooled_score)

    np.testing.assert_allclose(federated, pooled, rtol=1e-9, atol=0)


def test_the_total_waits_for_every_survivors_reveal():
    fed = federation(3)
    release = tag()
    values = {s: np.full(4, 1.0) for s in fed.names}
    fp = FixedPoint(3)
    masked = mask_all(fed, values, fp, release)
    unmasker = Unmasker(release, fed.names, fp.words(4))
    for site, words in masked.items():
        unmasker.add(site, words)
    survivors, dropped = unmasker.close()
    signatures = {s: fed.sites[s].sign_survivors(release, survivors, dropped) for s in survivors}
    unmasker.apply(fed.sites[fed.names[0]].reveal(release, survivors, dropped, signatures))

    with pytest.raises(UnmaskError, match="site-01"):
        unmasker.total()
    with pytest.raises(UnmaskError, match="after the survivor set closed"):
        unmasker.add(fed.names[1], masked[fed.names[1]])


def test_a_reveal_without_the_seed_of_a_dropped_peer_is_refused():
    fed = federation(3)
    release = tag()
    fp = FixedPoint(3)
    masked = mask_all(fed, {s: np.ones(4) for s in fed.names}, fp, release)
    survivors = fed.names[:2]
    dropped = fed.names[2:]
    unmasker = Unmasker(release, fed.names, fp.words(4))
    for site in survivors:
        unmasker.add(site, masked[site])
    unmasker.close()
    signatures = {s: fed.sites[s].sign_survivors(release, survivors, dropped) for s in survivors}
    honest = fed.sites[survivors[0]].reveal(release, survivors, dropped, signatures)
    partial = Reveal(honest.site, honest.tag, honest.self_seed, {})

    with pytest.raises(UnmaskError, match="not for the dropped"):
        unmasker.apply(partial)


def test_an_honest_unmasking_reproduces_every_release_exactly_in_words():
    fed = federation(4)
    release = tag()
    rng = np.random.default_rng(4)
    values = {s: rng.uniform(-1, 1, 64) for s in fed.names}
    fp = FixedPoint(4)
    masked = mask_all(fed, values, fp, release)

    words = unmask(fed, masked, fed.names, release).total()

    assert np.array_equal(words, np.sum([fp.encode(v) for v in values.values()], axis=0))


def test_a_masker_rebuilt_from_its_verified_peers_masks_as_the_one_that_verified_them():
    fed = federation(3)
    first = fed.names[0]
    rebuilt = SiteMasker.from_verified(
        first, fed.identities[first], fed.sites[first].verified_peers()
    )
    assert rebuilt.peers == fed.sites[first].peers
    fed.sites[first] = rebuilt  # the site as it is rebuilt from its context for a message
    values = {site: np.arange(4.0) + i for i, site in enumerate(fed.names)}
    total = secure_sum(fed, values, FixedPoint(3), tag("rebuilt"))
    np.testing.assert_allclose(total, sum(values.values()), rtol=0, atol=1e-12)
