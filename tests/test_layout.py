"""The architecture the layout promises: what plays and what measures never needs torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", [
    "transcend.engine.uci", "transcend.engine.policy", "transcend.evaluation.tournament",
    "transcend.evaluation.ratings", "transcend.evaluation.sweep", "transcend.evaluation.advantage",
    "transcend.play.server",
])
def test_module_imports_without_torch(module: str) -> None:
    # A meta-path hook makes `import torch` (and anything from training) fail in the child.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith(('torch.', 'transcend.training')):\n"
        "            raise ImportError(f'{name} must not be imported here')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import {module}\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_transcend_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom transcend.training.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported for --help'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tournament" in result.stdout and "experiment" in result.stdout
    assert "play" in result.stdout


def test_the_repository_root_is_the_transcend_package() -> None:
    # docs/gpu-run.md imports the project unbuilt, through a link named `transcend` to the
    # repository: that holds while every package transcend.X lives in the top-level folder X.
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in setup["package-dir"].items():
        assert package == f"transcend.{folder}", (package, folder)
    for package in setup["packages"]:
        assert (root / package.removeprefix("transcend.").replace(".", "/")).is_dir(), package
