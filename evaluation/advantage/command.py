"""The whole advantage analysis, from the PGN files to the written files, and its command,
``transcend advantage``."""

from __future__ import annotations

from pathlib import Path

import click

from transcend.engine.model_file import click_model, default_model_path
from transcend.evaluation.advantage.analysis import (
    DEFAULT_BOOTSTRAP,
    MODES,
    AdvantageOptions,
    DistributionFn,
    analyse,
)
from transcend.evaluation.advantage.report import write_report
from transcend.evaluation.advantage.results import AdvantageResult
from transcend.evaluation.advantage.stockfish import DEFAULT_NODES
from transcend.evaluation.sweep import PAPER_TEMPERATURES, parse_temperatures


def run_advantage(options: AdvantageOptions, distribution: DistributionFn | None = None,
                  progress: bool = False) -> AdvantageResult:
    """The whole advantage analysis; writes its files to ``options.out`` and returns the numbers.

    ``distribution`` replaces the model's move distribution (default: the engine's policy for
    ``options.model``); ``progress`` shows progress bars.
    """
    result = analyse(options, distribution, progress)
    write_report(result, options.model, options.plots)
    return result


@click.command("advantage")
@click.option("--model", callback=click_model, metavar="MODEL",
              help="ONNX model, or a bundled model's name (default: the bundled `default`).")
@click.option("--pgn", "pgn_options", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PGN file of the experts' games (repeatable; more files may follow as "
                   "arguments).")
@click.argument("pgn_args", nargs=-1, type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path))
@click.option("--positions", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Positions to draw, a third from each phase.")
@click.option("--train-data", type=click.Path(path_type=Path), default=None,
              help="A folder from `data prepare` (its train.bin): adds familiarity, majority "
                   "moves, the familiarity bins and frontier.png.")
@click.option("--per-bin", type=click.IntRange(min=1), default=None, metavar="N",
              help="Draw up to N positions from each familiarity bin (needs --train-data) "
                   "instead of --positions by phase.")
@click.option("--positions-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="CSV",
              help="Evaluate exactly the positions of an earlier run's positions.csv "
                   "(instead of PGN files).")
@click.option("--temps", default=",".join(f"{t:g}" for t in PAPER_TEMPERATURES),
              show_default=True, help="Comma-separated temperatures (0 = greedy).")
@click.option("--mode", "mode", type=click.Choice(["token", "move", "both"]), default="both",
              show_default=True, help="Which of the engine's sampling modes to measure.")
@click.option("--nodes", type=click.IntRange(min=1), default=DEFAULT_NODES, show_default=True,
              help="Stockfish nodes a position, shared by all legal moves (MultiPV).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for advantage.csv, positions.csv, the plots and summary.md.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of the Stockfish cache [default: ~/.cache/transcend/advantage].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Stockfish processes [default: one per core].")
@click.option("--bootstrap", type=click.IntRange(min=100), default=DEFAULT_BOOTSTRAP,
              show_default=True, help="Bootstrap resamples for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--stockfish", default=None, help="Stockfish binary [default: found on PATH].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="auto",
              show_default=True, help="Where the model runs.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def advantage_command(model: Path | None, pgn_options: tuple[Path, ...],
                      pgn_args: tuple[Path, ...], positions: int, train_data: Path | None,
                      per_bin: int | None, positions_from: Path | None, temps: str, mode: str,
                      nodes: int, out: Path, cache: Path | None, workers: int | None,
                      bootstrap: int, seed: int, stockfish: str | None, device: str,
                      quiet: bool) -> None:
    """Per-move expected win probability of a model against its experts.

    Draws positions from the experts' games, scores every legal move with Stockfish and
    compares the model's exact expected win probability at each temperature with the expert's
    move, the best move and a random move.
    """
    pgns = list(dict.fromkeys([*pgn_options, *pgn_args]))
    if positions_from is not None:
        if pgns:
            raise click.UsageError("--positions-from takes the positions from its file: "
                                   "give no PGN files with it")
        if per_bin is not None:
            raise click.UsageError("--positions-from and --per-bin cannot go together")
    elif not pgns:
        raise click.UsageError("give at least one PGN file (--pgn GAMES.pgn)")
    if per_bin is not None and train_data is None:
        raise click.UsageError("--per-bin needs --train-data: the bins are of familiarity")
    try:
        temperatures = parse_temperatures(allow_zero=True, text=temps)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--temps") from None
    if model is None:
        model = default_model_path()
        if not model.is_file():
            raise click.UsageError("no bundled model: give --model MODEL.onnx")
    options = AdvantageOptions(
        model=model, out=out, pgns=pgns, positions=positions, temps=temperatures,
        modes=list(MODES) if mode == "both" else [mode], nodes=nodes, seed=seed,
        bootstrap=bootstrap, cache=cache, workers=workers, stockfish=stockfish, device=device,
        train_data=train_data, per_bin=per_bin, positions_from=positions_from)
    result = run_advantage(options, progress=not quiet)
    click.echo(result.table_markdown())
    skipped = ", ".join(f"{v} {k}" for k, v in sorted(result.skipped.items())) or "nothing"
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    click.echo(f"{len(result.positions)} positions ({result.cache_hits} analyses cached; "
               f"skipped: {skipped}); {timing}", err=True)
    written = [result.csv, result.positions_csv, result.summary, result.summary_json,
               result.plot, result.gains_plot, result.frontier_plot]
    click.echo(f"wrote {', '.join(str(p) for p in written if p)}", err=True)
