"""Alembic's migrations of the run store, run by `open_store` at open time (upgrade to
head); each file in versions/ is one revision, the first the baseline."""
