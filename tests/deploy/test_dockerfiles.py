"""deploy/*.Dockerfile: hadolint-clean, a pinned slim base, a non-root user, a health check,
and no package installed at run time."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parents[2] / "deploy"
DOCKERFILES = sorted(DEPLOY.glob("*.Dockerfile"))


def test_there_is_a_site_and_an_aggregator_image():
    assert [path.name for path in DOCKERFILES] == ["aggregator.Dockerfile", "site.Dockerfile"]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_finds_nothing(dockerfile):
    done = subprocess.run(
        ["hadolint", str(dockerfile)], capture_output=True, encoding="utf-8", errors="replace"
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_image_is_slim_pinned_non_root_and_health_checked(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1" in text
    assert "-r requirements.lock" in text and "--no-deps" in text


def test_every_locked_dependency_is_pinned_to_one_version():
    lines = (DEPLOY / "requirements.lock").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements and all(re.fullmatch(r"[\w.\-\[\],]+==[\w.+]+", r) for r in requirements)
    assert "flwr==1.42.0" in requirements


def test_the_site_image_installs_fedrads_app_commands_outside_the_noexec_tmp():
    """The site's SuperNode runs only FedRad's ClientApp through commands written at build
    (client/trusted_supernode.py), where the read-only image can still execute them."""
    text = (DEPLOY / "site.Dockerfile").read_text()
    folder = re.search(r"^ENV FEDRAD_APP_COMMANDS=(/\S+)$", text, re.MULTILINE)
    assert folder and not folder[1].startswith("/tmp")
    assert f"app_commands(Path('{folder[1]}'))" in text
