"""The run store: every site, study and run the aggregator has seen, written as each study
runs (writer.py), read page by page by a dashboard or `fedrad show` (reader.py). A SQLite
file by default (runs.db beside results.json), PostgreSQL by URL; docs/store.md."""
