"""The architecture the layout promises: what plays and what measures never needs torch, the
advantage package's and the training families' imports run one way, and every package folder is
installed."""

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
ADVANTAGE_PACKAGE = "transcend.evaluation.advantage"
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


def _imports(path: Path, prefix: str) -> set[str]:
    """The modules of the package ``prefix`` that ``path`` imports, anywhere in it (inside
    functions and ``TYPE_CHECKING`` blocks too), named relative to it; ``""`` for the package
    itself."""
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
        imported = _imports(ADVANTAGE / f"{name}.py", ADVANTAGE_PACKAGE)
        assert "" not in imported, f"{name}.py imports the package itself: a circle"
        above = imported - set(ADVANTAGE_ORDER[:i])
        assert not above, f"{name}.py imports {sorted(above)}, which sit above it"


def test_the_layering_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "results.py"
    module.write_text("def f():\n    from transcend.evaluation.advantage.report import x\n")
    assert _imports(module, ADVANTAGE_PACKAGE) == {"report"}
    module.write_text("from transcend.evaluation.advantage import AdvantageResult\n")
    assert _imports(module, ADVANTAGE_PACKAGE) == {""}


TRAINING = ROOT / "training"
TRAINING_PACKAGE = "transcend.training"
FAMILIES = ["data", "studies", "gpu"]
# What each part of training may import from it: data only itself; the model and its training
# (the modules at the top, "model") data too; studies and the GPU window both of those, never
# each other; the CLI ("cli") imports its commands only when they run, and nothing imports it.
TRAINING_MAY_IMPORT = {
    "data": {"data"},
    "model": {"data", "model"},
    "studies": {"data", "model", "studies"},
    "gpu": {"data", "model", "gpu"},
    "cli": set(),
}


def _family(module: str) -> str:
    """The part of training that ``module``, named relative to ``transcend.training``, is in."""
    first = module.split(".")[0]
    return first if first in FAMILIES or first == "cli" else "model"


def _forbidden_training_imports(path: Path, family: str) -> set[str]:
    """What ``path``, a module of ``family``, imports from training that it may not: modules
    named relative to ``transcend.training``, ``""`` for the package itself."""
    return {name for name in _imports(path, TRAINING_PACKAGE)
            if not name or _family(name) not in TRAINING_MAY_IMPORT[family]}


def test_training_families_import_one_way() -> None:
    """Data imports only data; the model and its training, at the top, data too; studies and the
    GPU window both, never each other; nothing imports the CLI."""
    folders = sorted(p.parent.name for p in TRAINING.glob("*/__init__.py"))
    assert folders == sorted(FAMILIES), "give every folder of training a place in FAMILIES"
    for path in sorted(TRAINING.rglob("*.py")):
        module = ".".join(path.relative_to(TRAINING).with_suffix("").parts)
        family = _family(module)
        forbidden = _forbidden_training_imports(path, family)
        assert not forbidden, f"{module} ({family}) imports {sorted(forbidden)}"


def test_nothing_imports_the_cli() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in tool["package-dir"].values():
        for path in (ROOT / folder).rglob("*.py"):
            assert "cli" not in _imports(path, TRAINING_PACKAGE), f"{path} imports the CLI"


def test_the_family_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "prepare.py"
    module.write_text("def f():\n    from transcend.training.studies.probe import x\n")
    assert _forbidden_training_imports(module, "data") == {"studies.probe"}
    module.write_text("from transcend.training.train import train\n")
    assert _forbidden_training_imports(module, "data") == {"train"}
    module.write_text("from transcend.training.gpu import checks\n")
    assert _forbidden_training_imports(module, "studies") == {"gpu"}
    module.write_text("import transcend.training.cli\n")
    assert _forbidden_training_imports(module, "gpu") == {"cli"}
    module.write_text("from transcend.training import train\n")
    assert _forbidden_training_imports(module, "studies") == {""}
    module.write_text("from transcend.training.data.board import BoardTargets\n"
                      "from transcend.training.model import GPT\n")
    assert _forbidden_training_imports(module, "studies") == set()
    assert _forbidden_training_imports(module, "model") == set()


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
