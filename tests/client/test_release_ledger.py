"""A curious aggregator submits the same study again as a new run, where each site starts
with a fresh Flower context: it asks a quantity over fewer sites than before (the two
totals differ by the share of the site it left out), spends a second differential-privacy
budget, or asks a fit at more coefficients than its cap. Each site's ledger on its own
disk, kept per study across runs, refuses all three, while an identical re-run is served
and gives the same totals; a damaged or foreign ledger refuses with a code, the detail in
the site's own log; another study's ledger is not this one's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_study, site_grid
from test_secure_aggregation import (
    BASE,
    FIELDS,
    SITES,
    Aggregator,
    _attempt,
    _mask,
    _unmask,
    plain_terms,
    refused,
)

from fedrad.client.identity import load_or_create_identity, public_hex
from fedrad.client.ledger import ledger_path
from fedrad.common.config import StudyConfig
from fedrad.common.differential_privacy import Budget
from fedrad.common.messages import REFUSED, Kind, Request, encode_request
from fedrad.common.pipeline import Partition
from fedrad.server.federation import GridTransport
from fedrad.simulations.synth.features import write_site_feature_tables

A, B, C = SITES


@pytest.fixture
def tables(tmp_path) -> dict[str, Path]:
    """Fresh site folders for each test: a site's ledger lives in its folder."""
    return write_site_feature_tables(tmp_path / "sites", BASE, sizes=(36, 32, 40))


@pytest.fixture
def study(tables) -> StudyConfig:
    pins = {name: public_hex(load_or_create_identity(p.parent)) for name, p in tables.items()}
    return BASE.updated(federation={"site_keys": pins})


def _new_run(tables, study, names=SITES) -> Aggregator:
    """A new run of the study: fresh contexts at every site, keys exchanged among `names`."""
    agg = Aggregator(site_grid(tables, study))
    agg.exchange(names)
    return agg


# -- differencing across runs ----------------------------------------------------------------------
def test_a_new_run_over_fewer_sites_cannot_take_out_the_share_of_the_site_it_leaves_out(
    tables, study
):
    first = _new_run(tables, study)
    _unmask(first, study, FIELDS, _mask(first, study, tables, FIELDS, list(SITES)))
    second = _new_run(tables, study, names=[A, B])  # site03 is never messaged
    replies = _mask(second, study, tables, FIELDS, [A, B])
    # served, the two totals would differ by exactly site03's Newton terms
    assert {n: refused(r) for n, r in replies.items()} == dict.fromkeys(
        (A, B), "released-among-other-sites"
    )


def test_a_new_run_over_more_sites_is_refused_by_the_sites_of_the_first(tables, study):
    first = _new_run(tables, study, names=[A, B])
    _unmask(first, study, FIELDS, _mask(first, study, tables, FIELDS, [A, B]))
    second = _new_run(tables, study)
    replies = _mask(second, study, tables, FIELDS, list(SITES))
    assert {n: refused(r) for n, r in replies.items()} == {
        A: "released-among-other-sites",
        B: "released-among-other-sites",
        C: None,  # site03 never released it: it masks, but no total can be unmasked
    }


def test_an_identical_release_in_a_new_run_is_served_and_unmasks_to_the_same_total(tables, study):
    first = _new_run(tables, study)
    total = _unmask(first, study, FIELDS, _mask(first, study, tables, FIELDS, list(SITES)))
    second = _new_run(tables, study)
    again = _unmask(second, study, FIELDS, _mask(second, study, tables, FIELDS, list(SITES)))
    np.testing.assert_array_equal(again, total)
    np.testing.assert_allclose(total, sum(plain_terms(tables, study).values()), atol=1e-9)


def test_two_releases_masked_before_either_is_revealed_cannot_be_differenced(tables, study):
    agg = _new_run(tables, study)
    everyone = _mask(agg, study, tables, FIELDS, list(SITES))
    fewer = _mask(agg, study, tables, _attempt(1), [A, B])  # nothing is released yet: masked
    _unmask(agg, study, FIELDS, everyone)
    with pytest.raises(AssertionError, match="released-among-other-sites"):
        _unmask(agg, study, _attempt(1), fewer)  # revealed, it would give site03's share


def test_the_ledger_of_another_study_is_not_this_ones(tables, study):
    first = _new_run(tables, study)
    _unmask(first, study, FIELDS, _mask(first, study, tables, FIELDS, list(SITES)))
    other = StudyConfig.model_validate({**study.model_dump(mode="json"), "name": "other"})
    second = _new_run(tables, other, names=[A, B])
    total = _unmask(second, other, FIELDS, _mask(second, other, tables, FIELDS, [A, B]))
    plain = plain_terms(tables, other, names=[A, B])
    np.testing.assert_allclose(total, plain[A] + plain[B], atol=1e-9)
    assert ledger_path(tables[A].parent, other) != ledger_path(tables[A].parent, study)


