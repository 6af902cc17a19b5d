"""The site's SuperNode as a command line, and the check that the site is ready to join.

A pure function of its inputs, so tests, `fedrad site join` and the site container in
deploy/ run the very same command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedrad.common.config import StudyConfig
from fedrad.common.feature_table import read_provenance
from fedrad.common.flower_processes import toml_string

FEATURES_FILE = "features.parquet"
TRUSTED_SUPERNODE = [sys.executable, "-P", "-m", "fedrad.client.trusted_supernode"]
"""`flower-supernode` whose app processes are FedRad's (client/trusted_supernode.py)."""


class SiteNotReady(Exception):
    """The site would only be refused by the study; the message says how to fix it."""


def check_ready(features: Path, study: StudyConfig, study_path: Path | None) -> None:
    """Refuse to join with a missing table, or one extracted with other settings."""
    study_flag = f" --study {study_path}" if study_path else ""
    fix = f"run `fedrad site extract --out {features}{study_flag}`"
    if not features.is_file():
        raise SiteNotReady(f"there is no feature table at {features}; {fix} first.")
    try:
        found = str(read_provenance(features).get("extraction_hash", ""))
    except (OSError, ValueError) as exc:
        raise SiteNotReady(f"{features} is not a readable feature table ({exc}); {fix}.") from exc
    if found != study.extraction_hash:
        raise SiteNotReady(
            f"{features} was extracted with settings {found or '(unknown)'} but the study "
            f"needs {study.extraction_hash}; {fix} again."
        )


def supernode_command(
    server: str,
    features: Path,
    site_name: str,
    study_path: Path | None,
    root_certificate: Path | None,
    node_key: Path | None,
    port: int = 9094,
) -> list[str]:
    """`flower-supernode` for this site: TLS trusting only the federation's CA, signed in
    with the site's node key (both None: plain text), the node config the ClientApp
    reads (`client/app.py:locate_from_node_config`), and started through
    `trusted_supernode`, so that it runs only FedRad's installed ClientApp."""
    config = {"features-path": str(features.resolve()), "site-name": site_name}
    if study_path is not None:
        config["study-path"] = str(study_path.resolve())
    security = (
        ["--insecure"]
        if root_certificate is None or node_key is None
        else [
            "--root-certificates", str(root_certificate.resolve()),
            "--auth-supernode-private-key", str(node_key.resolve()),
        ]
    )  # fmt: skip
    return [
        *TRUSTED_SUPERNODE,
        *security,
        "--superlink", server,
        "--port", str(port),
        "--node-config", " ".join(f"{key}={toml_string(value)}" for key, value in config.items()),
    ]  # fmt: skip
