"""ComBat against neuroCombat 0.2.12, d-ComBat against centralized ComBat (docs/methods.md §6).

Data are patients x features here and G x n for neuroCombat, hence the transposes. neuroCombat
gets float64 arrays, string batch labels and integer ages: it casts continuous covariates to
float32 (§5), which integers survive exactly.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import operator
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from fedrad.common.harmonization.combat import (
    CombatEstimates,
    apply_label_free,
    apply_with_covariates,
    batch_levels,
    combat,
    covariate_matrix,
    fit_new_batches,
    pooled_batch_effects,
    pooled_ols,
    pooled_variance,
    site_batch_moments,
    site_harmonize,
    site_ols_sums,
    site_ssr,
    split_batches,
)

# The package re-exports the function under the module's name, hiding the module itself.
nc = importlib.import_module("neuroCombat.neuroCombat")

METHODS = {
    "parametric": {},
    "nonparametric": {"parametric": False},
    "no_eb": {"eb": False},
    "mean_only": {"mean_only": True},
    "mean_only_nonparametric": {"mean_only": True, "parametric": False},
}


def simulate(sizes: dict[str, int], n_features: int, seed: int) -> dict[str, np.ndarray]:
    """Features around 5-10 with batch location/scale effects, sex, age and an imbalanced dx."""
    rng = np.random.default_rng(seed)
    batch = np.concatenate([[name] * size for name, size in sizes.items()])
    n = len(batch)
    prevalence = dict(zip(sizes, np.linspace(0.2, 0.7, len(sizes)), strict=True))
    dx = np.where(rng.random(n) < [prevalence[b] for b in batch], "HGG", "MET")
    sex = rng.choice(["F", "M"], n)
    age = rng.integers(25, 85, n).astype(np.float64)
    codes = np.unique(batch, return_inverse=True)[1]
    shift = rng.normal(0.0, 0.7, (len(sizes), n_features))
    scale = rng.uniform(0.6, 1.8, (len(sizes), n_features))
    Y = (
        rng.uniform(5.0, 10.0, n_features)
        + 0.02 * (age[:, None] - 55.0) * rng.normal(1.0, 0.3, n_features)
        + 0.4 * (sex == "M")[:, None]
        + 0.8 * (dx == "HGG")[:, None] * rng.normal(1.0, 0.5, n_features)
        + shift[codes]
        + scale[codes] * rng.normal(0.0, 1.0, (n, n_features))
    )
    return {"Y": Y, "batch": batch, "sex": sex, "age": age, "dx": dx}


def run_neurocombat(data: dict, categorical: list[str], continuous: list[str], **method) -> dict:
    covars = pd.DataFrame({key: data[key] for key in ["batch", *categorical, *continuous]})
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints progress
        return nc.neuroCombat(
            data["Y"].T.copy(), covars, "batch", categorical, continuous, **method
        )


def assert_close(actual, expected, rtol: float) -> float:
    """rtol plus an absolute floor at rtol·max|expected| for entries near zero; returns max|Δ|."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    return float(np.abs(actual - expected).max())


@pytest.fixture(scope="module")
def small() -> dict[str, np.ndarray]:
    """neuroCombat-sized data: its non-parametric EB underflows for much larger batches."""
    return simulate({"siteA": 12, "siteB": 15, "siteC": 10, "siteD": 14}, n_features=25, seed=1)


# --- centralized ComBat vs neuroCombat -------------------------------------------------------


def test_covariate_matrix_matches_neurocombat_design(small):
    X = covariate_matrix({"sex": small["sex"], "dx": small["dx"]}, {"age": small["age"]})
    design = nc.make_design_matrix(
        np.array(pd.DataFrame({k: small[k] for k in ["batch", "sex", "dx", "age"]}), dtype=object),
        0, [1, 2], [3], None,
    )  # fmt: skip
    np.testing.assert_array_equal(X, design[:, 4:])


def test_covariate_matrix_keeps_study_levels_at_a_site_missing_one():
    X = covariate_matrix({"sex": ["M", "M"]}, levels={"sex": ["F", "M"]})
    np.testing.assert_array_equal(X, [[1.0], [1.0]])
    with pytest.raises(ValueError, match="outside its levels"):
        covariate_matrix({"sex": ["F", "X"]}, levels={"sex": ["F", "M"]})