# -- a study re-run end to end ---------------------------------------------------------------------
def test_a_whole_study_run_again_is_served_and_gives_the_same_results(tables, study):
    first = run_study(site_grid(tables, study), study)
    ledgers = {name: ledger_path(path.parent, study).read_text() for name, path in tables.items()}
    second = run_study(site_grid(tables, study), study)
    # nothing new was released or asked: the ledgers are as the first run left them
    assert ledgers == {n: ledger_path(p.parent, study).read_text() for n, p in tables.items()}
    for part in ("model", "metrics", "validation"):  # as text: an undefined figure is NaN
        assert json.dumps(second[part], default=str) == json.dumps(first[part], default=str)
    assert [s["status"] for s in second["sites"]] == ["included"] * 3


# -- the privacy budget and the caps across runs ---------------------------------------------------
CLEAR = BASE.updated(federation={"secure_aggregation": False})
NOISE = {"noise_multiplier": 1.0, "input_clip": 2.0}


def _newton(tables, study, beta) -> dict:
    from test_secure_aggregation import newton

    request = newton(tables, study, fields=None, beta=beta)
    return encode_request(Request(request.pipeline, Partition("holdout")), ())[0]


def _refusals(tables, study, betas) -> list[str | None]:
    """What site01 answers, in a new run, to NEWTON requests at each of `betas`."""
    transport = GridTransport(site_grid({A: tables[A]}, study), timeout_s=60)
    codes = []
    for beta in betas:
        reply = transport.ask(Kind.NEWTON, {1: _newton(tables, study, beta)})[0][1]
        codes.append(reply.values.get(REFUSED))
    return codes


def test_a_new_run_does_not_give_a_site_a_fresh_privacy_budget(tables):
    noised = CLEAR.updated(differential_privacy=NOISE)
    ceiling = Budget(noised.differential_privacy, 3).epsilon * 1.0001
    study = noised.updated(differential_privacy={**NOISE, "max_epsilon": ceiling})
    assert _refusals(tables, study, [0.1, 0.1]) == [None, None]
    # the same request again in a new run: one more release fits the ceiling, then none
    assert _refusals(tables, study, [0.1, 0.1, 0.1]) == [None] + ["privacy-budget-spent"] * 2


def test_a_new_run_does_not_reset_a_fits_cap_on_coefficient_vectors(tables):
    study = CLEAR.updated(model={"max_newton_iterations": 4})
    nudged = [0.1 + i * 1e-15 for i in range(6)]
    assert _refusals(tables, study, nudged[:3]) == [None] * 3
    # in a new run, the fit's vectors asked before are free; one new one fits the cap
    assert _refusals(tables, study, nudged) == [None] * 4 + ["requests-per-fit-exceeded"] * 2


# -- a damaged or foreign ledger -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda path, other: path.write_text("not a ledger\n"), "ledger-corrupt"),
        (lambda path, other: path.write_text(path.read_text() + "{]\n"), "ledger-corrupt"),
        (lambda path, other: path.write_bytes(other.read_bytes()), "ledger-foreign"),
    ],
    ids=["garbage", "a-damaged-record", "another-sites-ledger"],
)
def test_a_damaged_or_foreign_ledger_refuses_with_a_code_and_a_line_in_the_site_log(
    tables, study, damage, code
):
    run_study(site_grid(tables, study), study)
    own, other = (ledger_path(tables[n].parent, study) for n in (A, B))
    damage(own, other)
    grid = site_grid(tables, study)
    agg = Aggregator(grid)
    reply = agg.ask_one(Kind.CENSUS, A, Request())
    assert refused(reply) == code  # the code alone: nothing of the file reaches the aggregator
    log = (tables[A].parent / "site.log").read_text()
    assert f"({code})" in log.splitlines()[-1]
    assert str(own.name) in log.splitlines()[-1]
    with pytest.raises(AssertionError):  # and it stays refused: nothing overwrote the file
        agg.exchange([A, B])


def test_a_ledger_record_cut_short_by_a_crash_is_dropped_since_its_reply_never_left(tables, study):
    first = _new_run(tables, study)
    _unmask(first, study, FIELDS, _mask(first, study, tables, FIELDS, list(SITES)))
    path = ledger_path(tables[A].parent, study)
    path.write_text(path.read_text() + json.dumps({"released": ["x"], "sites": [A]})[:-5])
    second = _new_run(tables, study)
    assert refused(second.ask_one(Kind.CENSUS, A, Request())) is None
    assert path.read_text().endswith("\n")
