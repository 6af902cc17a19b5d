"""What a running study tells whoever watches it: the census, each event, each round of a
fit and each finished phase, as they happen. The study knows only this interface, so the run
store (server/store/) can record a run as it goes without the protocol importing a
database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedrad.server.checkpoint import Phase
    from fedrad.server.federation import SiteRecord


class StudyObserver:
    """Watches nothing: the default of a study nobody records (a pooled reference, a test)."""

    def census(self, sites: Iterable[SiteRecord]) -> None:
        """The sites as the census found them, each with its status and counts as sent."""

    def event(self, entry: dict) -> None:
        """One entry of the study's event log ({"event", "site", "reason"})."""

    def round(self, entry: dict) -> None:
        """One round of a fit as it ends (a Newton iteration's deviance, an MLP round's
        training loss), before its phase does."""

    def phase(self, phase: Phase, loaded: bool = False) -> None:
        """A phase that finished (or was loaded from a checkpoint), with its rounds."""


class RoundLog(list):
    """A list of rounds that tells `observer` of each one appended: fits append their rounds
    as they go, so a long fit shows its progress before its phase ends."""

    def __init__(self, observer: StudyObserver):
        super().__init__()
        self.observer = observer

    def append(self, entry: dict) -> None:
        super().append(entry)
        self.observer.round(entry)
