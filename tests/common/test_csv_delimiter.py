"""Comma, semicolon or tab, told from the text; a comma when it cannot be told."""

from __future__ import annotations

import pytest

from fedrad.common.csv_delimiter import delimiter_name, sniff_delimiter


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("a,b,c\n1,2,3\n", "comma"),
        ("a;b;c\n1;2,5;3\n", "semicolon"),
        ("a\tb\tc\n1\t2\t3\n", "tab"),
        ("a,b,c\n1,x;y,3\n", "comma"),
        ("case_id\nc1\n", "comma"),
    ],
)
def test_the_delimiter_is_told_from_the_text(text: str, name: str):
    assert delimiter_name(sniff_delimiter(text)) == name


def test_other_delimiters_are_not_guessed():
    assert sniff_delimiter("a|b|c\n1|2|3\n") == ","
