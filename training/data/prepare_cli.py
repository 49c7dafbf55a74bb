"""``transcend data prepare``: the command-line face of
:mod:`transcend.training.data.prepare`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from transcend.training.data.prepare import Filters, Totals, prepare


def _input_size(path: str) -> int | None:
    if path == "-":
        return None
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _summary(manifest: dict[str, Any], seconds: float) -> str:
    games, tokens = manifest["games"], manifest["tokens"]
    skipped = ", ".join(f"{k} {v:,}" for k, v in manifest["skipped"].items() if v) or "none"
    rate = games["seen"] / seconds if seconds > 0 else 0.0
    line = (
        f"{games['seen']:,} games read, {games['kept']:,} kept "
        f"(train {games['train']:,} games / {tokens['train']:,} tokens, "
        f"val {games['val']:,} / {tokens['val']:,}); skipped: {skipped}; "
        f"{seconds:.1f} s, {rate:,.0f} games/s"
    )
    if games["val"]:
        return line
    return (f"{line}\nno validation set ({manifest['split']['no_validation']}): training will "
            "report no validation loss")


@click.command("prepare")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for train.bin, val.bin and manifest.json.")
@click.option("--max-elo", type=click.IntRange(min=0), default=None, metavar="N",
              help="Keep games where both players are rated at most N (the paper's cap).")
@click.option("--min-elo", type=click.IntRange(min=0), default=None, metavar="N",
              help="Keep games where both players are rated at least N.")
@click.option("--min-base-time", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Keep games whose TimeControl starts with at least this many seconds.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.05,
              show_default=True, help="Share of games (by a hash of the game) for val.bin; at "
                   "least one game whenever two or more differ.")
@click.option("--validate", is_flag=True,
              help="Replay every game with python-chess; drop games with illegal moves (slow).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes that convert chunks of games in parallel.")
@click.option("--diversity", "with_diversity", is_flag=True,
              help="Also measure the paper's diversity (see `data diversity`) and record it "
                   "in manifest.json (about 2 s per 10,000 games).")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
def prepare_command(inputs: tuple[str, ...], out: Path, max_elo: int | None,
                    min_elo: int | None, min_base_time: float | None, val_fraction: float,
                    validate: bool, workers: int, with_diversity: bool, quiet: bool) -> None:
    """Turn PGN files (.pgn, .pgn.zst, or - for stdin) into train.bin/val.bin token streams.

    Unfinished games, games from a set-up position and variants are always skipped.
    """
    if max_elo is not None and min_elo is not None and min_elo > max_elo:
        raise click.UsageError(f"--min-elo {min_elo} is above --max-elo {max_elo}")
    if list(inputs).count("-") > 1:
        raise click.UsageError("stdin (-) can be read only once")
    for path in inputs:
        if path != "-" and not os.path.isfile(path):
            what = "is a directory" if os.path.isdir(path) else "no such file"
            raise FileNotFoundError(f"input {path}: {what}")
    filters = Filters(max_elo, min_elo, min_base_time, validate, val_fraction)
    sizes = [_input_size(p) for p in inputs]
    total = None if None in sizes else sum(s for s in sizes if s is not None)
    start = time.monotonic()
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                   desc="prepare", dynamic_ncols=True, file=sys.stderr)

    def progress(raw: int, totals: Totals) -> None:
        if bar is not None:
            rate = totals.seen / max(time.monotonic() - start, 1e-9)
            bar.set_postfix_str(f"{rate:,.0f} games/s, kept {totals.kept:,}", refresh=False)
            bar.update(raw)

    try:
        manifest = prepare(list(inputs), out, filters, workers, on_progress=progress)
    finally:
        if bar is not None:
            bar.close()
    for row in manifest["inputs"]:
        if "error" in row:
            click.echo(f"warning: {row['path']}: {row['error']}", err=True)
    if not quiet:
        click.echo(_summary(manifest, time.monotonic() - start), err=True)
    if with_diversity:
        from transcend.training.data.diversity import (
            describe,
            diversity,
            games_of_inputs,
            record_in_manifest,
        )

        result = diversity(games_of_inputs([str(out)]))
        record_in_manifest(out, result)
        if not quiet:
            click.echo(describe(result), err=True)
