"""`fedrad dashboard token add NAME --role viewer` prints the token once and keeps only its
hash; `fedrad dashboard` without --db says what it needs."""

from __future__ import annotations

from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.server.dashboard.tokens import Role, holder_of
from fedrad.server.store.engine import open_store


def test_token_add_prints_a_token_that_signs_in_as_that_role(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    done = CliRunner().invoke(
        app, ["dashboard", "token", "add", "cora", "--role", "coordinator", "--db", url]
    )
    assert done.exit_code == 0, done.output
    token = done.output.strip().splitlines()[-1]
    engine = open_store(url)
    holder = holder_of(engine, token)
    engine.dispose()
    assert (holder.name, holder.role) == ("cora", Role.coordinator)


def test_token_add_refuses_a_name_that_has_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    CliRunner().invoke(app, ["dashboard", "token", "add", "vera", "--db", url])
    again = CliRunner().invoke(app, ["dashboard", "token", "add", "vera", "--db", url])
    assert again.exit_code == 2 and "remove it first" in again.output


def test_token_remove_withdraws_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    CliRunner().invoke(app, ["dashboard", "token", "add", "vera", "--db", url])
    assert (
        CliRunner().invoke(app, ["dashboard", "token", "remove", "vera", "--db", url]).exit_code
        == 0
    )
    gone = CliRunner().invoke(app, ["dashboard", "token", "remove", "vera", "--db", url])
    assert gone.exit_code == 2 and "no token named 'vera'" in gone.output


def test_serving_without_a_store_url_asks_for_one():
    done = CliRunner().invoke(app, ["dashboard"], env={"FEDRAD_DB": ""})
    assert done.exit_code == 2 and "--db" in done.output
