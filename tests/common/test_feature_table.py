"""The feature table's parquet round trip: values, dtypes, column order and provenance."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fedrad.common.feature_table import read_feature_table, write_feature_table


def _table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "case_id": pd.Series([f"c{i}" for i in range(rows)], dtype="string"),
            "label": pd.Series(["HGG", "BM"] * (rows // 2) + ["HGG"] * (rows % 2), dtype="string"),
            "clinical_age": rng.uniform(20, 80, rows),
            "clinical_sex": pd.Series((["F", "M", None] * rows)[:rows], dtype="string"),
        }
    )
    features = pd.DataFrame(
        rng.normal(size=(rows, 40)), columns=[f"t1c_tumour_original_glcm_F{i}" for i in range(40)]
    )
    table = pd.concat([table, features], axis=1)
    table.insert(10, "t2_tumour_original_shape_Count", np.arange(rows, dtype=np.int64))
    if rows:
        table.iloc[rows - 1, 12] = np.nan
        table.iloc[0, 13] = -0.0
    return table.set_axis(range(100, 100 + rows))  # a caller's index is not stored


@pytest.mark.parametrize("rows", [0, 1, 7])
def test_round_trip_keeps_values_dtypes_order_and_provenance(tmp_path, rows):
    table = _table(rows)
    provenance = {"extraction_hash": "abc", "cases": rows}
    write_feature_table(table, tmp_path / "t.parquet", provenance)
    back, stored = read_feature_table(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, table.reset_index(drop=True))
    assert stored == provenance
    if rows:  # bit for bit, the sign of zero included
        assert np.signbit(back.iloc[0, 13])


def test_feature_columns_are_not_dictionary_encoded(tmp_path):
    write_feature_table(_table(7), tmp_path / "t.parquet", {})
    columns = pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0)
    encodings = {
        columns.column(i).path_in_schema: columns.column(i).encodings
        for i in range(columns.num_columns)
    }
    assert any("DICTIONARY" in encoding for encoding in encodings["case_id"])
    assert not any("DICTIONARY" in e for e in encodings["t1c_tumour_original_glcm_F0"])
