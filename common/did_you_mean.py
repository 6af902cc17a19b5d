"""'Did you mean ...?' for a misspelt name: a column, a tissue, a setting."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_match(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to `name` (difflib), if any is close."""
    close = difflib.get_close_matches(name, [str(word) for word in known], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a known name is close to `name`, else ''."""
    match = close_match(name, known)
    return f" (did you mean {match!r}?)" if match else ""


def did_you_mean_each(names: Iterable[str], known: Iterable[str]) -> str:
    """' (did you mean 'a' for 'x', 'b' for 'y'?)' for those of `names` close to a known
    name; '' when none is."""
    known = list(known)
    pairs = [(match, name) for name in names if (match := close_match(name, known))]
    if not pairs:
        return ""
    return f" (did you mean {', '.join(f'{m!r} for {n!r}' for m, n in pairs)}?)"
