"""Running the `transcend` command in the test process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from transcend.training.cli import main


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stderr) of `transcend ...` run in this process."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def transcend(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed ``transcend`` command in a child process; with ``check``, fail the
    test on a non-zero exit, with its error output."""
    result = subprocess.run([str(Path(sys.executable).parent / "transcend"), *args],
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"transcend {' '.join(args)} failed:\n{result.stderr}")
    return result
