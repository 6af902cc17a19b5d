"""Dashboard access tokens, kept hashed in a table of the dashboard's own in the store's
database (`dashboard_tokens`, made by this module's metadata, not the store's migrations,
so the store's schema stays its engineer's).

A token is 32 random bytes, so its SHA-256 is enough: a slow hash (scrypt, PBKDF2) only
slows the guessing of low-entropy secrets such as passwords, and 256 random bits cannot be
guessed. A plain digest also lets a request find its token by an indexed lookup."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import DateTime, Engine, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Role(StrEnum):
    viewer = "viewer"  # reads every page
    coordinator = "coordinator"  # also starts and stops runs


class _Base(DeclarativeBase):
    pass


class TokenRow(_Base):
    __tablename__ = "dashboard_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Holder:
    """Who a valid token belongs to."""

    name: str
    role: Role


class TokenExists(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_table(engine: Engine) -> None:
    _Base.metadata.create_all(engine)


def add_token(engine: Engine, name: str, role: Role) -> str:
    """A new token for `name`; only its digest is kept, so this is the one time it is seen."""
    ensure_table(engine)
    token = secrets.token_urlsafe(32)
    row = TokenRow(name=name, role=role.value, sha256=digest(token), created_at=datetime.now(UTC))
    try:
        with Session(engine) as session, session.begin():
            session.add(row)
    except IntegrityError as exc:
        raise TokenExists(f"a token named {name!r} exists; remove it first") from exc
    return token


def remove_token(engine: Engine, name: str) -> bool:
    ensure_table(engine)
    with Session(engine) as session, session.begin():
        return session.execute(delete(TokenRow).where(TokenRow.name == name)).rowcount > 0


def holder_of(engine: Engine, token: str) -> Holder | None:
    with Session(engine) as session:
        row = session.scalar(select(TokenRow).where(TokenRow.sha256 == digest(token)))
        return None if row is None else Holder(row.name, Role(row.role))