@pytest.mark.parametrize("covariates", [False, True], ids=["no_covariates", "sex_age"])
@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_combat_matches_neurocombat(small, method, covariates):
    categorical, continuous = (["sex"], ["age"]) if covariates else ([], [])
    reference = run_neurocombat(small, categorical, continuous, **method)
    X = covariate_matrix({"sex": small["sex"]}, {"age": small["age"]}) if covariates else None
    harmonized, est = combat(small["Y"], small["batch"], X, **method)

    expected = reference["estimates"]
    assert est.levels == tuple(expected["batches"])
    assert_close(harmonized, reference["data"].T, rtol=1e-10)
    assert_close(est.alpha, expected["stand.mean"][:, 0], rtol=1e-10)
    fitted = X @ est.beta if covariates else np.zeros_like(harmonized)
    assert_close(fitted, expected["mod.mean"].T, rtol=1e-10)
    assert_close(est.var_pooled, expected["var.pooled"][:, 0], rtol=1e-10)
    for ours, theirs in [("gamma_star", "gamma.star"), ("delta_star", "delta.star")]:
        assert_close(getattr(est, ours), expected[theirs], rtol=1e-10)
    for name in ["gamma_hat", "delta_hat", "gamma_bar", "t2"]:
        assert_close(getattr(est, name), np.array(expected[name], float), rtol=1e-10)
    if method.get("mean_only"):
        assert expected["a_prior"] is None and np.isnan(est.a_prior).all()
    else:
        assert_close(est.a_prior, expected["a_prior"], rtol=1e-10)
        assert_close(est.b_prior, expected["b_prior"], rtol=1e-10)


def test_nonparametric_eb_does_not_underflow_on_large_batches():
    data = simulate({"big": 1500, "other": 40}, n_features=12, seed=2)
    _, est = combat(data["Y"], data["batch"], parametric=False)
    z = (data["Y"][data["batch"] == "big"] - est.alpha) / np.sqrt(est.var_pooled)
    with np.errstate(all="ignore"):  # neuroCombat's product of 1500 densities is 0/0
        assert np.isnan(nc.int_eprior(z.T, est.gamma_hat[0], est.delta_hat[0])[0]).all()
    assert np.isfinite(est.gamma_star).all() and np.isfinite(est.delta_star).all()
    # each estimate is a weighted mean of the other features' naive estimates
    assert np.all(est.delta_star[0] >= est.delta_hat[0].min())
    assert np.all(est.delta_star[0] <= est.delta_hat[0].max())


def test_combat_rejects_constant_features_and_tiny_batches(small):
    Y = small["Y"].copy()
    Y[:, 3] = 7.0
    with pytest.raises(ValueError, match=r"features \[3\] have zero residual variance"):
        combat(Y, small["batch"])
    batch = small["batch"].copy()
    batch[0] = "lonely"
    with pytest.raises(ValueError, match="fewer than 2 patients"):
        combat(small["Y"], batch)


# --- d-ComBat vs centralized ---------------------------------------------------------------

# S1 holds batches a (40) and b (55); S2 holds c (30) and half of d; S3 the other half of d (35).
SITES = ("S1", "S2", "S3")


@pytest.fixture(scope="module")
def federation() -> dict:
    sizes = {"a": 40, "b": 55, "c": 30, "d": 70}
    data = simulate(sizes, n_features=40, seed=3)
    X = covariate_matrix(
        {"sex": data["sex"], "dx": data["dx"]}, {"age": data["age"]},
        levels={"sex": ["F", "M"], "dx": ["HGG", "MET"]},
    )  # fmt: skip
    site = np.select(
        [np.isin(data["batch"], ["a", "b"]), data["batch"] == "c", np.arange(len(X)) < 160],
        ["S1", "S2", "S2"], "S3",
    )  # fmt: skip
    return {**data, "X": X, "site": site}


