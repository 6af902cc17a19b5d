"""Small helpers shared by tests."""

from pathlib import Path

from fedrad.common.feature_table import feature_columns, read_feature_table


def features_of(tables: dict[str, Path]) -> list[str]:
    """The sorted feature names of the first table (test tables share them)."""
    table, _ = read_feature_table(next(iter(tables.values())))
    return sorted(feature_columns(table))
