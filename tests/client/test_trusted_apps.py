"""A site runs only FedRad's installed ClientApp, whatever app (FAB) the aggregator sends.

Flower's own loader runs a module shipped in the FAB (the attack); FedRad's loader, which
replaces it at a site, refuses that app and every other that is not exactly FedRad's study
app, and the SuperNode's app processes are FedRad's.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_files
from flwr.cli.install import install_from_fab
from flwr.clientapp.utils import get_load_client_app_fn

from fedrad.client import app as installed_app
from fedrad.client import trusted_supernode
from fedrad.client.supernode import TRUSTED_SUPERNODE, supernode_command
from fedrad.client.trusted_apps import INSTALL_FLAG, AppRefused, load_installed_client_app
from fedrad.client.trusted_supernode import CLIENT_APP, FOLDER_VARIABLE, app_commands
from fedrad.server.superlink import study_app_project

MARKER_APP = """
from pathlib import Path
from flwr.clientapp import ClientApp
Path({marker!r}).write_text("the aggregator's code ran at the site")
app = ClientApp()
"""


@pytest.fixture
def flwr_home(tmp_path, monkeypatch):
    home = tmp_path / "flwr-home"
    monkeypatch.setenv("FLWR_HOME", str(home))
    monkeypatch.setattr(sys, "path", list(sys.path))  # Flower's loader prepends the app
    return home


def _genuine(tmp_path: Path) -> str:
    return study_app_project(tmp_path / "study.yaml", tmp_path / "out")


def _install(files: dict[str, str]) -> tuple[str, str, str]:
    """Install a FAB of `files` as Flower's ClientApp process does; its (id, version, hash)."""
    fab, _ = build_fab_from_files({name: text.encode() for name, text in files.items()})
    install_from_fab(fab, skip_prompt=True)
    project = tomllib.loads(files["pyproject.toml"])
    fab_id = f"{project['tool']['flwr']['app']['publisher']}/{project['project']['name']}"
    return fab_id, project["project"]["version"], hashlib.sha256(fab).hexdigest()


def _own_clientapp(tmp_path: Path, module: str) -> dict[str, str]:
    """The study app, but its ClientApp a module it ships, which leaves a marker file."""
    project = _genuine(tmp_path).replace("fedrad.client.app:app", f"{module}:app")
    code = MARKER_APP.format(marker=str(tmp_path / "marker"))
    return {"pyproject.toml": project, f"{module}.py": code}


def test_flowers_own_loader_runs_code_the_aggregator_ships(tmp_path, flwr_home):
    """The premise: without FedRad's loader, the app's own module runs at the site."""
    fab = _install(_own_clientapp(tmp_path, "shipped_app_premise"))
    try:
        get_load_client_app_fn("", None, multi_app=True)(*fab)
    finally:
        sys.modules.pop("shipped_app_premise", None)
    assert (tmp_path / "marker").exists()


def test_an_app_with_its_own_clientapp_is_refused_and_nothing_of_it_runs(tmp_path, flwr_home):
    fab = _install(_own_clientapp(tmp_path, "shipped_app_refused"))
    with pytest.raises(AppRefused, match=r"carries code or files \(shipped_app_refused.py\)"):
        load_installed_client_app(*fab)
    assert not (tmp_path / "marker").exists() and "shipped_app_refused" not in sys.modules


def test_fedrads_own_components_with_a_shadowing_module_are_refused(tmp_path, flwr_home):
    """A modified FedRad: the genuine project, plus a `fedrad` package that would shadow
    the installed one from the app's folder."""
    shadow = MARKER_APP.format(marker=str(tmp_path / "marker"))
    files = {
        "fedrad/__init__.py": "",
        "fedrad/client/__init__.py": "",
        "fedrad/client/app.py": shadow,
    }
    fab = _install({"pyproject.toml": _genuine(tmp_path), **files})
    with pytest.raises(AppRefused, match="carries code or files"):
        load_installed_client_app(*fab)
    assert not (tmp_path / "marker").exists()


def test_other_components_are_refused(tmp_path, flwr_home):
    project = _genuine(tmp_path).replace("fedrad.client.app:app", "os:system")
    with pytest.raises(AppRefused, match="names components .*'os:system'"):
        load_installed_client_app(*_install({"pyproject.toml": project}))


def test_a_study_submitted_by_another_fedrad_version_is_refused(tmp_path, flwr_home):
    project = _genuine(tmp_path).replace('version = "0.1.0"', 'version = "9.9.9"')
    with pytest.raises(AppRefused, match="submitted by FedRad 9.9.9 and this site runs FedRad"):
        load_installed_client_app(*_install({"pyproject.toml": project}))


def test_the_genuine_study_app_gets_the_installed_clientapp(tmp_path, flwr_home):
    fab = _install({"pyproject.toml": _genuine(tmp_path)})
    assert load_installed_client_app(*fab) is installed_app.app
    assert not any(str(flwr_home) in entry for entry in sys.path)


def test_the_supernodes_app_processes_are_fedrads(tmp_path):
    """`flwr-clientapp` on the SuperNode's PATH is FedRad's process (which, among other
    things, never installs the app's dependencies); any other kind of app is refused."""
    folder = app_commands(tmp_path)
    clientapp = subprocess.run(
        [folder / CLIENT_APP, "--insecure", "--token", "t", INSTALL_FLAG],
        capture_output=True, encoding="utf-8", errors="replace", timeout=120,
    )  # fmt: skip
    assert clientapp.returncode != 0 and "installs nothing at run time" in clientapp.stderr
    agent = subprocess.run(
        [folder / "flwr-agentapp"], capture_output=True, encoding="utf-8", errors="replace"
    )
    assert agent.returncode == 1 and "refused to run flwr-agentapp" in agent.stderr
    command = supernode_command("agg:8000", tmp_path / "features.parquet", "s", None, None, None)
    assert command[: len(TRUSTED_SUPERNODE)] == TRUSTED_SUPERNODE


def test_the_supernode_runs_with_fedrads_app_commands_first_on_its_path(tmp_path, monkeypatch):
    """The wrapper runs `flower-supernode` (here a stand-in noting what it was given) with a
    fresh folder of app commands first on PATH, or the one a site image installed, and
    its loop paced; a folder without them is refused."""
    seen = []
    monkeypatch.setattr(
        trusted_supernode,
        "flower_supernode",
        lambda: seen.append((os.environ["PATH"], sys.argv[1:])),
    )
    monkeypatch.setattr(trusted_supernode, "pace", lambda: seen.append("paced"))
    monkeypatch.setattr(sys, "argv", ["trusted_supernode", "--insecure"])
    monkeypatch.setenv("PATH", os.environ["PATH"])
    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)

    trusted_supernode.main()
    fresh = Path(seen[-1][0].split(os.pathsep)[0])
    assert (fresh / CLIENT_APP).is_file() and fresh != tmp_path
    assert seen[-1][1] == ["--insecure"] and seen[-2] == "paced"
    installed = app_commands(tmp_path / "installed")
    monkeypatch.setenv(FOLDER_VARIABLE, str(installed))
    trusted_supernode.main()
    assert Path(seen[-1][0].split(os.pathsep)[0]) == installed
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path))
    with pytest.raises(SystemExit, match=f"has no {CLIENT_APP}"):
        trusted_supernode.main()