def run_dcombat(fed: dict, **method) -> tuple[np.ndarray, dict, dict]:
    """The three rounds of §2.1; returns pooled harmonized rows, site estimates, site messages."""
    levels = batch_levels(fed["batch"])
    local = {
        s: (fed["Y"][fed["site"] == s], fed["batch"][fed["site"] == s], fed["X"][fed["site"] == s])
        for s in SITES
    }
    messages = {s: [] for s in SITES}
    round1 = {s: site_ols_sums(*local[s], levels) for s in SITES}
    fit = pooled_ols(_sum(round1, messages))
    round2 = {s: site_ssr(*local[s], fit, levels) for s in SITES}
    var_pooled = pooled_variance(_sum(round2, messages))
    shared_levels = split_batches([m.counts for m in round1.values()], levels)
    round3 = {s: site_batch_moments(*local[s], fit, var_pooled, shared_levels) for s in SITES}
    shared = pooled_batch_effects(_sum(round3, messages), shared_levels, **method)

    harmonized, estimates = np.empty_like(fed["Y"]), {}
    for s in SITES:
        rows = fed["site"] == s
        harmonized[rows], estimates[s] = site_harmonize(
            *local[s], fit, var_pooled, shared=shared, **method
        )
    return harmonized, estimates, messages


def _sum(round_messages: dict, log: dict):
    """Record what each site sent, and return what the server sees: the sum over sites."""
    for s, message in round_messages.items():
        log[s].append(message)
    return functools.reduce(operator.add, round_messages.values())


DCOMBAT_METHODS = {k: METHODS[k] for k in ["parametric", "nonparametric", "no_eb", "mean_only"]}


@pytest.mark.parametrize("method", DCOMBAT_METHODS.values(), ids=DCOMBAT_METHODS.keys())
def test_dcombat_equals_centralized(federation, method):
    central, central_est = combat(federation["Y"], federation["batch"], federation["X"], **method)
    harmonized, site_estimates, _ = run_dcombat(federation, **method)

    assert np.abs(harmonized - central).max() <= 1e-10 * np.abs(federation["Y"]).max()
    for est in site_estimates.values():
        rows = central_est.batch_rows(est.levels)
        assert_close(est.var_pooled, central_est.var_pooled, rtol=1e-12)
        for name in ["gamma_star", "delta_star", "gamma_hat", "delta_hat", "t2"]:
            assert_close(getattr(est, name), getattr(central_est, name)[rows], rtol=1e-10)
    assert site_estimates["S1"].levels == ("a", "b")
    assert site_estimates["S2"].levels == ("c", "d") and site_estimates["S3"].levels == ("d",)


def test_split_batches_are_those_counted_at_two_sites():
    counts = [[40, 55, 0, 0], [0, 0, 30, 35], [0, 0, 0, 35]]
    assert split_batches(counts, ["a", "b", "c", "d"]) == ("d",)


def test_site_messages_hold_only_aggregates(federation):
    _, _, messages = run_dcombat(federation)
    expected_fields = [("dtd", "dty", "counts"), ("ssr", "n"), ("counts", "s1", "s2")]
    for s, sent in messages.items():
        n_s = int((federation["site"] == s).sum())
        assert [tuple(f.name for f in fields(m)) for m in sent] == expected_fields
        for message in sent:
            for f in fields(message):
                value = getattr(message, f.name)
                if isinstance(value, np.ndarray):
                    assert n_s not in value.shape, (s, type(message).__name__, f.name)
                else:
                    assert isinstance(value, int) and value == n_s  # SSRSums.n


# --- applying estimates to new patients ------------------------------------------------------


def neurocombat_from_training():
    """neuroCombatFromTraining with docs/methods.md §5's one-line fix of line 482, which
    numpy >= 2.4 needs (`int()` of a 1-element array); the rest of neuroCombat's code runs
    unchanged."""
    source = inspect.getsource(nc.neuroCombatFromTraining)
    patched = source.replace(
        "int(np.where(old_levels==x)[0])", "int(np.where(old_levels==x)[0][0])"
    )
    assert patched.count("[0][0])") == 1
    namespace = dict(vars(nc))
    exec(compile(patched, nc.__file__, "exec"), namespace)
    function = namespace["neuroCombatFromTraining"]

    def run(dat, batch, estimates):
        with contextlib.redirect_stdout(io.StringIO()):
            return function(dat, batch, estimates)["data"]

    return run


@pytest.fixture(scope="module")
def trained() -> dict:
    """ComBat fitted with sex, age and diagnosis (option B) on training patients only."""
    data = simulate({"siteA": 30, "siteB": 25, "siteC": 35}, n_features=20, seed=4)
    train = np.arange(len(data["Y"])) % 4 != 0
    cats = ["sex", "dx"]
    X = covariate_matrix({c: data[c] for c in cats}, {"age": data["age"]})
    reference = run_neurocombat({k: v[train] for k, v in data.items()}, cats, ["age"])
    _, est = combat(data["Y"][train], data["batch"][train], X[train])
    return {**data, "X": X, "test": ~train, "est": est, "reference": reference}


