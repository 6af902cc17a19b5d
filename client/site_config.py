"""The site config: how this site's files speak the study's language.

Two hospitals may number the same tissue differently in their label maps (BraTS 2020 puts
enhancing tumour at 4, another tool at 1) or may lump tissues together (one label for the
whole tumour core). The site config maps the site's label values onto the study's tissues
and names the manifest; `SiteLayout` then says which study regions and sequences this site
can provide, and why the others are missing. None of it enters the extraction hash: a site
differs from the others only in what it declares here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from fedrad.client.label_conventions import preset_labels
from fedrad.common.config import ConfigError, ExtractionSettings, load_yaml_config
from fedrad.common.did_you_mean import did_you_mean_each


class SiteConfig(BaseModel):
    """The YAML a site operator writes; paths are relative to that file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    manifest: Path | None = None
    labels: dict[int, tuple[str, ...]] | None = None
    missing_sequences: tuple[str, ...] = ()
    _path: Path | None = PrivateAttr(default=None)  # the YAML it was read from

    @field_validator("labels", mode="before")
    @classmethod
    def _one_or_more_tissues(cls, value: object) -> object:
        """Accept a preset name (`labels: brats2021`), `4: enhancing` and
        `2: [enhancing, necrosis]`."""
        if isinstance(value, str):
            value = preset_labels(value)
        if not isinstance(value, dict):
            return value
        return {key: (item,) if isinstance(item, str) else item for key, item in value.items()}

    @classmethod
    def from_yaml(cls, path: str | Path) -> SiteConfig:
        """Read and validate; a relative `manifest` is resolved against the file's folder."""
        path = Path(path)
        config = load_yaml_config(cls, path, "site config")
        if config.manifest is not None and not config.manifest.is_absolute():
            config = config.model_copy(update={"manifest": path.parent / config.manifest})
        config._path = path
        return config

    @property
    def described(self) -> str:
        """How errors name this config: its file, or where its settings came from."""
        return f"site config {self._path}" if self._path else "site config (no --site file)"

    def with_labels(self, preset: str) -> SiteConfig:
        """This config with the label convention of a preset (`--labels`); refuses a config
        that states its own, as two statements could disagree."""
        if self.labels is not None:
            raise ConfigError(
                f"--labels {preset} and the `labels` of {self.described} both state the label "
                "convention; keep one"
            )
        try:
            labels = preset_labels(preset)
        except ValueError as exc:
            raise ConfigError(f"--labels: {exc}") from exc
        config = SiteConfig.model_validate({**self.model_dump(), "labels": labels})
        config._path = self._path
        return config


@dataclass(frozen=True)
class SiteLayout:
    """What this site can extract: its sequences, label meanings and available regions."""

    sequences: tuple[str, ...]
    missing_sequences: tuple[str, ...]
    labels: dict[int, frozenset[str]]
    regions: dict[str, tuple[int, ...]]  # available region -> the site label values it unites
    missing_regions: dict[str, str]  # region -> why this site cannot delineate it


def default_labels(settings: ExtractionSettings) -> dict[int, tuple[str, ...]]:
    """Without a site config, label value i + 1 means the study's i-th tissue."""
    return {index + 1: (tissue,) for index, tissue in enumerate(settings.tissues)}


def site_layout(site: SiteConfig, settings: ExtractionSettings) -> SiteLayout:
    """Check the site config against the study; errors name the site-config key."""
    labels = site.labels if site.labels is not None else default_labels(settings)
    problems = []
    for value, tissues in labels.items():
        if value <= 0:
            problems.append(f"labels.{value}: label values must be positive (0 is background)")
        unknown = [tissue for tissue in tissues if tissue not in settings.tissues]
        if not tissues or unknown:
            problems.append(
                f"labels.{value}: {unknown or 'no tissue'} not among the study tissues "
                f"({', '.join(settings.tissues)}){did_you_mean_each(unknown, settings.tissues)}"
            )
    unknown_sequences = [name for name in site.missing_sequences if name not in settings.sequences]
    if unknown_sequences:
        problems.append(
            f"missing_sequences: {unknown_sequences} are not study sequences "
            f"({', '.join(settings.sequences)})"
            f"{did_you_mean_each(unknown_sequences, settings.sequences)}"
        )
    if problems:
        lines = "\n".join(f"  {line}" for line in problems)
        raise ConfigError(f"invalid {site.described}:\n{lines}")
    meaning = {value: frozenset(tissues) for value, tissues in labels.items()}
    regions, missing = {}, {}
    for region, members in settings.regions.items():
        values, reason = _delineate(frozenset(members), meaning)
        if reason:
            missing[region] = reason
        else:
            regions[region] = values
    sequences = tuple(name for name in settings.sequences if name not in site.missing_sequences)
    return SiteLayout(
        sequences=sequences,
        missing_sequences=tuple(site.missing_sequences),
        labels=meaning,
        regions=regions,
        missing_regions=missing,
    )


def _delineate(
    region: frozenset[str], meaning: dict[int, frozenset[str]]
) -> tuple[tuple[int, ...], str]:
    """The label values whose union is exactly the region, or why there are none.

    A label that mixes tissues inside and outside the region (e.g. one label for enhancing
    tumour + necrosis, when the region is necrosis alone) makes the region impossible to
    delineate at this site.
    """
    inside = sorted(value for value, tissues in meaning.items() if tissues <= region)
    for value, tissues in sorted(meaning.items()):
        if tissues & region and not tissues <= region:
            return (), (
                f"label {value} lumps {', '.join(sorted(tissues))} together, "
                f"so {', '.join(sorted(region))} cannot be separated"
            )
    covered = frozenset().union(*(meaning[value] for value in inside))
    if covered != region:
        absent = sorted(region - covered)
        return (), f"no label marks {', '.join(absent)}"
    return tuple(inside), ""
