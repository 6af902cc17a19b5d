"""L1 logistic regression in few rounds: the inner folds walk the lambda path in lockstep,
one LASSO_ROUND carrying every fold's next sum, and the study is still the pooled one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fedrad.client.data import SiteData
from fedrad.common.config import StudyConfig
from fedrad.common.messages import Kind
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.pooled import pooled_reference
from fedrad.simulations.synth.features import write_site_feature_tables

STUDY = StudyConfig().updated(model={"kind": "lasso-logistic"}, validation={"scheme": "holdout"})
# The same study before its rounds were batched: every sum in a round of its own
# (205 NEWTON, 204 LOSS and 1 LAMBDA_MAX rounds on this federation).
UNBATCHED_ROUNDS = 410


def _run(tables: dict[str, Path], study: StudyConfig = STUDY):
    """The study's results, and the parts of every LASSO_ROUND as (kind, role, inner fold)."""
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    transport = in_process_transport(sites, study)
    rounds: list[list[tuple]] = []
    ask = transport.ask

    def recording(kind, payloads):
        if kind is Kind.LASSO_ROUND:
            values = next(iter(payloads.values())).values
            rounds.append(
                [
                    (
                        values[f"{i}/kind"],
                        values.get(f"{i}/role"),
                        values.get(f"{i}/partition.inner"),
                    )
                    for i in range(int(values["bundle.size"]))
                ]
            )
        return ask(kind, payloads)

    transport.ask = recording
    results = StudyProtocol(transport, study, len(sites), log=lambda _: None).run()
    return results, rounds


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    tables = write_site_feature_tables(tmp_path_factory.mktemp("lasso"), STUDY)
    return tables, *_run(tables)


def test_the_batched_federated_l1_study_is_the_pooled_one(study_run):
    tables, results, _ = study_run
    reference = pooled_reference(tables, STUDY)
    assert [site["status"] for site in results["sites"]] == ["included"] * 3
    model, pooled = results["model"], reference["model"]
    assert model["lasso_lambda"] == pytest.approx(pooled["lasso_lambda"], rel=1e-10)
    curve, pooled_curve = model["cross_validation"], pooled["cross_validation"]
    np.testing.assert_allclose(curve["lambdas"], pooled_curve["lambdas"], rtol=1e-10)
    np.testing.assert_allclose(curve["mean_deviance"], pooled_curve["mean_deviance"], rtol=1e-10)
    assert model["iterations"] == pooled["iterations"]
    assert abs(model["intercept"] - pooled["intercept"]) <= 1e-10
    assert list(model["coefficients"]) == list(pooled["coefficients"])
    for name, value in model["coefficients"].items():
        assert abs(value - pooled["coefficients"][name]) <= 1e-10
    assert any(value != 0 for value in model["coefficients"].values())


def test_inner_folds_share_rounds_and_an_l1_fit_needs_a_third_of_the_rounds(study_run):
    _, results, rounds = study_run
    settings, folds = STUDY.model, STUDY.validation.inner_folds
    assert results["round_counts"][Kind.LASSO_ROUND] == len(rounds)
    assert not {Kind.NEWTON, Kind.LOSS, Kind.LAMBDA_MAX} & set(results["round_counts"])

    # Round 1: lambda_max and the Newton terms at beta = 0 of every inner fold and of the
    # final fit, which need no lambda yet.
    assert Counter(rounds[0]) == Counter(
        [(Kind.LAMBDA_MAX, None, None), (Kind.NEWTON, None, None)]
        + [(Kind.NEWTON, None, fold) for fold in range(folds)]
    )
    # Then every round holds at most one step of each fit (a Newton iteration or a
    # line-search trial) and the held-out deviances of earlier path points riding along.
    path = Counter()  # steps per fit: inner fold, or None for the final fit
    held_out = Counter()
    for parts in rounds:
        steps = [inner for kind, role, inner in parts if role != "test" and kind != "lambda-max"]
        assert len(steps) == len(set(steps))
        path.update(steps)
        held_out.update(inner for _, role, inner in parts if role == "test")
    assert held_out == {fold: settings.lasso_path_length for fold in range(folds)}
    # Lockstep: the CV takes as many rounds as its longest fold (+1 for that fold's last
    # held-out deviance), and the final fit follows once the lambda is chosen.
    longest = max(path[fold] for fold in range(folds))
    assert len(rounds) == longest + 1 + path[None] - 1

    # The bound, from the math: the folds' steps no longer add up. A fold takes at most
    # `per_point` steps (Newton iterations + line-search trials) at one path point, so
    # rounds <= path_length * per_point + the final fit's steps: no inner_folds factor ...
    per_point = _most_steps_at_one_path_point(rounds, folds)
    bound = settings.lasso_path_length * per_point + path[None]
    assert len(rounds) <= bound
    # ... while unbatched, each of these sums had a round of its own (and more: the Newton
    # terms at a warm start were asked twice), which the bound would not allow.
    unbatched = 1 + sum(path[fold] for fold in range(folds)) + sum(held_out.values()) + path[None]
    assert bound < unbatched <= UNBATCHED_ROUNDS
    assert len(rounds) <= UNBATCHED_ROUNDS / folds


