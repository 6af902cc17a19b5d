"""Tokens are kept only as their SHA-256, in the dashboard's own table of the store's
database; a token names its holder and role, and a name holds one token at a time. On
SQLite and PostgreSQL alike (the shared `store` fixture)."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from fedrad.server.dashboard.tokens import Role, TokenExists, add_token, holder_of


@pytest.fixture
def engine(store):
    return store


def test_a_token_is_stored_only_as_its_sha256(engine):
    token = add_token(engine, "cora", Role.coordinator)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT name, role, sha256 FROM dashboard_tokens")).all()
    assert rows == [("cora", "coordinator", hashlib.sha256(token.encode()).hexdigest())]
    assert len(token) >= 43  # 32 random bytes, base64url


def test_a_token_names_its_holder_and_role_and_a_wrong_one_nobody(engine):
    token = add_token(engine, "vera", Role.viewer)
    holder = holder_of(engine, token)
    assert (holder.name, holder.role) == ("vera", Role.viewer)
    assert holder_of(engine, token + "x") is None


def test_a_second_token_for_the_same_name_is_refused(engine):
    add_token(engine, "vera", Role.viewer)
    with pytest.raises(TokenExists, match="remove it first"):
        add_token(engine, "vera", Role.coordinator)
