"""The coefficients an honest fit can reach, and no more (docs/privacy.md 3).

A curious aggregator that chooses the coefficients can make every case's p a step:
beta = M (-t, u) with a large M puts p = 1 beyond the plane u'x = t and 0 before it, so two
gradients differ by the rows between two planes, and bisecting t reads a case's row. An
honest fit cannot get there. Every ridge or L1 fit starts at beta = 0, where its n training
cases' deviance is 2 n log 2, and its iterates (and its optimum) sit no higher on its
penalized deviance (ridge's Newton steps, L1's line search; a path's warm start too, as the
penalty only falls along it). So, with n at most `federation.max_cases`:

- a ridge fit's slopes have lambda ||beta_s||_2^2 <= 2 n log 2, lambda the study's
  smallest penalty (its fixed one, or the least of its grid);
- an L1 fit at a fixed penalty, whose loss is a mean, has lambda ||beta_s||_1 <= log 2;
- any fit's deviance over this site's own cases is at most the total, <= 2 n log 2: a
  step that puts a class beyond the plane costs M times their distance to it, so this
  holds a step's height down whatever scaler the aggregator sends.

Under differential privacy the noise moves the iterates off that descent, and hides one
case's effect instead: no bound beyond `plan.MAX_ABS_PARAMETER` applies there.
"""

from __future__ import annotations

import math

import numpy as np

from fedrad.client.plan import Refused
from fedrad.common.config import StudyConfig
from fedrad.common.messages import Kind, Request

# Summed roundoff: an L1 step is accepted within 16 eps of the objective it starts from.
_SLACK = 1e-9


def slope_bound(study: StudyConfig) -> tuple[int, float] | None:
    """(norm order, bound) of an honest fit's slopes on standardized inputs, or None where
    the study's penalty bounds none (an unpenalized ridge fit, an L1 path whose smallest
    penalty follows from the data)."""
    if study.differential_privacy is not None:
        return None
    if study.model.kind == "ridge-logistic":
        fixed = study.ridge_penalty
        smallest = fixed if fixed is not None else min(study.model.ridge_lambdas)
        if smallest <= 0:
            return None
        return 2, math.sqrt(2 * study.federation.max_cases * math.log(2) / smallest)
    if study.model.kind == "lasso-logistic" and study.model.lasso_lambda is not None:
        return 1, math.log(2) / study.model.lasso_lambda
    return None


def check_slopes(kind: Kind, request: Request, study: StudyConfig) -> None:
    """Refuse a Newton step or held-out loss at slopes no honest fit reaches. (An L1 line
    search's trial points are not iterates: a full step may overshoot before it is halved.)"""
    bound = slope_bound(study)
    if bound is None:
        return
    order, most = bound
    for part in request.parts if kind is Kind.LASSO_ROUND else [request]:
        part_kind = Kind(part.values["kind"]) if kind is Kind.LASSO_ROUND else kind
        role = part.values.get("role", "train")
        at_iterate = part_kind is Kind.NEWTON or (part_kind is Kind.LOSS and role == "test")
        if not at_iterate or part.pipeline is None or part.pipeline.beta is None:
            continue
        norm = float(np.linalg.norm(np.asarray(part.pipeline.beta)[1:], ord=order))
        if norm > most * (1 + _SLACK):
            raise Refused(
                "coefficients-beyond-bound",
                f"{part_kind} at slopes of L{order} norm {norm:.4g}, past {most:.4g}",
            )


def check_deviance(deviance: float, study: StudyConfig) -> None:
    """Refuse to send sums at coefficients whose deviance over this site's own cases alone
    exceeds what an honest fit's over all the study's cases can."""
    if study.differential_privacy is not None:
        return
    most = 2 * study.federation.max_cases * math.log(2)
    if not deviance <= most * (1 + _SLACK):
        raise Refused(
            "coefficients-beyond-bound",
            f"deviance {deviance:.4g} over this site's cases, past {most:.4g}",
        )
