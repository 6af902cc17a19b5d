"""ComBat harmonization, equal to neuroCombat 0.2.12, and its exact distributed form (d-ComBat).

Layout: every data matrix here is patients x features (n x G), the layout of a feature table.
neuroCombat and docs/methods.md write the transpose (G x n). Batch labels are strings; the
level order of per-batch arrays is the order of `levels`, by default the sorted unique labels
(`np.unique`, neuroCombat's order). Everything is float64. Section numbers (§) refer to
docs/methods.md.

Centralized ComBat is d-ComBat run with a single site: `combat` chains the same site and server
functions a federation calls, so the two cannot drift apart. The protocol (§2.1):

1. site `site_ols_sums` -> server `pooled_ols` (B̂, α̂) -> sites;
2. site `site_ssr` -> server `pooled_variance` (σ̂²) -> sites;
3. site `site_harmonize`: EB for its own batches, kept locally. A batch split over sites first goes
   through `site_batch_moments` -> server `pooled_batch_effects` -> `site_harmonize(shared=...)`.

Site messages hold only sums over patients; add them with `+` (or let secure aggregation do it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

IT_SOL_CONV = 1e-4  # neuroCombat's it_sol stopping threshold (§1.2 F)
_NONPARAMETRIC_BLOCK = 256  # rows of the G x G likelihood matrix held at once (memory bound)


def _field_values(obj: object) -> dict[str, object]:
    """Shallow field dict (dataclasses.asdict would deep-copy every array)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


class _Summable:
    """Field-wise `+`: the server needs only the sum over sites of each site message."""

    def __add__(self, other: Self) -> Self:
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


# ---------------------------------------------------------------------------------------------
# Inputs


def batch_levels(batch: ArrayLike) -> tuple[str, ...]:
    """Sorted unique labels: neuroCombat's batch order (§1.2 A)."""
    return tuple(np.unique(np.asarray(batch, dtype=str)).tolist())


def covariate_matrix(
    categorical: Mapping[str, ArrayLike] | None = None,
    continuous: Mapping[str, ArrayLike] | None = None,
    levels: Mapping[str, Sequence] | None = None,
) -> Array:
    """Covariate block X (n x q) of §1.2 A: one-hot categoricals without their first level, then
    continuous columns as they are, each group in mapping order (neuroCombat's make_design_matrix).

    In a federation pass the study-wide `levels` of every categorical: a site lacking a level
    must still code the same columns. Default: sorted unique values, as neuroCombat.
    """
    levels = levels or {}
    blocks = []
    for name, values in (categorical or {}).items():
        values = np.asarray(values)
        order = np.asarray(levels[name]) if name in levels else np.unique(values)
        unknown = set(values.tolist()) - set(order.tolist())
        if unknown:
            raise ValueError(
                f"covariate {name!r} has values {sorted(map(str, unknown))} "
                f"outside its levels {order.tolist()}"
            )
        blocks.append((values[:, None] == order[None, 1:]).astype(np.float64))
    blocks += [np.asarray(v, dtype=np.float64)[:, None] for v in (continuous or {}).values()]
    if not blocks:
        raise ValueError("no covariates given; pass X=None for ComBat without covariates")
    if len({len(block) for block in blocks}) != 1:
        raise ValueError("covariate columns differ in length")
    return np.hstack(blocks)


