"""The refusals of secure aggregation, under one base class a caller can catch.

A refusal is a protocol event an operator has to read, so each message names what was
refused and, where there is one, the site; none is a bare cryptography exception.
"""


class SecAggError(ValueError):
    """Any refusal by the secure-aggregation blocks."""


class KeyVerificationError(SecAggError):
    """A relayed exchange key does not verify: it may be the aggregator's, not the site's."""


class TagReuseError(SecAggError):
    """A release tag was used twice: the same masks on two values would leak their difference."""


class EncodingError(SecAggError):
    """A value cannot be encoded (not finite, out of range), or a total is still masked."""


class SurvivorSetError(SecAggError):
    """Sites were not all told the same survivor set."""


class RevealRefused(SecAggError):
    """A reveal request would expose a site's own value."""


class UnmaskError(SecAggError):
    """The aggregator's inputs do not make a complete, consistent unmasking."""
