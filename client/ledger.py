"""What a site has given away in a study, kept on its own disk across runs (docs/privacy.md 5).

Every run starts with a fresh Flower context, so what bounds an aggregator over a whole
study cannot live there: the quantities the site released under secure aggregation and
among which sites (else a new run over fewer sites gives a site's share by difference),
the noised releases charged to its privacy budget (else each run has a fresh one), and
the coefficient vectors each fit was asked at (else each run has a fresh cap). One file
per study the site runs, `ledger/<study hash>.jsonl` beside its feature table: a header,
then one JSON record a line, each appended and synced to disk before the reply it
guards leaves the site. A site without a folder of its own (the simulation's pooled
reference) keeps its ledger for the run, in its context state.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ConfigRecord, RecordDict

from fedrad.client.site_log import site_log
from fedrad.common.config import StudyConfig

LEDGER_DIR = "ledger"
FORMAT = 1
_STATE = "ledger"


class LedgerUnusable(Exception):
    """A ledger this site cannot trust: it answers nothing of the study; `code` is all the
    aggregator is told, the detail goes to the site's log."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


def ledger_path(folder: Path, study: StudyConfig) -> Path:
    """Where the site in `folder` keeps its ledger of `study` (the study it checked)."""
    return Path(folder) / LEDGER_DIR / f"{study.study_hash}.jsonl"


@dataclass
class Given:
    """What a ledger's records add up to."""

    released: dict[str, list[str]] = field(default_factory=dict)  # quantity -> its sites
    noised: int = 0
    asked: dict[str, list[str]] = field(default_factory=dict)  # fit -> coefficient vectors

    def add(self, record: dict) -> None:
        """Add one record, or raise ValueError if it is none a ledger holds."""
        match record:
            case {"released": list(quantities), "sites": list(sites)} if _texts(
                *quantities, *sites
            ):
                self.released |= dict.fromkeys(quantities, sorted(sites))
            case {"noised": int(count)} if count > 0:
                self.noised += count
            case {"asked": list(asks)} if all(
                isinstance(ask, list) and len(ask) == 2 and _texts(*ask) for ask in asks
            ):
                for fit, vector in asks:
                    self.asked.setdefault(fit, []).append(vector)
            case _:
                raise ValueError("not a ledger record")


def _texts(*values) -> bool:
    return all(isinstance(value, str) for value in values)


class FileLedger:
    """A site's ledger of one study in its folder. Read again whenever the file changed
    (another process of the site may append), under an exclusive lock as every append."""

    def __init__(self, path: Path, study_hash: str, site: str):
        self.path, self.site = path, site
        self.header = {"fedrad-ledger": FORMAT, "study": study_hash, "site": site}
        self.given, self.seen = Given(), None

    def current(self) -> Given:
        if not self.path.exists():
            self._create()
        if _mark(self.path.stat()) != self.seen:
            with _locked(self.path) as descriptor:
                self._read(descriptor)
        return self.given

    def record(self, record: dict) -> None:
        """Append `record`, synced to disk: only then may the reply it guards leave."""
        given = self.current()
        Given().add(record)  # a record no ledger holds is never written
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with _locked(self.path) as descriptor:
            before = os.fstat(descriptor)
            os.lseek(descriptor, 0, os.SEEK_END)
            written = os.write(descriptor, line)
            if written != len(line):
                raise OSError(f"{self.path}: wrote {written} of {len(line)} bytes")
            os.fsync(descriptor)
            after = os.fstat(descriptor)
        given.add(record)
        # read again next time if another process wrote since this one last read
        self.seen = _mark(after) if _mark(before) == self.seen else None

    def _create(self) -> None:
        """Write the header to a new file and link it in place: never half a header, and
        never over a ledger another process made meanwhile."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, (json.dumps(self.header, sort_keys=True) + "\n").encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, self.path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def _read(self, descriptor: int) -> None:
        with open(descriptor, "rb", closefd=False) as source:
            text = source.read()
        complete = text.rfind(b"\n") + 1
        if 0 < complete < len(text):
            # a record cut short by a crash: written first, so its reply never left
            os.ftruncate(descriptor, complete)
            os.fsync(descriptor)
            self._log().warning("ledger %s: dropped a record cut short", self.path.name)
        lines = text[:complete].splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("fedrad-ledger") != FORMAT:
            raise LedgerUnusable("ledger-corrupt", f"{self.path} is not a fedrad ledger")
        if header != self.header:
            raise LedgerUnusable(
                "ledger-foreign",
                f"{self.path} is the ledger of site {header.get('site')!r} in study "
                f"{header.get('study')!r}, not of {self.site!r} in this one",
            )
        given = Given()
        for number, line in enumerate(lines[1:], start=2):
            try:
                given.add(json.loads(line))
            except ValueError as exc:
                raise LedgerUnusable(
                    "ledger-corrupt", f"{self.path}: line {number} is not a ledger record"
                ) from exc
        self.given, self.seen = given, _mark(os.fstat(descriptor))

    def _log(self):
        return site_log(self.site, self.path.parent.parent)


class _locked:
    """The ledger file, open and exclusively locked for one read or append."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> int:
        self.descriptor = os.open(self.path, os.O_RDWR)
        fcntl.flock(self.descriptor, fcntl.LOCK_EX)
        return self.descriptor

    def __exit__(self, *_exc) -> None:
        os.close(self.descriptor)  # releases the lock


def _mark(stat: os.stat_result) -> tuple[int, int, int]:
    """What changes whenever the file does: inode (a copy put in place), size, mtime."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class StateLedger:
    """The ledger of a site with no folder (the simulation's pooled reference, which runs
    on one machine and sends nothing): it lasts the run, in the context state."""

    def __init__(self, state: RecordDict):
        self.state = state

    def _records(self) -> list[dict]:
        return json.loads(str(self.state[_STATE]["records"])) if _STATE in self.state else []

    def current(self) -> Given:
        given = Given()
        for record in self._records():
            given.add(record)
        return given

    def record(self, record: dict) -> None:
        Given().add(record)
        records = json.dumps([*self._records(), record])
        self.state[_STATE] = ConfigRecord({"records": records})


# This process's view of every ledger file it opened, by (path, study, site).
_FILES: dict[tuple[str, str, str], FileLedger] = {}


def bind_ledger(state: RecordDict, folder: Path | None, site: str, study: StudyConfig) -> None:
    """Make the ledger of `site` in `study` (in `folder`, if it has one) the one the
    context's handlers use, reading it first: a ledger it cannot trust refuses."""
    if folder is None:
        return
    path = str(ledger_path(folder, study))
    state[_STATE] = ConfigRecord({"path": path, "study": study.study_hash, "site": site})
    site_ledger(state).current()


def site_ledger(state: RecordDict) -> FileLedger | StateLedger:
    """The ledger `bind_ledger` made this context's, or one for the run alone."""
    record = state[_STATE] if _STATE in state else ConfigRecord()
    if "path" not in record:
        return StateLedger(state)
    key = (str(record["path"]), str(record["study"]), str(record["site"]))
    if key not in _FILES:
        _FILES[key] = FileLedger(Path(key[0]), key[1], key[2])
    return _FILES[key]
