"""Which delimiter a CSV file uses: comma, semicolon or tab.

A spreadsheet saved where the decimal mark is a comma writes semicolons, and some tools
write tabs; read with a comma, such a file seems to lack every column.
"""

from __future__ import annotations

import csv

DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def sniff_delimiter(text: str) -> str:
    """The delimiter of the CSV `text` among DELIMITER_NAMES (csv.Sniffer, restricted to
    them); a comma when the text cannot tell (a single column, say)."""
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(DELIMITER_NAMES)).delimiter
    except csv.Error:
        return ","


def delimiter_name(delimiter: str) -> str:
    """'comma', 'semicolon' or 'tab'."""
    return DELIMITER_NAMES[delimiter]
