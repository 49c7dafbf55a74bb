"""``transcend gpu-pack``: everything a short GPU window needs, packed on the CPU beforehand.

A lent GPU machine (see ``docs/gpu-run.md``) reaches no network and receives at most 64 MiB with
the working tree, so the run's inputs travel in one git-ignored folder:

- ``train.bin.zst`` / ``val.bin.zst``: the token streams of ``transcend data prepare``,
  zstd-compressed; ``train.bin`` is cut at a game start to fit ``--max-mib``;
- ``heldout.pgn`` and ``stockfish.sqlite``: positions for ``transcend advantage`` and their
  Stockfish analysis, computed here (the GPU machine has no Stockfish);
- ``wheels/``: python-chess and zstandard for Python 3.12 on x86-64 Linux, which its image lacks;
- ``carry.json``: what is in the folder and how it was made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from transcend.engine.files import write_atomic
from transcend.engine.transcript import STOI

CARRY_LIMIT_MIB = 64  # the working tree and carried folders together
WHEELS = ("chess==1.11.2", "zstandard==0.25.0")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MIB = 1 << 20


def compress(data: bytes, level: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level, threads=-1).compress(data)


def fit_tokens(tokens: np.ndarray, max_bytes: int, level: int) -> tuple[bytes, int]:
    """The longest prefix of ``tokens`` that ends before a game start and compresses to at most
    ``max_bytes``; returns (compressed bytes, tokens kept). Sized from a sample's ratio, then
    cut by 5% until it fits."""
    starts = np.flatnonzero(tokens == STOI[";"])
    sample = tokens[: min(len(tokens), 4 * MIB)].tobytes()
    ratio = len(sample) / max(1, len(compress(sample, level)))
    keep = min(len(tokens), int(max_bytes * ratio * 0.98))
    while True:
        if keep < len(tokens):  # whole games only
            keep = int(starts[max(0, np.searchsorted(starts, keep, side="right") - 1)])
        if keep == 0:
            raise click.ClickException(f"not even one game fits in {max_bytes / MIB:.1f} MiB")
        packed = compress(tokens[:keep].tobytes(), level)
        if len(packed) <= max_bytes:
            return packed, keep
        keep = int(keep * 0.95)


def download_wheels(folder: Path) -> list[str]:
    """The wheels the GPU image lacks, for CPython 3.12 on x86-64 Linux. python-chess publishes
    no wheel of its newest version, so that one is built here (it is pure Python)."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    for spec in WHEELS:
        name = spec.split("==")[0]
        if any(folder.glob(f"{name}-*.whl")):
            continue
        if name == "chess":
            command = [*pip, "wheel", "--no-deps", "-w", str(folder), spec]
        else:
            command = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version",
                       "3.12", "--implementation", "cp", *[f"--platform={p}" for p in PLATFORMS],
                       "-d", str(folder), spec]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise click.ClickException(f"could not fetch {spec}: {done.stderr.strip()[-300:]}")
    return sorted(p.name for p in folder.glob("*.whl"))


