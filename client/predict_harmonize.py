"""ComBat for the cases a released model is applied to (docs/model-bundle.md 4).

A site that trained the model harmonizes with its own estimates, which the study left on
its disk (combat_estimates.npz beside its feature table; the aggregator never had them).
A batch the model never saw (a new site, a new scanner) estimates its own location and
scale from its unlabelled cases with the pooled model frozen, as a held-out site does in
leave-one-site-out; that needs enough of its cases, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from fedrad.common.config import StudyConfig
from fedrad.common.harmonization import combat
from fedrad.common.pipeline import PipelineParams
from fedrad.common.user_error import UserError

ESTIMATES_FILE = "combat_estimates.npz"
_FROZEN = ("alpha", "beta", "x_mean", "var_pooled")
_EFFECTS = tuple(f.name for f in fields(combat.BatchEffects) if f.name != "levels")


@dataclass(frozen=True)
class Harmonized:
    """Harmonized features of the cases that could be, and for every case how (or why not)."""

    values: np.ndarray  # rows of `usable` only
    usable: np.ndarray  # bool per case
    how: list[str]  # per case: the estimates used, or why the case was left out


def harmonize(
    x: np.ndarray,
    batch: np.ndarray,
    params: PipelineParams,
    study: StudyConfig,
    minimum: int,
    site_dir: Path | None,
) -> Harmonized:
    """ComBat of `x` (cases x params.features) with the bundle's pooled model: the site's
    own kept estimates for batches it trained with, label-free estimates for new batches
    of at least `minimum` cases; the cases of a smaller new batch are left out, saying why."""
    if params.combat is None:
        everyone = np.ones(len(x), dtype=bool)
        return Harmonized(x, everyone, ["none (the study harmonizes none)"] * len(x))
    known = known_estimates(params, study, site_dir)
    how = [""] * len(x)
    usable = np.ones(len(x), dtype=bool)
    new = [level for level in combat.batch_levels(batch) if level not in known.levels]
    for level in new:
        rows = batch == level
        if rows.sum() < minimum:
            for i in np.flatnonzero(rows):
                how[i] = (
                    f"batch {level} was not in training and has {int(rows.sum())} case(s) "
                    f"here; estimating its ComBat location and scale needs at least {minimum}"
                )
            usable &= ~rows
    fitted = [level for level in new if usable[batch == level].all()]
    estimates = known
    if fitted:
        rows = np.isin(batch, fitted)
        estimates = combat.fit_new_batches(x[rows], batch[rows], known)
    trained = set(params.combat.levels)
    for i, level in enumerate(batch):
        if usable[i]:
            how[i] = _how(level, int((batch == level).sum()), level in fitted, level in trained)
    values = combat.apply_label_free(x[usable], batch[usable], estimates)
    return Harmonized(values, usable, how)


def _how(level: str, cases: int, label_free: bool, trained: bool) -> str:
    if not label_free:
        return f"ComBat estimates of batch {level} from training"
    why = (
        "it trained the model, but its estimates from training were not found (--site-dir)"
        if trained
        else "not in training"
    )
    return f"label-free ComBat estimates of batch {level} from its {cases} case(s) here ({why})"


def known_estimates(
    params: PipelineParams, study: StudyConfig, site_dir: Path | None
) -> combat.CombatEstimates:
    """The pooled model with the batches it has estimates of: the site's own (kept from
    training, checked to be of this very model) and the batches the aggregator estimated
    across sites (in the bundle)."""
    fit, settings = params.combat, study.harmonization
    estimates = combat.frozen_estimates(
        fit.ols,
        fit.var_pooled,
        eb=settings.empirical_bayes,
        parametric=settings.parametric,
        mean_only=False,
    )
    parts = []
    own = kept_estimates(site_dir / ESTIMATES_FILE, estimates) if site_dir else None
    if own is not None:
        parts.append(own)
    if fit.shared is not None:
        held = set(own.levels) if own is not None else set()
        extra = [level for level in fit.shared.levels if level not in held]
        if extra:
            parts.append(fit.shared.select(extra))
    if not parts:
        return estimates
    effects = combat.BatchEffects.concat(parts)
    return replace(estimates, levels=effects.levels, **{n: getattr(effects, n) for n in _EFFECTS})


def kept_estimates(path: Path, frozen: combat.CombatEstimates) -> combat.BatchEffects | None:
    """The site's estimates from training, if `path` holds them; refused by a sentence if
    they belong to another model (another study, or an earlier run of this one)."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as kept:
        arrays = {name: kept[name] for name in kept.files}
    if not all(np.array_equal(arrays[name], getattr(frozen, name)) for name in _FROZEN):
        raise UserError(
            f"{path} holds ComBat estimates of another model than this bundle's (another "
            "study or run); point --site-dir at the folder of the study that made the bundle."
        )
    return combat.BatchEffects(
        levels=tuple(str(level) for level in arrays["levels"]),
        **{name: arrays[name] for name in _EFFECTS},
    )
