"""A feature table a site brings: every column used or dropped with its reason, labels
coded three ways with the coding stated, incomplete rows excluded and named by row (never
passed on as NaN, which failed a whole site's ComBat), label problems named by row."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedrad.common.config import ConfigError, StudyConfig
from fedrad.common.feature_table import read_feature_table
from fedrad.common.table_import import import_table
from fedrad.simulations.feature_tables import read_table, write_site_tables

CLASSES = ("HGG", "BM")
CSV = """case_id,label,Image,diagnostics_Versions_PyRadiomics,f1,f2,const,empty
a,HGG,a.nii,3.1,1.0,10,7,
b,BM,b.nii,3.1,2.0,#VALUE!,7,
c,HGG,c.nii,3.1,,12,7,
d,,d.nii,3.1,4.0,13,7,
e,BM,e.nii,3.1,5.0,14,7,
f,hgg,f.nii,3.1,inf,15,7,
"""


def imported(text: str = CSV, clinical=None, missing_values=None):
    table = pd.read_csv(io.StringIO(text), dtype={"label": str})
    return import_table(table, "label", CLASSES, {}, clinical or {}, missing_values)


def test_every_column_is_used_or_dropped_with_its_reason():
    uses = {use.name: (use.use, use.reason) for use in imported().columns}
    assert uses == {
        "label": ("label", ""),
        "case_id": ("case id", "names the rows in messages"),
        "Image": ("dropped", "text"),
        "diagnostics_Versions_PyRadiomics": ("dropped", "pyradiomics diagnostics"),
        "f1": ("feature", ""),
        "f2": ("feature", ""),  # one #VALUE! cell does not drop the column
        "const": ("dropped", "constant"),
        "empty": ("dropped", "all missing"),
    }


def test_incomplete_rows_are_excluded_and_named_by_row_and_case():
    result = imported()
    assert result.excluded == {
        "row 3 (b)": "f2: '#VALUE!' is not a number",
        "row 4 (c)": "no f1",
        "row 5 (d)": "no label",
        "row 7 (f)": "no f1",  # inf is not a value a model can use
    }
    assert list(result.rows["case_id"]) == ["a", "e"]
    assert result.features.to_dict("list") == {"f1": [1.0, 5.0], "f2": [10.0, 14.0]}
    assert list(result.labels) == ["HGG", "BM"]


@pytest.mark.parametrize(
    ("written", "mapping"),
    [
        (["1", "0", "1"], {"1": "HGG", "0": "BM"}),
        (["true", "FALSE", "True"], {"true": "HGG", "FALSE": "BM", "True": "HGG"}),
        (["HGG", "bm", "hgg"], {"HGG": "HGG", "bm": "BM", "hgg": "HGG"}),
    ],
)
def test_labels_are_read_as_1_0_true_false_or_class_names_with_the_mapping(written, mapping):
    rows = "\n".join(f"{label},{i},{i * i}" for i, label in enumerate(written))
    result = imported(f"label,f1,f2\n{rows}\n")
    assert result.label_mapping == mapping
    assert list(result.labels) == ["HGG", "BM", "HGG"]


def test_unknown_labels_are_refused_naming_every_row():
    with pytest.raises(ConfigError) as refused:
        imported("label,f1\nHGG,1\nGBM,2\nBM,3\nmet,4\n")
    assert "row 3 'GBM', row 5 'met'" in str(refused.value)


def test_clinical_values_the_study_cannot_read_exclude_their_row():
    text = "label,age,sex,f1\nHGG,61,F,1\nBM,,M,2\nHGG,old,F,3\nBM,50,X,4\nHGG,40,M,5\n"
    result = imported(text, clinical={"age": None, "sex": ("F", "M")})
    assert result.excluded == {
        "row 3": "no age",
        "row 4": "age: 'old' is not a number",
        "row 5": "sex: 'X' is not one of the study's levels ['F', 'M']",
    }
    assert [use.use for use in result.columns if use.name in ("age", "sex")] == ["clinical"] * 2


def test_a_table_without_features_or_complete_rows_is_refused():
    with pytest.raises(ConfigError, match=r"no numeric feature column; dropped: name \(text"):
        imported("label,name\nHGG,x\nBM,y\n")
    with pytest.raises(ConfigError, match="no row of the table is complete, e.g. row 2"):
        imported("label,f1,f2\nHGG,1,\nBM,,2\nHGG,3,\nBM,,4\n")


def test_site_tables_hold_only_complete_finite_rows(tmp_path: Path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(40, 3)), columns=["f1", "f2", "f3"])
    table.insert(0, "label", ["HGG", "BM"] * 20)
    table.loc[5, "f2"] = np.nan
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    result = read_table(csv, "label", StudyConfig())
    assert result.excluded == {"row 7": "no f2"}
    paths = write_site_tables(result, csv, tmp_path / "sites", StudyConfig(), split_sites=2)
    parts = [read_feature_table(path)[0] for path in paths.values()]
    assert sum(len(part) for part in parts) == 39
    assert all(np.isfinite(part[["f1", "f2", "f3"]].to_numpy()).all() for part in parts)


def test_under_impute_mean_rows_missing_a_feature_stay_with_their_gaps():
    result = imported(missing_values="impute-mean")
    assert result.excluded == {"row 5 (d)": "no label"}  # a label is never imputed
    assert list(result.rows["case_id"]) == ["a", "b", "c", "e", "f"]
    f1, f2 = result.features["f1"].tolist(), result.features["f2"].tolist()
    assert f1[:2] + f1[3:4] == [1.0, 2.0, 5.0] and np.isnan(f1[2]) and np.isnan(f1[4])  # inf
    assert np.isnan(f2[1]) and f2[2:] == [12.0, 14.0, 15.0]  # '#VALUE!' is a gap
    assert result.imputed == {"f1": 2, "f2": 1}


def test_under_impute_mean_site_tables_keep_the_gaps_for_each_fit(tmp_path: Path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(40, 3)), columns=["f1", "f2", "f3"])
    table.insert(0, "label", ["HGG", "BM"] * 20)
    table.loc[[5, 9], "f2"] = np.nan
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    study = StudyConfig(missing_values="impute-mean")
    result = read_table(csv, "label", study)
    assert result.excluded == {} and result.imputed == {"f2": 2}
    paths = write_site_tables(result, csv, tmp_path / "sites", study, split_sites=2, site_effects=1)
    parts = [read_feature_table(path)[0] for path in paths.values()]
    assert sum(len(part) for part in parts) == 40
    assert sum(int(part["f2"].isna().sum()) for part in parts) == 2
    assert all(part[["f1", "f3"]].notna().all().all() for part in parts)


def test_the_study_states_the_rule():
    assert StudyConfig(missing_values="exclude-case").missing_values == "exclude-case"
    assert StudyConfig(missing_values="impute-mean").missing_values == "impute-mean"
    with pytest.raises(ValueError, match="missing_values"):
        StudyConfig(missing_values="impute-median")


def test_an_unset_rule_leaves_the_study_hash_as_before():
    """The hash of a study without the option is the hash of its settings without the key,
    as before the option existed; stated, the rule is covered."""
    unset = StudyConfig()
    study = unset.model_dump(mode="json")
    del study["missing_values"], study["differential_privacy"]
    del study["model"]["compare"], study["model"]["compare_without_clinical"]  # off: left out
    payload = json.dumps(
        {"study": study, "extraction": unset.extraction_hash}, sort_keys=True, separators=(",", ":")
    )
    assert unset.study_hash == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert StudyConfig(missing_values="exclude-case").study_hash != unset.study_hash
    assert StudyConfig(missing_values="impute-mean").study_hash != unset.study_hash


def test_imputation_under_leave_one_site_out_is_refused_where_its_totals_give_each_site():
    """Each fit's imputation total is over all sites but one: together they solve for each
    site's sums, so a study that masks them cannot impute so; one that sends them in the
    clear holds each to the rules for sums sent alone."""
    loso = {"missing_values": "impute-mean", "validation": {"scheme": "leave-one-site-out"}}
    with pytest.raises(ValueError, match="give each site's own sums"):
        StudyConfig.model_validate(loso)
    clear = StudyConfig.model_validate(loso | {"federation": {"secure_aggregation": False}})
    assert clear.missing_values == "impute-mean"
