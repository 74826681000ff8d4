"""The import contract in ``pyproject.toml`` holds, and it catches an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("riverbed", "api", "connectors", "notifier", "streams", "sinks", "schemas", "control")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_tree(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_tree_keeps_every_import_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_from_the_base_layer_breaks_the_layers_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    with (tree / "riverbed" / "core" / "topology.py").open("a") as module:
        module.write("\nimport sinks.ddl  # noqa: E402\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "riverbed.core is not allowed to import sinks" in result.stdout
    assert "riverbed.core.topology -> sinks.ddl" in result.stdout


def test_processing_packages_may_not_import_each_other(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    with (tree / "sinks" / "ddl.py").open("a") as module:
        module.write("\nimport streams.windows  # noqa: E402\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "sinks is not allowed to import streams" in result.stdout
