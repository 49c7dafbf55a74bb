"""The architecture the layout promises: what plays and what measures never needs torch, the
advantage package's imports run one way, and every package folder is installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
ADVANTAGE = ROOT / "evaluation" / "advantage"
# Bottom to top: each module may import only the ones before it, never the package itself.
ADVANTAGE_ORDER = ["positions", "stockfish", "familiarity", "results", "analysis", "frontier",
                   "report", "command"]


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


def _advantage_imports(path: Path) -> set[str]:
    """The modules of ``transcend.evaluation.advantage`` that ``path`` imports, anywhere in it
    (inside functions and ``TYPE_CHECKING`` blocks too); ``""`` for the package itself."""
    prefix = "transcend.evaluation.advantage"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name == prefix or name.startswith(prefix + "."):
                found.add(name[len(prefix) + 1:])
    return found


def test_advantage_modules_import_one_way() -> None:
    modules = sorted(p.stem for p in ADVANTAGE.glob("*.py") if p.stem != "__init__")
    assert modules == sorted(ADVANTAGE_ORDER), "place every module in ADVANTAGE_ORDER"
    for i, name in enumerate(ADVANTAGE_ORDER):
        imported = _advantage_imports(ADVANTAGE / f"{name}.py")
        assert "" not in imported, f"{name}.py imports the package itself: a circle"
        above = imported - set(ADVANTAGE_ORDER[:i])
        assert not above, f"{name}.py imports {sorted(above)}, which sit above it"


def test_the_layering_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "results.py"
    module.write_text("def f():\n    from transcend.evaluation.advantage.report import x\n")
    assert _advantage_imports(module) == {"report"}
    module.write_text("from transcend.evaluation.advantage import AdvantageResult\n")
    assert _advantage_imports(module) == {""}


def test_every_package_folder_is_in_the_wheel() -> None:
    """An editable install finds any subpackage; a wheel holds only the ones listed."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    for package, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            name = ".".join([package, *parts])
            assert name in listed, f"{name} is missing from pyproject.toml's packages"


def test_the_repository_root_is_the_transcend_package() -> None:
    # docs/gpu-run.md imports the project unbuilt, through a link named `transcend` to the
    # repository: that holds while every package transcend.X lives in the top-level folder X.
    root = ROOT
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in setup["package-dir"].items():
        assert package == f"transcend.{folder}", (package, folder)
    for package in setup["packages"]:
        assert (root / package.removeprefix("transcend.").replace(".", "/")).is_dir(), package
