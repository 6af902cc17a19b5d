"""Options that contradict each other, or mean nothing without another, refused up front.

Without this, one of two options would silently win (e.g. `--site-column` over
`--split-sites`) and the user would not learn that the other was ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click

from fedrad.common.user_error import UserError


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user typed option `name` (its value may equal the default)."""
    source = ctx.get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def refuse_pairs(ctx: click.Context, pairs: Mapping[tuple[str, str], str]) -> None:
    """UserError for the first pair of options both given; the value says why they clash."""
    for (first, second), why in pairs.items():
        if _given(ctx, first) and _given(ctx, second):
            raise UserError(f"{_flag(first)} and {_flag(second)} cannot go together: {why}")


def refuse_without(ctx: click.Context, needed: str, dependents: Sequence[str]) -> None:
    """UserError when an option of `dependents` is given without option `needed`."""
    alone = [_flag(name) for name in dependents if _given(ctx, name)]
    if alone and not _given(ctx, needed):
        verb = "applies" if len(alone) == 1 else "apply"
        raise UserError(f"{', '.join(alone)} only {verb} with {_flag(needed)}, which is not given")
