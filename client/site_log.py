"""The site's own log: what a site did not tell the aggregator (refusal details, errors
with their tracebacks) is written here, in `site.log` next to its feature table."""

from __future__ import annotations

import logging
from pathlib import Path


def site_log(name: str, folder: Path | None) -> logging.Logger:
    """The logger of site `name`, writing to `folder/site.log` where the site has a folder."""
    logger = logging.getLogger(f"fedrad.site.{name.replace('.', '_')}")
    if folder is not None:
        path = str((folder / "site.log").resolve())
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
    return logger
