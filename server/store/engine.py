"""Opening a store: the engine for its URL, its tables migrated to the newest revision.

Migrations run through Alembic's API at open time, so an old runs.db is upgraded in place
by whichever FedRad opens it, and nobody runs a migration command by hand."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).parent / "migrations"
STORE_FILE = "store.url"  # in an aggregator's state folder: the store `server start` chose


def store_url(folder: Path) -> str:
    """The default store of a state or results folder: its runs.db."""
    return f"sqlite:///{(Path(folder) / 'runs.db').resolve()}"


def state_store_url(state: Path) -> str:
    """The store of an aggregator's state folder: the one `fedrad server start` last chose
    for it, else its runs.db; registration, start and resume all write to this one."""
    chosen = Path(state) / STORE_FILE
    return chosen.read_text(encoding="utf-8").strip() if chosen.is_file() else store_url(state)


def open_store(url: str, revision: str = "head") -> Engine:
    """The store at `url`, migrated to `revision` (head unless a test wants an old one).
    A SQLite file's folder is made; its foreign keys are enforced, as PostgreSQL's are, and
    it keeps a write-ahead log, so a dashboard reads while the study writes and a write
    commits without waiting for the disk twice."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine, revision)
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # a crashed process loses no commit; a power cut may lose the last few, never the file
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
