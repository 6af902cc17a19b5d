"""Alembic's entry: migrates the connection `open_store` hands over (never a URL of its own),
so every store, SQLite file or PostgreSQL schema, is upgraded the same way."""

from alembic import context

from fedrad.server.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