def test_label_free_transform_has_no_label_argument():
    assert list(inspect.signature(apply_label_free).parameters) == [
        "Y_new", "batch_new", "estimates",
    ]  # fmt: skip
    assert list(inspect.signature(fit_new_batches).parameters) == [
        "Y_new", "batch_new", "estimates",
    ]  # fmt: skip


def test_label_free_apply_matches_neurocombat_from_training(trained):
    test = trained["test"]
    ours = apply_label_free(trained["Y"][test], trained["batch"][test], trained["est"])
    theirs = neurocombat_from_training()(
        trained["Y"][test].T, trained["batch"][test], trained["reference"]["estimates"]
    )
    assert_close(ours, theirs.T, rtol=1e-9)


def test_transforms_differ_by_covariate_effect_times_scale_correction(trained):
    est, test = trained["est"], trained["test"]
    Y, batch, X = trained["Y"][test], trained["batch"][test], trained["X"][test]
    difference = apply_with_covariates(Y, batch, X, est) - apply_label_free(Y, batch, est)
    covariate_effect = X @ est.beta - est.x_mean @ est.beta
    scale = np.sqrt(est.delta_star[est.batch_rows(batch)])
    assert_close(difference, covariate_effect * (1.0 - 1.0 / scale), rtol=1e-9)


def test_apply_with_covariates_reproduces_training_output(trained):
    train = ~trained["test"]
    Y, batch, X = trained["Y"][train], trained["batch"][train], trained["X"][train]
    harmonized, est = combat(Y, batch, X)
    assert_close(apply_with_covariates(Y, batch, X, est), harmonized, rtol=1e-14)


def test_unknown_batch_is_refused(trained):
    with pytest.raises(ValueError, match="not among the known levels"):
        apply_label_free(trained["Y"][:2], ["siteZ", "siteZ"], trained["est"])
    with pytest.raises(ValueError, match="already have estimates"):
        fit_new_batches(trained["Y"][:2], ["siteA", "siteA"], trained["est"])


@pytest.mark.parametrize("parametric", [True, False], ids=["parametric", "nonparametric"])
def test_unseen_batch_matches_neurocombat_eb_on_frozen_standardization(parametric):
    data = simulate({"siteA": 30, "siteB": 25, "siteC": 35, "late": 20}, n_features=20, seed=5)
    old = data["batch"] != "late"
    X = covariate_matrix({"sex": data["sex"]}, {"age": data["age"]})
    _, est = combat(data["Y"][old], data["batch"][old], X[old], parametric=parametric)
    Y_new, batch_new = data["Y"][~old], data["batch"][~old]
    extended = fit_new_batches(Y_new, batch_new, est)
    ours = apply_label_free(Y_new, batch_new, extended)

    # Oracle: neuroCombat's own pieces, on neuroCombat's training estimates.
    training = run_neurocombat(
        {k: v[old] for k, v in data.items()}, ["sex"], ["age"], parametric=parametric
    )["estimates"]
    center = training["stand.mean"][:, 0] + training["mod.mean"].mean(axis=1)
    z = ((Y_new - center) / np.sqrt(training["var.pooled"][:, 0])).T
    info = {"n_batch": 1, "batch_info": [list(range(len(Y_new)))], "ref_level": None}
    priors = nc.fit_LS_model_and_find_priors(z, np.ones((len(Y_new), 1)), info, False)
    find = nc.find_parametric_adjustments if parametric else nc.find_non_parametric_adjustments
    gamma_star, delta_star = find(z, priors, info, False)
    with_late = {
        **training,
        "batches": np.append(training["batches"], "late"),
        "gamma.star": np.vstack([training["gamma.star"], gamma_star]),
        "delta.star": np.vstack([training["delta.star"], delta_star]),
    }
    theirs = neurocombat_from_training()(Y_new.T, batch_new, with_late)

    assert extended.levels == (*est.levels, "late")
    assert_close(extended.gamma_star[-1], gamma_star[0], rtol=1e-10)
    assert_close(extended.delta_star[-1], delta_star[0], rtol=1e-10)
    assert_close(ours, theirs.T, rtol=1e-9)
    assert isinstance(extended, CombatEstimates) and extended.parametric == parametric