def _check_data(
    Y: ArrayLike, batch: ArrayLike, X: ArrayLike | None = None
) -> tuple[Array, NDArray[np.str_], Array]:
    """Y as float64 n x G, batch as n strings, X as float64 n x q (q = 0 without covariates)."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"Y must be patients x features (n x G), got shape {Y.shape}")
    batch = np.asarray(batch, dtype=str)
    if batch.shape != (len(Y),):
        raise ValueError(f"batch must hold one label per row of Y ({len(Y)}), got {batch.shape}")
    X = np.empty((len(Y), 0)) if X is None else np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"X must be patients x covariates with {len(Y)} rows, got {X.shape}")
    if not (np.isfinite(Y).all() and np.isfinite(X).all()):
        raise ValueError("Y and X must be finite: ComBat has no missing-value handling")
    return Y, batch, X


def _batch_codes(batch: NDArray[np.str_], levels: Sequence[str]) -> NDArray[np.intp]:
    """Row of `levels` for every patient; an unknown label is an error, never a new batch."""
    lookup = {level: i for i, level in enumerate(levels)}
    unknown = sorted(set(batch.tolist()) - lookup.keys())
    if unknown:
        raise ValueError(f"batches {unknown} are not among the known levels {list(levels)}")
    return np.array([lookup[label] for label in batch.tolist()], dtype=np.intp)


# ---------------------------------------------------------------------------------------------
# Rounds 1 and 2: the global location/scale model (§1.2 B, §2.1)


@dataclass(frozen=True, eq=False)
class OLSSums(_Summable):
    """Round 1, site -> server: normal-equation sums of the design D = [Z | X] (§2.1)."""

    dtd: Array  # (K+q, K+q) DᵀD
    dty: Array  # (K+q, G) DᵀY
    counts: NDArray[np.int64]  # (K,) patients per batch, in the global level order


@dataclass(frozen=True, eq=False)
class OLSFit:
    """Round 1, server -> sites: the pooled per-feature OLS B̂ = [μ̂; β̂] and α̂ (§1.2 B)."""

    batch_means: Array  # (K, G) μ̂, the batch intercepts
    beta: Array  # (q, G) β̂, the covariate effects
    alpha: Array  # (G,) α̂ = Σ_i (n_i/n) μ̂_i
    x_mean: Array  # (q,) mean covariate row; α̂ + x̄β̂ is the label-free centre (§1.3)


@dataclass(frozen=True, eq=False)
class SSRSums(_Summable):
    """Round 2, site -> server: uncentred residual sums of squares, exact even for split batches."""

    ssr: Array  # (G,) Σ_j (y_jg - d_jᵀB̂_g)²
    n: int


def site_ols_sums(
    Y_s: ArrayLike, batch_s: ArrayLike, X_s: ArrayLike | None, levels: Sequence[str]
) -> OLSSums:
    """Round 1 at a site. `levels` is the global batch order, the same at every site."""
    Y, batch, X = _check_data(Y_s, batch_s, X_s)
    codes = _batch_codes(batch, levels)
    Z = np.zeros((len(Y), len(levels)))
    Z[np.arange(len(Y)), codes] = 1.0
    D = np.hstack([Z, X])
    return OLSSums(dtd=D.T @ D, dty=D.T @ Y, counts=np.bincount(codes, minlength=len(levels)))


def pooled_ols(total: OLSSums) -> OLSFit:
    """Server, round 1: B̂ = (Σ DᵀD)⁻¹ Σ DᵀY and α̂ = Σ_i (n_i/n) μ̂_i (§1.2 B)."""
    k = len(total.counts)
    if np.any(total.counts == 0):
        raise ValueError("every batch level needs at least one patient somewhere")
    B = np.linalg.solve(total.dtd, total.dty)
    n = total.counts.sum()
    # Each patient has exactly one batch indicator, so the Z-rows of DᵀX sum to Σ_j x_j.
    x_mean = total.dtd[:k, k:].sum(axis=0) / n
    return OLSFit(batch_means=B[:k], beta=B[k:], alpha=total.counts / n @ B[:k], x_mean=x_mean)


def site_ssr(
    Y_s: ArrayLike, batch_s: ArrayLike, X_s: ArrayLike | None, fit: OLSFit, levels: Sequence[str]
) -> SSRSums:
    """Round 2 at a site: uncentred SSR (§2.1; a centred variance is wrong for a split batch)."""
    Y, batch, X = _check_data(Y_s, batch_s, X_s)
    resid = Y - fit.batch_means[_batch_codes(batch, levels)] - X @ fit.beta
    return SSRSums(ssr=(resid**2).sum(axis=0), n=len(Y))


def pooled_variance(total: SSRSums) -> Array:
    """Server, round 2: σ̂²_g = Σ_s SSR_s,g / n (§1.2 B)."""
    var_pooled = total.ssr / total.n
    constant = np.flatnonzero(var_pooled == 0)
    if constant.size:
        # neuroCombat silently replaces these by median(var != 0), a boolean (§5).
        raise ValueError(f"features {constant.tolist()} have zero residual variance; drop them")
    return var_pooled


def _standardize(Y: Array, X: Array, fit: OLSFit, var_pooled: Array) -> Array:
    """z = (y - α̂ - xᵀβ̂) / σ̂ (§1.2 C)."""
    return (Y - fit.alpha - X @ fit.beta) / np.sqrt(var_pooled)


# ---------------------------------------------------------------------------------------------
# Round 3: per-batch empirical Bayes (§1.2 D-F)


@dataclass(frozen=True, eq=False)
class BatchEffects:
    """Location/scale effects of some batches (§1.2 D-F); row i belongs to levels[i].

    delta_* are variances (δ²), as neuroCombat's `delta.star`. a_prior, b_prior are NaN under
    mean_only. This is also the server -> sites message for batches split across sites.
    """

    levels: tuple[str, ...]
    counts: NDArray[np.int64]  # (k,)
    gamma_hat: Array  # (k, G)
    delta_hat: Array  # (k, G)
    gamma_bar: Array  # (k,)
    t2: Array  # (k,)
    a_prior: Array  # (k,)
    b_prior: Array  # (k,)
    gamma_star: Array  # (k, G)
    delta_star: Array  # (k, G)

    def select(self, levels: Sequence[str]) -> BatchEffects:
        """The rows of `levels`, e.g. the split batches a site holds."""
        rows = _batch_codes(np.asarray(levels, dtype=str), self.levels)
        values = {
            name: value[rows] for name, value in _field_values(self).items() if name != "levels"
        }
        return BatchEffects(levels=tuple(levels), **values)

    @staticmethod
    def concat(parts: Sequence[BatchEffects]) -> BatchEffects:
        """Stack disjoint sets of batches (local + server-estimated, or training + new)."""
        levels = tuple(level for part in parts for level in part.levels)
        if len(set(levels)) != len(levels):
            raise ValueError(f"batch levels repeat across parts: {levels}")
        values = {
            f.name: np.concatenate([getattr(part, f.name) for part in parts])
            for f in fields(BatchEffects)
            if f.name != "levels"
        }
        return BatchEffects(levels=levels, **values)


@dataclass(frozen=True, eq=False)
class BatchMoments(_Summable):
    """Round 3 for batches split over sites, site -> server: n, S1 = Σz, S2 = Σz² (§2.1)."""

    counts: NDArray[np.int64]  # (k,) zero for a shared batch this site does not hold
    s1: Array  # (k, G)
    s2: Array  # (k, G)


def _it_sol(
    n: int,
    gamma_hat: Array,
    delta_hat: Array,
    m2: Array,
    gamma_bar: float,
    t2: float,
    a: float,
    b: float,
) -> tuple[Array, Array]:
    """Parametric EB fixed point (§1.2 F), neuroCombat's it_sol including its signed stop rule.

    Σ_j (z_j - γ*)² = M2 + n(γ̂ - γ*)², so the raw within-batch M2 replaces the data.
    """
    g_old, d_old = gamma_hat, delta_hat
    change = 1.0
    while change > IT_SOL_CONV:  # a NaN change stops the loop, as in neuroCombat
        g_new = (t2 * n * gamma_hat + d_old * gamma_bar) / (t2 * n + d_old)
        sum2 = m2 + n * (gamma_hat - g_new) ** 2
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):  # γ = 0 gives inf, as in neuroCombat
            change = max(
                (np.abs(g_new - g_old) / g_old).max(), (np.abs(d_new - d_old) / d_old).max()
            )
        g_old, d_old = g_new, d_new
    return g_new, d_new


def _int_eprior(n: int, gamma_hat: Array, delta_hat: Array, m2: Array) -> tuple[Array, Array]:
    """Non-parametric EB (§1.2 F′), neuroCombat's int_eprior with log-space weights.

    neuroCombat multiplies n_i Gaussian densities and underflows to 0/0 for large batches;
    subtracting the row maximum of the log-likelihoods leaves the weights' ratios unchanged.
    """
    G = len(gamma_hat)
    log_norm = -0.5 * n * np.log(2.0 * np.pi * delta_hat)
    gamma_star, delta_star = np.empty(G), np.empty(G)
    for start in range(0, G, _NONPARAMETRIC_BLOCK):
        rows = np.arange(start, min(start + _NONPARAMETRIC_BLOCK, G))
        # Σ_j (z_jg - γ̂_g')² = M2_g + n(γ̂_g - γ̂_g')² for feature g (row) under g' (column)
        sum2 = m2[rows, None] + n * (gamma_hat[rows, None] - gamma_hat[None, :]) ** 2
        log_lh = log_norm - sum2 / (2.0 * delta_hat)
        log_lh[np.arange(len(rows)), rows] = -np.inf  # leave feature g itself out
        weight = np.exp(log_lh - log_lh.max(axis=1, keepdims=True))
        total = weight.sum(axis=1)
        gamma_star[rows] = weight @ gamma_hat / total
        delta_star[rows] = weight @ delta_hat / total
    return gamma_star, delta_star


def _effects_from_moments(
    levels: Sequence[str],
    counts: NDArray[np.int64],
    mean: Array,
    m2: Array,
    *,
    eb: bool,
    parametric: bool,
    mean_only: bool,
) -> BatchEffects:
    """§1.2 D-F‴ for each batch from (n, mean z, M2 of z) per feature: all that EB reads."""
    counts = np.asarray(counts)
    small = [level for level, n in zip(levels, counts, strict=True) if n < 2]
    if small and not mean_only:
        raise ValueError(f"batches {small} have fewer than 2 patients; ComBat needs n_i >= 2")
    gamma_hat = mean
    if mean_only:
        delta_hat = np.ones_like(mean)
        a_prior = b_prior = np.full(len(levels), np.nan)
    else:
        delta_hat = m2 / (counts[:, None] - 1.0)
        delta_hat[delta_hat == 0] = 1.0
        m, s2 = delta_hat.mean(axis=1), delta_hat.var(axis=1, ddof=1)
        a_prior, b_prior = (2.0 * s2 + m**2) / s2, (m * s2 + m**3) / s2
    gamma_bar, t2 = gamma_hat.mean(axis=1), gamma_hat.var(axis=1, ddof=1)

    gamma_star, delta_star = gamma_hat.copy(), delta_hat.copy()  # F″: eb=False
    if eb:
        for i, n in enumerate(counts):
            if parametric and mean_only:  # F‴: neuroCombat calls postmean with n = 1, δ = 1
                gamma_star[i] = (t2[i] * gamma_hat[i] + gamma_bar[i]) / (t2[i] + 1.0)
            elif parametric:
                gamma_star[i], delta_star[i] = _it_sol(
                    n,
                    gamma_hat[i],
                    delta_hat[i],
                    m2[i],
                    gamma_bar[i],
                    t2[i],
                    a_prior[i],
                    b_prior[i],
                )
            else:
                gamma_star[i], delta_star[i] = _int_eprior(n, gamma_hat[i], delta_hat[i], m2[i])
        if mean_only:
            delta_star[:] = 1.0
    return BatchEffects(
        levels=tuple(levels),
        counts=counts,
        gamma_hat=gamma_hat,
        delta_hat=delta_hat,
        gamma_bar=gamma_bar,
        t2=t2,
        a_prior=a_prior,
        b_prior=b_prior,
        gamma_star=gamma_star,
        delta_star=delta_star,
    )


def _effects_from_data(
    z: Array, batch: NDArray[np.str_], levels: Sequence[str], **method: bool
) -> BatchEffects:
    """Per-batch moments of standardized data (two-pass, as numpy's var), then EB."""
    rows = [batch == level for level in levels]
    mean = np.array([z[r].mean(axis=0) for r in rows])
    m2 = np.array([((z[r] - m) ** 2).sum(axis=0) for r, m in zip(rows, mean, strict=True)])
    counts = np.array([r.sum() for r in rows], dtype=np.int64)
    return _effects_from_moments(levels, counts, mean, m2, **method)


def site_batch_moments(
    Y_s: ArrayLike,
    batch_s: ArrayLike,
    X_s: ArrayLike | None,
    fit: OLSFit,
    var_pooled: Array,
    shared_levels: Sequence[str],
) -> BatchMoments:
    """Round 3 for split batches, at a site: sums of z per shared batch (zeros if absent here)."""
    Y, batch, X = _check_data(Y_s, batch_s, X_s)
    z = _standardize(Y, X, fit, var_pooled)
    rows = [batch == level for level in shared_levels]
    return BatchMoments(
        counts=np.array([r.sum() for r in rows], dtype=np.int64),
        s1=np.array([z[r].sum(axis=0) for r in rows]),
        s2=np.array([(z[r] ** 2).sum(axis=0) for r in rows]),
    )


def pooled_batch_effects(
    total: BatchMoments,
    shared_levels: Sequence[str],
    *,
    eb: bool = True,
    parametric: bool = True,
    mean_only: bool = False,
) -> BatchEffects:
    """Server, round 3: EB for split batches from summed (n, S1, S2) (§2.1)."""
    n = total.counts[:, None]
    mean = total.s1 / n
    m2 = np.maximum(total.s2 - total.s1 * mean, 0.0)  # rounding must not make M2 negative
    return _effects_from_moments(
        shared_levels, total.counts, mean, m2, eb=eb, parametric=parametric, mean_only=mean_only
    )


def split_batches(site_counts: Sequence[ArrayLike], levels: Sequence[str]) -> tuple[str, ...]:
    """Batches present at more than one site, from the sites' round-1 `counts`."""
    present = np.asarray(site_counts) > 0
    return tuple(levels[i] for i in np.flatnonzero(present.sum(axis=0) > 1))


# ---------------------------------------------------------------------------------------------
# Estimates and transforms


@dataclass(frozen=True, eq=False)
class CombatEstimates(BatchEffects):
    """Everything needed to harmonize new patients: batch effects plus the global model.

    Fields follow neuroCombat's `estimates`: alpha = stand.mean, X @ beta = mod.mean,
    var_pooled = var.pooled (σ̂²), delta_star = delta.star (δ*², a variance).
    """

    alpha: Array  # (G,)
    beta: Array  # (q, G)
    x_mean: Array  # (q,) training mean covariate row
    var_pooled: Array  # (G,)
    eb: bool
    parametric: bool
    mean_only: bool

    @property
    def center(self) -> Array:
        """c = α̂ + x̄ᵀβ̂: the centre of the label-free transform (§1.3)."""
        return self.alpha + self.x_mean @ self.beta

    def batch_rows(self, batch: ArrayLike) -> NDArray[np.intp]:
        """Row of each label in the per-batch arrays; unknown batches need `fit_new_batches`."""
        return _batch_codes(np.asarray(batch, dtype=str), self.levels)


def _estimates(
    fit: OLSFit,
    var_pooled: Array,
    effects: BatchEffects,
    *,
    eb: bool,
    parametric: bool,
    mean_only: bool,
) -> CombatEstimates:
    return CombatEstimates(
        **_field_values(effects),
        alpha=fit.alpha,
        beta=fit.beta,
        x_mean=fit.x_mean,
        var_pooled=var_pooled,
        eb=eb,
        parametric=parametric,
        mean_only=mean_only,
    )


def frozen_estimates(
    fit: OLSFit, var_pooled: Array, *, eb: bool, parametric: bool, mean_only: bool
) -> CombatEstimates:
    """α̂, β̂, σ̂ with no batch effects yet: where a site unseen in training starts (§1.4)."""
    n_features = fit.alpha.shape[0]
    per_batch, per_feature = np.zeros(0), np.zeros((0, n_features))
    effects = BatchEffects(
        levels=(),
        counts=np.zeros(0, dtype=np.int64),
        gamma_hat=per_feature,
        delta_hat=per_feature,
        gamma_bar=per_batch,
        t2=per_batch,
        a_prior=per_batch,
        b_prior=per_batch,
        gamma_star=per_feature,
        delta_star=per_feature,
    )
    return _estimates(fit, var_pooled, effects, eb=eb, parametric=parametric, mean_only=mean_only)


def as_arrays(estimates: CombatEstimates) -> dict[str, Array]:
    """Every field as an array (levels as strings), e.g. for `np.savez` at the site."""
    return {name: np.asarray(value) for name, value in _field_values(estimates).items()}


def site_harmonize(
    Y_s: ArrayLike,
    batch_s: ArrayLike,
    X_s: ArrayLike | None,
    fit: OLSFit,
    var_pooled: Array,
    *,
    eb: bool = True,
    parametric: bool = True,
    mean_only: bool = False,
    shared: BatchEffects | None = None,
) -> tuple[Array, CombatEstimates]:
    """Round 3 at a site (§2.1): EB for the batches it holds whole, the server's `shared` effects
    for split ones; returns its harmonized data and the estimates it keeps for new patients."""
    Y, batch, X = _check_data(Y_s, batch_s, X_s)
    method = {"eb": eb, "parametric": parametric, "mean_only": mean_only}
    present = batch_levels(batch)
    from_server = tuple(level for level in present if shared is not None and level in shared.levels)
    own = tuple(level for level in present if level not in from_server)
    z = _standardize(Y, X, fit, var_pooled)
    parts = [_effects_from_data(z, batch, own, **method)] if own else []
    if from_server:
        parts.append(shared.select(from_server))
    estimates = _estimates(fit, var_pooled, BatchEffects.concat(parts), **method)
    return apply_with_covariates(Y, batch, X, estimates), estimates


def combat(
    Y: ArrayLike,
    batch: ArrayLike,
    X: ArrayLike | None = None,
    *,
    eb: bool = True,
    parametric: bool = True,
    mean_only: bool = False,
) -> tuple[Array, CombatEstimates]:
    """Centralized ComBat (§1.2 A-G), equal to neuroCombat 0.2.12 without `ref_batch`.

    Y is n x G (patients x features), X the n x q covariate block (see `covariate_matrix`).
    It is d-ComBat with one site.
    """
    levels = batch_levels(batch)
    fit = pooled_ols(site_ols_sums(Y, batch, X, levels))
    var_pooled = pooled_variance(site_ssr(Y, batch, X, fit, levels))
    return site_harmonize(
        Y, batch, X, fit, var_pooled, eb=eb, parametric=parametric, mean_only=mean_only
    )


def apply_with_covariates(
    Y_new: ArrayLike, batch_new: ArrayLike, X_new: ArrayLike | None, estimates: CombatEstimates
) -> Array:
    """Standard transform (§1.2 G, §1.3): y* = σ̂(z - γ*)/δ* + α̂ + xᵀβ̂.

    Only for covariates known at prediction time (option A, §1.4): never pass the label here.
    """
    Y, batch, X = _check_data(Y_new, batch_new, X_new)
    rows = estimates.batch_rows(batch)
    sigma = np.sqrt(estimates.var_pooled)
    fitted = estimates.alpha + X @ estimates.beta
    z = (Y - fitted) / sigma
    return sigma * (z - estimates.gamma_star[rows]) / np.sqrt(estimates.delta_star[rows]) + fitted


def apply_label_free(Y_new: ArrayLike, batch_new: ArrayLike, estimates: CombatEstimates) -> Array:
    """Label-free transform (§1.3, option B of §1.4): y* = (y - c - σ̂γ*)/δ* + c, c = α̂ + x̄ᵀβ̂.

    neuroCombatFromTraining's formula. It takes no label or covariate, so it cannot leak one.
    """
    Y, batch, _ = _check_data(Y_new, batch_new)
    rows = estimates.batch_rows(batch)
    center, sigma = estimates.center, np.sqrt(estimates.var_pooled)
    shifted = Y - center - sigma * estimates.gamma_star[rows]
    return shifted / np.sqrt(estimates.delta_star[rows]) + center


def fit_new_batches(
    Y_new: ArrayLike, batch_new: ArrayLike, estimates: CombatEstimates
) -> CombatEstimates:
    """Add batches unseen in training (held-out or late-joining site) to `estimates` (§1.4).

    Their γ*, δ* come from their own unlabelled data with α̂, β̂, σ̂ frozen and z centred on
    c = α̂ + x̄ᵀβ̂, as `apply_label_free` does. Transductive but label-free; γ̂ then also absorbs
    covariate-mix differences, e.g. β_dx(π_new - π̄_train)/σ̂ for another class prevalence.
    """
    Y, batch, _ = _check_data(Y_new, batch_new)
    new = batch_levels(batch)
    known = sorted(set(new) & set(estimates.levels))
    if known:
        raise ValueError(f"batches {known} already have estimates; apply them instead")
    z = (Y - estimates.center) / np.sqrt(estimates.var_pooled)
    method = {
        "eb": estimates.eb,
        "parametric": estimates.parametric,
        "mean_only": estimates.mean_only,
    }
    effects = BatchEffects.concat([estimates, _effects_from_data(z, batch, new, **method)])
    return replace(estimates, **_field_values(effects))