def _most_steps_at_one_path_point(rounds: list[list[tuple]], folds: int) -> int:
    """The most steps an inner fold asked for at one path point. A point's held-out
    deviance rides with the fold's first step at the next point, marking the boundary;
    its first point's first step is in round 1."""
    most = 0
    for fold in range(folds):
        steps = 1
        for parts in rounds[1:]:
            roles = [role for _, role, inner in parts if inner == fold]
            if "test" in roles:
                most, steps = max(most, steps), 0
            steps += sum(role != "test" for role in roles)
        most = max(most, steps)
    return most


def test_a_site_refusing_one_part_sits_out_the_fit_which_is_the_pooled_fit_of_the_rest(
    tmp_path,
):
    """site02 has enough training cases but too few in an inner fold's held-out part: it
    refuses that part, so the whole round, and the fit restarts without it."""
    study = STUDY.updated(federation={"min_cell_size": 10})
    tables = write_site_feature_tables(tmp_path, study, sizes=(60, 36, 80))
    results, rounds = _run(tables, study)
    assert results["selection"]["excluded_sites"]["site02"] == "site02 has fewer than 10 test cases"
    assert {s["name"]: s["status"] for s in results["sites"]}["site02"] == "included"
    assert results["model"]["training_sites"] == ["site01", "site03"]
    rest = {name: path for name, path in tables.items() if name != "site02"}
    reference = pooled_reference(rest, study)
    assert results["model"]["lasso_lambda"] == pytest.approx(
        reference["model"]["lasso_lambda"], rel=1e-10
    )
    for name, value in reference["model"]["coefficients"].items():
        assert results["model"]["coefficients"][name] == pytest.approx(value, abs=1e-10)


def test_every_fold_and_the_final_fit_share_rounds_and_equal_the_pooled_study(tmp_path):
    study = STUDY.updated(validation={"scheme": "kfold", "folds": 3})
    tables = write_site_feature_tables(tmp_path, study)
    results, rounds = _run(tables, study)
    reference = pooled_reference(tables, study)
    model, pooled = results["model"], reference["model"]
    assert model["lasso_lambda"] == pytest.approx(pooled["lasso_lambda"], rel=1e-10)
    for name, value in pooled["coefficients"].items():
        assert model["coefficients"][name] == pytest.approx(value, abs=1e-10)
    for fit, pooled_fit in zip(
        results["validation"]["fits"], reference["validation"]["fits"], strict=True
    ):
        assert fit["sensitivity"] == pytest.approx(pooled_fit["sensitivity"], abs=1e-12)
    # four L1 fits (three folds and the final one) in about the rounds of the longest one
    _, holdout_rounds = _run(tables, STUDY)
    assert len(rounds) < 1.5 * len(holdout_rounds)
    assert max(len(parts) for parts in rounds) > 3 * study.validation.inner_folds
