"""``transcend data experts``: the command-line face of
:mod:`transcend.training.data.experts`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from transcend.evaluation.players import EngineCrashed
from transcend.training.data.experts import DEFAULT_EXPERTS, complete_games, generate


@click.command("experts")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PGN file to write; an existing one is resumed and extended.")
@click.option("--games", type=click.IntRange(min=1), required=True,
              help="Total number of games the file should hold.")
@click.option("--expert", "experts", multiple=True, metavar="SPEC",
              help="An expert (repeatable), e.g. 'sf:skill=1,nodes=100,eps=0.4,elo=1000'. "
                   "Default: Stockfish skill 0-3 at 100 nodes with 40% random moves.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Games played in parallel (one process each).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-plies", type=click.IntRange(min=2), default=300, show_default=True,
              help="A game still running after this many plies is adjudicated a draw.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def experts_command(out: Path, games: int, experts: tuple[str, ...], concurrency: int,
                    seed: int, max_plies: int, quiet: bool) -> None:
    """Play games between noisy expert engines and write them as PGN."""
    results: Counter[str] = Counter()
    try:
        for record in generate(out, list(experts or DEFAULT_EXPERTS), games, concurrency, seed,
                               max_plies, progress=not quiet):
            results[record.result] += 1
    except (ValueError, OSError, EngineCrashed) as exc:
        # A bad expert (checked before any game) or an engine that kept failing: one line.
        raise click.ClickException(str(exc)) from None
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(results.items()))
    total, _ = complete_games(out)
    click.echo(f"{out}: {total} games" + (f" ({summary} in this run)" if summary else
                                           " (nothing new to play)"), err=True)