def analyse_heldout(pgn: Path, positions: int, nodes: int, seed: int, folder: Path,
                    stockfish: str | None) -> dict[str, Any]:
    """Stockfish scores of the positions ``transcend advantage`` will sample from ``pgn``."""
    from transcend.evaluation.advantage import analyse_positions, sample_positions

    sample, _ = sample_positions([pgn], positions, seed)
    if not sample:
        raise click.ClickException(f"no usable positions in {pgn}")
    _, _, engine = analyse_positions([p.board() for p in sample], nodes, folder, stockfish)
    return {"positions": len(sample), "nodes": nodes, "seed": seed, "engine": engine}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tracked_bytes() -> int:
    """Bytes of the git checkout's tracked files (they travel too), 0 outside a checkout."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True,
                               text=True).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum(Path(n).stat().st_size for n in names if n and Path(n).is_file())


def pack(data: Path, heldout: Path, out: Path, max_mib: float, positions: int, nodes: int,
         seed: int, level: int, wheels: bool, stockfish: str | None) -> dict[str, Any]:
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((data / "manifest.json").read_text())
    tokens = np.fromfile(data / "train.bin", dtype=np.uint8)
    val = np.fromfile(data / "val.bin", dtype=np.uint8) if (data / "val.bin").exists() else None
    val_packed = compress(val.tobytes(), level) if val is not None else b""
    packed, kept = fit_tokens(tokens, int(max_mib * MIB) - len(val_packed), level)
    write_atomic(out / "train.bin.zst", packed)
    if val is not None:
        write_atomic(out / "val.bin.zst", val_packed)
    games = int(np.count_nonzero(tokens[:kept] == STOI[";"]))
    shutil.copyfile(heldout, out / "heldout.pgn")
    analysis = analyse_heldout(out / "heldout.pgn", positions, nodes, seed, out, stockfish)
    info: dict[str, Any] = {
        "data": {
            "manifest": manifest, "train_tokens": kept, "train_tokens_available": len(tokens),
            "train_games": games, "val_tokens": 0 if val is None else len(val),
            "zstd_level": level, "compressed_bytes": len(packed) + len(val_packed),
            "ratio": round((kept + (0 if val is None else len(val)))
                           / max(1, len(packed) + len(val_packed)), 3),
        },
        "advantage": analysis,
        "wheels": download_wheels(out / "wheels") if wheels else [],
        "seconds": round(time.time() - start, 1),
    }
    write_atomic(out / "carry.json", json.dumps(info, indent=2).encode())
    info["bytes"] = folder_bytes(out)
    return info


@click.command("gpu-pack")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="A `transcend data prepare` folder (train.bin, val.bin).")
@click.option("--heldout", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Held-out expert games (PGN) for the advantage analysis.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("gpu-carry"),
              show_default=True, help="The carry folder (git-ignored).")
@click.option("--max-mib", type=click.FloatRange(min=0.01), default=42.0, show_default=True,
              help="Compressed training data at most this size.")
@click.option("--positions", type=click.IntRange(min=1), default=300, show_default=True,
              help="Held-out positions analysed for `advantage`.")
@click.option("--nodes", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Stockfish nodes per position.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--level", type=click.IntRange(1, 22), default=19, show_default=True,
              help="zstd level.")
@click.option("--wheels/--no-wheels", default=True, show_default=True,
              help="Fetch the wheels the GPU image lacks (needs pip and a package index).")
@click.option("--stockfish", default=None, help="Stockfish binary [default: found on PATH].")
def gpu_pack_command(data: Path, heldout: Path, out: Path, max_mib: float, positions: int,
                     nodes: int, seed: int, level: int, wheels: bool,
                     stockfish: str | None) -> None:
    """Pack the inputs of `transcend gpu-run` into one folder to carry to a GPU machine."""
    if not (data / "train.bin").exists() or not (data / "manifest.json").exists():
        raise click.UsageError(f"{data} has no train.bin/manifest.json: run `transcend data "
                               "prepare` first")
    info = pack(data, heldout, out, max_mib, positions, nodes, seed, level, wheels, stockfish)
    d = info["data"]
    total = info["bytes"] + tracked_bytes()
    click.echo(f"{out}: {d['train_games']:,} training games ({d['train_tokens']:,} of "
               f"{d['train_tokens_available']:,} tokens), zstd -{level} ratio {d['ratio']:.2f}, "
               f"{info['advantage']['positions']} analysed positions, "
               f"{len(info['wheels'])} wheels; {info['bytes'] / MIB:.1f} MiB, "
               f"{total / MIB:.1f} MiB with the checkout (limit {CARRY_LIMIT_MIB})")
    if total > CARRY_LIMIT_MIB * MIB:
        raise click.ClickException(f"{total / MIB:.1f} MiB would travel, over the "
                                   f"{CARRY_LIMIT_MIB} MiB limit: pack again with a smaller "
                                   "--max-mib")
