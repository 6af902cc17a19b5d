"""The architecture rules (pyproject.toml `[tool.importlinter]`) hold, and can fail.

Only simulations and the CLI root `fedrad.common.cli` may import across the client /
server / simulations sides. `make test` runs `lint-imports` too; this test keeps the rule
in the pytest run and proves the check is able to catch a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-logo", "--no-cache", *args],
        cwd=REPO,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )


def write_config(path: Path, contracts: list[dict]) -> Path:
    """A pyproject-style import-linter config over the same packages as the project's."""
    lines = ["[tool.importlinter]", f"root_packages = {json.dumps(CONFIG['root_packages'])}"]
    for contract in contracts:
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in contract.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_project_declares_the_three_side_contracts_and_the_store_s():
    forbidden = {
        contract["source_modules"][0]: set(contract["forbidden_modules"])
        for contract in CONFIG["contracts"]
        if contract["type"] == "forbidden"
    }
    assert forbidden == {
        "fedrad.common": {"fedrad.client", "fedrad.server", "fedrad.simulations"},
        "fedrad.server": {"fedrad.client", "fedrad.simulations"},
        "fedrad.client": {"fedrad.server", "fedrad.simulations"},
        "fedrad.server.study": {"fedrad.server.store"},
        "fedrad.server.dashboard": {
            "fedrad.server.store.writer",
            "fedrad.server.study",
            "fedrad.server.federation",
            "fedrad.server.app",
        },
    }
    assert set(CONFIG["root_packages"]) == {
        "fedrad.common",
        "fedrad.client",
        "fedrad.server",
        "fedrad.simulations",
    }


def test_the_code_keeps_every_architecture_contract():
    out = lint_imports()
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contracts: {len(CONFIG['contracts'])} kept, 0 broken." in out.stdout


def test_a_contract_the_code_must_break_is_reported_broken(tmp_path: Path):
    # The simulations run the client in-process, so they necessarily import it.
    config = write_config(
        tmp_path / "broken.toml",
        [
            {
                "name": "simulations never import the client",
                "type": "forbidden",
                "source_modules": ["fedrad.simulations"],
                "forbidden_modules": ["fedrad.client"],
            }
        ],
    )
    out = lint_imports(str(config))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "simulations never import the client BROKEN" in out.stdout
    assert "Contracts: 0 kept, 1 broken." in out.stdout
    assert "fedrad.simulations." in out.stdout and "-> fedrad.client." in out.stdout


def test_the_common_contract_holds_only_thanks_to_the_cli_root_exception(tmp_path: Path):
    # The project's own first contract, without its exception for the CLI root, must catch
    # `fedrad.common.cli` registering each side's commands.
    (common,) = [c for c in CONFIG["contracts"] if c["source_modules"] == ["fedrad.common"]]
    strict = {key: value for key, value in common.items() if key != "ignore_imports"}
    out = lint_imports(str(write_config(tmp_path / "strict.toml", [strict])))
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{common['name']} BROKEN" in out.stdout
    for side in ("client", "server", "simulations"):
        assert f"fedrad.common.cli -> fedrad.{side}." in out.stdout


def test_every_package_folder_is_shipped_by_the_wheel():
    """setuptools lists the packages by hand (the folders map onto `fedrad.*`): a new
    subpackage missing from the list installs in editable mode and breaks every wheel."""
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: Path(path) for name, path in config["package-dir"].items()}
    found = {
        ".".join([package, *init.parent.relative_to(root / folder).parts])
        for package, folder in folders.items()
        for init in (root / folder).rglob("__init__.py")
    }
    assert found == set(config["packages"])
