"""Running the `transcend` command in the test process."""

from __future__ import annotations

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
