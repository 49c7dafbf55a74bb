"""Atomic file writes, shared by every part of the project (no torch here)."""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# On Windows a rename onto a file that another process has open (a reader, a virus scanner, a
# search indexer) fails for a moment; elsewhere a PermissionError is final and the retries only
# cost their short waits.
REPLACE_RETRIES = 5
REPLACE_WAIT_S = 0.05


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a half-written file.

    The bytes go to a temporary file in the same directory, are flushed to disk, and replace
    ``path`` in one rename; after a crash or Ctrl-C the old file (or none) is still there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0o600 would hide results from other users
        _replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure to ``path`` as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return Path(path)


def _replace(src: str, dst: Path) -> None:
    for attempt in range(REPLACE_RETRIES):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == REPLACE_RETRIES - 1:
                raise
            time.sleep(REPLACE_WAIT_S * 2**attempt)
