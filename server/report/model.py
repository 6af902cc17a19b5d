"""What a results.json says about its fitted model, whatever the model's kind.

Every fact and curve is read from the keys the model dict holds (ridge and lasso hold
coefficients and Newton iterations, lasso also its penalty and cross-validation curve, the
MLP its strategy, rounds and loss by round), never from `kind`; keys this module does not
know are still listed, so a new kind of model is reported without a change here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Keys rendered by a dedicated rule below; any other scalar key is listed as it is.
_KNOWN = {
    "kind",
    "strategy",
    "rounds",
    "hidden_units",
    "n_parameters",
    "features",
    "coefficients",
    "intercept",
    "iterations",
    "converged",
    "ridge_lambda",
    "lasso_lambda",
    "cross_validation",
    "recalibration",
    "train_loss_by_round",
    "threshold",
    "threshold_rule",
    "training_sites",
    "scale",
}


def number(value, digits: int = 3) -> str:
    """A figure to `digits` decimals, or "-" when it is missing or undefined."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _plain(value) -> str:
    """A value of a key this module does not know: floats to 4 significant digits."""
    if isinstance(value, float):
        return _general(value) if math.isfinite(value) else "-"
    return "-" if value is None else str(value)


def _general(value) -> str:
    """A penalty or other positive figure spanning decades: 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


@dataclass(frozen=True)
class Curve:
    """A series the report draws: x against y, optionally with one x marked."""

    title: str
    x: list
    y: list
    x_title: str
    y_title: str
    log_x: bool = False
    marked_x: float | None = None
    bars: bool = False


def headline(model: dict) -> str:
    """One line naming the model: its kind and how it was trained."""
    parts = [str(model.get("kind", "model of unknown kind"))]
    if "strategy" in model:
        parts.append(f"trained by {model['strategy']}")
    if "rounds" in model:
        parts.append(f"over {model['rounds']} rounds")
    features = _n_features(model)
    if features is not None:
        parts.append(f"on {features} features")
    return " ".join(parts)


def _n_features(model: dict) -> int | None:
    for key in ("coefficients", "features"):
        if isinstance(model.get(key), dict | list):
            return len(model[key])
    return None


def facts(model: dict) -> list[tuple[str, str]]:
    """(label, value) rows describing the model, from whatever keys it holds."""
    rows: list[tuple[str, str]] = [("kind", str(model.get("kind", "unknown")))]
    if "strategy" in model:
        rows.append(("federated strategy", str(model["strategy"])))
    if "rounds" in model:
        rows.append(("rounds", str(model["rounds"])))
    if "hidden_units" in model:
        rows.append(("hidden units", str(model["hidden_units"])))
    if "n_parameters" in model:
        rows.append(("parameters", str(model["n_parameters"])))
    coefficients = model.get("coefficients")
    if isinstance(coefficients, dict):
        nonzero = sum(1 for value in coefficients.values() if value)
        rows.append(("features", f"{len(coefficients)} ({nonzero} with a nonzero coefficient)"))
    elif isinstance(model.get("features"), list):
        rows.append(("features", str(len(model["features"]))))
    if "intercept" in model:
        rows.append(("intercept", number(model["intercept"])))
    if "iterations" in model:
        state = {True: ", converged", False: ", did NOT converge"}.get(model.get("converged"), "")
        rows.append(("Newton iterations", f"{model['iterations']}{state}"))
    elif "converged" in model:
        rows.append(("converged", str(model["converged"])))
    for penalty in ("ridge_lambda", "lasso_lambda"):
        if penalty in model:
            how = (
                "chosen by federated inner cross-validation (lowest mean deviance)"
                if _cv_curve(model) is not None
                else "set in the study"
            )
            rows.append((penalty.replace("_", " "), f"{_general(model[penalty])}, {how}"))
    recalibration = model.get("recalibration")
    if isinstance(recalibration, dict):
        rows.append(("calibration slope", _recalibration_sentence(recalibration)))
    losses = model.get("train_loss_by_round")
    if isinstance(losses, list) and losses:
        rows.append(("training loss by round", " -> ".join(number(loss) for loss in losses)))
    if "threshold" in model:
        rule = model.get("threshold_rule")
        rows.append(("threshold", number(model["threshold"]) + (f" ({rule})" if rule else "")))
    if isinstance(model.get("training_sites"), list):
        rows.append(("training sites", ", ".join(map(str, model["training_sites"]))))
    if "scale" in model:
        rows.append(("scale", str(model["scale"])))
    for key, value in model.items():
        if key in _KNOWN:
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            rows.append((key.replace("_", " "), _plain(value)))
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            rows.append((key.replace("_", " "), ", ".join(map(_plain, value))))
    return rows


def _recalibration_sentence(recalibration: dict) -> str:
    """The out-of-fold calibration slope before recalibration and (cross-fitted) after."""
    if not recalibration.get("applied"):
        return f"not recalibrated: {recalibration.get('reason', '-')}"
    after = (recalibration.get("cross_fitted") or {}).get("slope")
    return (
        f"{number(recalibration.get('slope'), 2)} out of fold before recalibration, "
        f"{number(after, 2)} after (cross-fitted: each fold recalibrated on the others)"
    )


def _cv_curve(model: dict) -> Curve | None:
    curve = model.get("cross_validation")
    if not isinstance(curve, dict):
        return None
    lambdas, deviance = curve.get("lambdas"), curve.get("mean_deviance")
    if not lambdas or not deviance or len(lambdas) != len(deviance):
        return None
    penalty = "lasso_lambda" if "lasso_lambda" in model else "ridge_lambda"
    chosen = model.get(penalty)
    return Curve(
        title=f"{penalty.split('_')[0].capitalize()} penalty by federated inner cross-validation"
        + (f": chosen lambda {_general(chosen)}" if chosen is not None else ""),
        x=list(lambdas),
        y=list(deviance),
        x_title="lambda",
        y_title="mean held-out deviance",
        log_x=True,
        marked_x=chosen,
    )


def curves(model: dict) -> list[Curve]:
    """The series worth drawing from the model: its loss by round, its penalty path and
    its coefficients, each only when the model holds it."""
    drawn: list[Curve] = []
    losses = model.get("train_loss_by_round")
    if isinstance(losses, list) and losses:
        drawn.append(
            Curve(
                title="Training loss by round",
                x=list(range(1, len(losses) + 1)),
                y=list(losses),
                x_title="round",
                y_title="training loss",
            )
        )
    cv = _cv_curve(model)
    if cv is not None:
        drawn.append(cv)
    coefficients = model.get("coefficients")
    if isinstance(coefficients, dict) and coefficients:
        ordered = sorted(coefficients.items(), key=lambda item: abs(item[1] or 0.0))
        drawn.append(
            Curve(
                title="Coefficients",
                x=[value for _, value in ordered],
                y=[name for name, _ in ordered],
                x_title="coefficient",
                y_title="",
                bars=True,
            )
        )
    return drawn
