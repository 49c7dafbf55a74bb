"""The temperature sweep: a model's rating at each sampling temperature (the paper's Figure 1).

Every temperature plays the same opponents in one gauntlet; all games go into one PGN and one
maximum-likelihood rating list, so the temperatures are rated on the same scale. Outputs in
``--out``: ``games.pgn`` (resumable; ``opponents.pgn`` too when the opponents also play each
other), ``ratings.csv``, ``summary.md`` and
``rating_vs_temperature.png``; the measured curve goes next to the model as
``<model stem>.calibration.json`` for the engine's ``UCI_LimitStrength`` / ``UCI_Elo``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from transcend.engine.files import write_atomic, write_figure
from transcend.engine.model_file import click_model, read_model_info
from transcend.evaluation.endings import PlayerEndings, endings_table
from transcend.evaluation.games_pgn import TimeControl
from transcend.evaluation.players import PlayerSpec, parse_spec
from transcend.evaluation.ratings import (
    Rating,
    bradley_terry,
    parse_anchor,
    sequential_glicko,
    spec_anchors,
)
from transcend.evaluation.tournament import (
    Settings,
    TournamentResult,
    conversion_lines,
    result_json,
    run_tournament,
)

PAPER_TEMPERATURES = (0.001, 0.01, 0.1, 0.3, 0.5, 0.75, 1.0, 1.5)
MODES = ("token", "move", "paper")


@dataclass
class SweepRow:
    temperature: float
    player: str
    elo: float
    lo95: float
    hi95: float
    games: int
    score: float
    illegal_rate: float | None = None  # illegal samples / all samples, `paper` mode only
    glicko: float | None = None  # the paper's sequential Glicko-2, when anchors exist
    glicko_lo95: float | None = None
    glicko_hi95: float | None = None


@dataclass
class SweepResult:
    rows: list[SweepRow]
    ratings: list[Rating]  # the whole list, opponents included
    anchors: dict[str, float]
    max_rating: float | None
    out: Path
    pgn: Path
    plot: Path | None = None
    calibration: Path | None = None
    notes: list[str] = field(default_factory=list)
    # The strongest of the opponents marked as the model's training experts, when any are.
    best_expert: Rating | None = None
    # Why every player's games ended (opponents' round robin included), and the conversion
    # rules the model played with.
    endings: list[PlayerEndings] = field(default_factory=list)
    conversion: list[str] = field(default_factory=list)

    def transcends(self) -> bool | None:
        """Whether the best temperature's whole 95% interval lies above the best expert's rating
        (None when no experts were marked)."""
        if self.best_expert is None:
            return None
        return max(self.rows, key=lambda r: r.elo).lo95 > self.best_expert.elo


def calibration_path(model: Path) -> Path:
    """Where the measured Elo-per-temperature curve of ``model`` is stored."""
    return model.with_name(model.stem + ".calibration.json")


def parse_temperatures(text: str, allow_zero: bool = False) -> list[float]:
    """``"0.001,0.1,1"`` -> [0.001, 0.1, 1.0], sorted and unique; ValueError with a one-line
    reason. Zero (greedy) is allowed where a log-scale plot is not needed."""
    try:
        temps = [float(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"--temps {text!r} must be numbers separated by commas") from None
    low_ok = (lambda t: t >= 0) if allow_zero else (lambda t: t > 0)
    if not temps or any(not (low_ok(t) and math.isfinite(t)) for t in temps):
        floor = "non-negative" if allow_zero else "positive (0.001 is near-greedy)"
        raise ValueError(f"--temps {text!r}: temperatures must be {floor}")
    return sorted(set(temps))


def default_engine_cmd() -> str:
    """``transcend-uci`` from PATH, or from this Python's own bin folder when the virtual
    environment is not activated."""
    found = shutil.which("transcend-uci") or shutil.which(
        "transcend-uci", path=str(Path(sys.executable).parent))
    return shlex.quote(found) if found else "transcend-uci"


def engine_spec(engine_cmd: str, model: Path, temperature: float, mode: str,
                seed: int) -> PlayerSpec:
    """The model at one temperature, as a tournament player. ``depth 1`` asks for a move without
    a time budget: the runner then allows ``move_timeout`` for it (the first includes loading)."""
    command = (f"{engine_cmd} --model {shlex.quote(str(model))} --temp {temperature:g} "
               f"--mode {mode} --seed {seed}")
    return parse_spec(f"uci:name={model.stem}-T{temperature:g},depth=1,cmd={command}")


def write_metadata_calibration(model: Path, points: list[dict[str, float]]) -> None:
    """Store the calibration in the model's own metadata (``calibration``), which the engine
    reads; needs the ``onnx`` package (the ``train`` extra) and rewrites the file atomically."""
    try:
        import onnx
    except ImportError:
        raise click.ClickException("--write-metadata needs the onnx package "
                                   "(pip install 'transcend[train]')") from None
    proto = onnx.load(str(model))
    kept = [p for p in proto.metadata_props if p.key != "calibration"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key="calibration", value=json.dumps(points))
    write_atomic(model, proto.SerializeToString())


def _illegal_rate(result: TournamentResult, name: str) -> float | None:
    illegal = moves = fallbacks = 0
    for game in result.games:
        if name in (game.white, game.black):
            a, b, c = game.illegal_counts(name)
            illegal, moves, fallbacks = illegal + a, moves + b, fallbacks + c
    samples = illegal + moves - fallbacks
    return illegal / samples if samples else None


def run_sweep(model: Path, temps: Sequence[float], opponents: Sequence[str], games: int,
              out: Path, concurrency: int = 1, max_moves: int | None = 90, mode: str = "token",
              *, engine_cmd: str | None = None, anchors: dict[str, float] | None = None,
              tc: str | None = None, openings: Path | None = None, seed: int = 0,
              margin: float = 1.0, move_timeout: float = 60.0, progress: bool = False,
              calibrate: bool = True, write_metadata: bool = False,
              experts: Sequence[str] = (), opponent_games: int = 0) -> SweepResult:
    """Play every temperature against every opponent and write the sweep's files to ``out``.

    ``experts`` are opponent specs (played like the others) marked as the players whose games
    trained the model: the summary and plot then compare the model with the strongest of them,
    rated in the same list, which is the paper's claim. With ``opponent_games``, the opponents
    also play a round robin of that many games a pair, so that they are rated against each
    other directly rather than only through the model (which may lose to all of them).
    """
    expert_names = [parse_spec(e).name for e in experts]
    named = {parse_spec(o).name for o in opponents}
    opponents = [*opponents, *(e for e, name in zip(experts, expert_names, strict=True)
                               if name not in named)]
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    if not opponents:
        raise ValueError("the sweep needs at least one --opponent")
    if not Path(model).is_file():
        raise FileNotFoundError(f"no model at {model}")
    model = Path(model)
    info = read_model_info(model)
    temps = sorted(set(temps))
    out.mkdir(parents=True, exist_ok=True)
    engine_cmd = engine_cmd or default_engine_cmd()
    engines = [engine_spec(engine_cmd, model, t, mode, seed + i + 1) for i, t in enumerate(temps)]
    opponent_specs = [parse_spec(o) for o in opponents]
    names = [spec.name for spec in opponent_specs + engines]
    for name in anchors or {}:
        if name not in names:  # checked now rather than after hours of games
            raise ValueError(f"anchor {name!r} is not a player in this sweep "
                             f"(players: {', '.join(names)})")
    settings = Settings(TimeControl.parse(tc) if tc else None, max_moves, margin, move_timeout,
                        seed, f"transcend sweep {model.name}", paper_forfeit=mode == "paper")
    pgn = out / "games.pgn"
    played = run_tournament(engines, opponent_specs, games, openings=openings, pgn=pgn,
                            concurrency=concurrency, settings=settings, progress=progress)
    outcomes = played.outcomes()
    every = TournamentResult(played.players, list(played.games), None)
    if opponent_games and len(opponent_specs) > 1:
        among = run_tournament([], opponent_specs, opponent_games, round_robin=True,
                               openings=openings, pgn=out / "opponents.pgn",
                               concurrency=concurrency, settings=settings, progress=progress)
        outcomes += among.outcomes()
        every.games += among.games
    notes: list[str] = []
    if anchors:
        anchor_source = "given"
    elif anchors := spec_anchors(outcomes, labels=True):
        anchor_source = "the opponents' elo= labels"
    elif anchors := spec_anchors(outcomes):
        anchor_source = "the paper's Stockfish levels (1 = 1552, 3 = 1842, 5 = 2142)"
    else:
        anchor_source = "none: ratings are relative, the mean player is 0"
        notes.append("No anchors: give --anchor NAME=ELO or elo= labels for absolute ratings; "
                     "no calibration was written.")
    ratings = bradley_terry(outcomes, anchors)
    by_name = {r.name: r for r in ratings}
    rows = []
    for temperature, spec in zip(temps, engines, strict=True):
        rating = by_name[spec.name]
        row = SweepRow(temperature, spec.name, rating.elo, rating.lo95, rating.hi95,
                       rating.games, rating.score,
                       _illegal_rate(played, spec.name) if mode == "paper" else None)
        if anchors:
            # The paper rated each temperature on its own, in game order, against fixed anchors.
            own = [o for o in outcomes if spec.name in (o.white, o.black)]
            glicko = {r.name: r for r in sequential_glicko(own, anchors)}[spec.name]
            row.glicko, row.glicko_lo95, row.glicko_hi95 = glicko.elo, glicko.lo95, glicko.hi95
        rows.append(row)
    result = SweepResult(rows, ratings, anchors, info.max_rating, out, pgn, notes=notes,
                         endings=every.endings(), conversion=conversion_lines(played))
    write_atomic(out / "endings.json", (json.dumps(
        {"endings": [row.as_dict() for row in result.endings], "conversion": result.conversion,
         "model_games": result_json(played)["games"]}, indent=1) + "\n").encode())
    if expert_names:
        result.best_expert = max((by_name[n] for n in expert_names if n in by_name),
                                 key=lambda r: r.elo)
    _write_csv(out / "ratings.csv", rows)
    result.plot = _plot(out / "rating_vs_temperature.png", rows, info.max_rating, model.name,
                        notes, result.best_expert)
    if calibrate and anchors:
        result.calibration = calibration_path(model)
        points = [{"temperature": r.temperature, "elo": round(r.elo, 1)} for r in rows]
        write_atomic(result.calibration, (json.dumps(points, indent=1) + "\n").encode())
        if write_metadata:
            write_metadata_calibration(model, points)
    write_atomic(out / "summary.md", _summary(result, model, opponents, games, mode,
                                               settings, anchor_source,
                                               opponent_games).encode())
    return result


def _write_csv(path: Path, rows: list[SweepRow]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["temperature", "player", "elo", "lo95", "hi95", "games", "score",
                     "illegal_rate", "glicko", "glicko_lo95", "glicko_hi95"])

    def cell(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for r in rows:
        writer.writerow([f"{r.temperature:g}", r.player, cell(r.elo), cell(r.lo95), cell(r.hi95),
                         r.games, cell(r.score, 4), cell(r.illegal_rate, 4), cell(r.glicko),
                         cell(r.glicko_lo95), cell(r.glicko_hi95)])
    write_atomic(path, text.getvalue().encode())


def _plot(path: Path, rows: list[SweepRow], max_rating: float | None, title: str,
          notes: list[str], best_expert: Rating | None = None) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("matplotlib is not installed (pip install 'transcend[train]'): no plot.")
        return None
    temps = [r.temperature for r in rows]
    elos = [r.elo for r in rows]
    errors = [[r.elo - r.lo95 for r in rows], [r.hi95 - r.elo for r in rows]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(temps, elos, yerr=errors, marker="o", capsize=3, label="model (95% interval)")
    if any(r.glicko is not None for r in rows):
        ax.plot(temps, [r.glicko for r in rows], "s--", alpha=0.6,
                label="sequential Glicko-2 (paper's method)")
    if best_expert is not None:  # measured in the same list: the comparison that matters
        ax.axhline(best_expert.elo, color="tab:red", linestyle="--",
                   label=f"best expert, {best_expert.name} ({best_expert.elo:.0f})")
    elif max_rating is not None:
        ax.axhline(max_rating, color="grey", linestyle=":",
                   label=f"highest rating in training data ({max_rating:g})")
    ax.set_xscale("log")
    ax.set_xticks(temps, [f"{t:g}" for t in temps])
    ax.minorticks_off()
    ax.set_xlabel("temperature")
    ax.set_ylabel("rating (Elo)")
    ax.set_title(f"{title}: rating against sampling temperature")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return write_figure(fig, path)


def _summary(result: SweepResult, model: Path, opponents: Sequence[str], games: int, mode: str,
             settings: Settings, anchor_source: str, opponent_games: int = 0) -> str:
    among = (f"; the opponents also played each other, {opponent_games} games a pair"
             if opponent_games and len(opponents) > 1 else "")
    lines = [f"# Temperature sweep of `{model.name}`", "",
             f"- opponents: {', '.join(f'`{o}`' for o in opponents)}; {games} games per "
             f"temperature and opponent, colours alternating{among}",
             f"- sampling mode: `{mode}`; game limit: "
             f"{settings.max_moves or 'none'} moves (then a draw)",
             f"- anchors: {anchor_source}"
             + ("".join(f"; `{k}` = {v:g}" for k, v in result.anchors.items())),
             "- ratings: maximum-likelihood Elo over all games (95% intervals); Glicko-2 is the "
             "paper's sequential method, per temperature",
             f"- highest rating in the training data: {result.max_rating or 'unknown'}", "",
             "| temperature | elo | 95% interval | games | score | illegal rate | glicko-2 |",
             "|---|---|---|---|---|---|---|"]
    for r in result.rows:
        illegal = "-" if r.illegal_rate is None else f"{100 * r.illegal_rate:.1f}%"
        glicko = "-" if r.glicko is None else f"{r.glicko:.0f}"
        lines.append(f"| {r.temperature:g} | {r.elo:.0f} | {r.lo95:.0f} to {r.hi95:.0f} | "
                     f"{r.games} | {100 * r.score:.1f}% | {illegal} | {glicko} |")
    best = max(result.rows, key=lambda r: r.elo)
    if result.best_expert is not None:
        e = result.best_expert
        verdict = ("transcends: the lower end of its 95% interval is above the best expert's "
                   "rating" if result.transcends() else
                   "does not transcend: its 95% interval reaches below the best expert's rating")
        lines += ["", f"Best expert of the training data: `{e.name}` at {e.elo:.0f} "
                      f"({e.lo95:.0f} to {e.hi95:.0f}). Best model: T = {best.temperature:g} at "
                      f"{best.elo:.0f} ({best.lo95:.0f} to {best.hi95:.0f}): it {verdict}."]
        hottest = result.rows[-1]
        if len(result.rows) > 1:
            place = ("also above" if hottest.lo95 > e.elo else
                     "below" if hottest.hi95 < e.elo else "not separable from")
            lines.append(f"At T = {hottest.temperature:g} the model rates {hottest.elo:.0f} "
                         f"({hottest.lo95:.0f} to {hottest.hi95:.0f}): {place} that expert.")
    elif result.max_rating is not None and result.anchors:
        verdict = ("above" if best.lo95 > result.max_rating else
                   "not clearly above")
        lines += ["", f"Best: T = {best.temperature:g} at {best.elo:.0f} "
                      f"({best.lo95:.0f} to {best.hi95:.0f}), {verdict} the data's highest rating "
                      f"{result.max_rating:g}."]
    lines += ["", "## All players", "", "| player | elo | 95% interval | games | score |",
              "|---|---|---|---|---|"]
    for r in result.ratings:
        interval = "anchor" if r.anchored else f"{r.lo95:.0f} to {r.hi95:.0f}"
        lines.append(f"| {r.name} | {r.elo:.0f} | {interval} | {r.games} | "
                     f"{100 * r.score:.1f}% |")
    if result.endings:
        lines += ["", "## Why the games ended", "", "```", endings_table(result.endings)]
        if result.conversion:
            lines += ["", *result.conversion]
        lines += ["```"]
    if result.calibration is not None:
        lines += ["", f"Calibration for UCI_Elo written to `{result.calibration}`."]
    if result.plot is not None:
        lines += ["", f"![rating against temperature]({result.plot.name})"]
    lines += [f"\nNote: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


@click.command("sweep")
@click.option("--model", required=True, callback=click_model, metavar="MODEL",
              help="The .onnx model, or a bundled model's name.")
@click.option("--temps", default=",".join(f"{t:g}" for t in PAPER_TEMPERATURES),
              show_default=True, help="Temperatures, comma-separated.")
@click.option("--opponent", "opponents", multiple=True, metavar="SPEC",
              help="An opponent spec (repeatable), e.g. sf:skill=1,time=0.1")
@click.option("--games", type=click.IntRange(min=1), default=10, show_default=True,
              help="Games per temperature and opponent (the paper: 100).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--mode", type=click.Choice(MODES), default="token", show_default=True,
              help="The engine's sampling mode; `paper` also records the illegal-move rate.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-moves", type=click.IntRange(min=1), default=90, show_default=True,
              help="A game still running after this many moves is a draw (the paper's rule).")
@click.option("--engine-cmd", default=None,
              help="The UCI engine command (default: transcend-uci); --model/--temp/--mode/--seed "
                   "are appended.")
@click.option("--anchor", "anchor_texts", multiple=True, metavar="NAME=ELO",
              help="Fix an opponent's rating (repeatable).")
@click.option("--tc", default=None, metavar="BASE+INC", help="Game clock for opponents "
              "without their own time/nodes limit.")
@click.option("--openings", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Opening book (.pgn/.epd); default: the standard start, as in the paper.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--move-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Longest wait for one move of the model.")
@click.option("--expert", "experts", multiple=True, metavar="SPEC",
              help="An opponent that is one of the model's training experts (repeatable): the "
                   "summary says whether the model rates above the best of them.")
@click.option("--opponent-games", type=click.IntRange(min=0), default=0, show_default=True,
              help="Games per pair in a round robin among the opponents (experts included), "
                   "so they are also rated against each other.")
@click.option("--no-calibration", is_flag=True, help="Do not write the calibration file.")
@click.option("--write-metadata", is_flag=True,
              help="Also store the calibration in the model file's metadata (needs onnx).")
@click.option("--quiet", is_flag=True)
def sweep_command(model: Path, temps: str, opponents: tuple[str, ...], games: int, out: Path,
                  mode: str, concurrency: int, max_moves: int, engine_cmd: str | None,
                  anchor_texts: tuple[str, ...], tc: str | None, openings: Path | None,
                  seed: int, move_timeout: float, experts: tuple[str, ...],
                  opponent_games: int, no_calibration: bool, write_metadata: bool,
                  quiet: bool) -> None:
    """Rate a model at several temperatures against the same opponents (the paper's Figure 1)."""
    anchors = dict(parse_anchor(a) for a in anchor_texts)
    if not opponents and not experts:
        raise click.UsageError("give at least one --opponent or --expert")
    result = run_sweep(model, parse_temperatures(temps), list(opponents), games, out,
                       concurrency, max_moves, mode, engine_cmd=engine_cmd, anchors=anchors,
                       tc=tc, openings=openings, seed=seed, move_timeout=move_timeout,
                       progress=not quiet,
                       calibrate=not no_calibration, write_metadata=write_metadata,
                       experts=experts, opponent_games=opponent_games)
    click.echo((result.out / "summary.md").read_text())
