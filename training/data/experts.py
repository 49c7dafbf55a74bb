"""Training data made here: games between weak, noisy "expert" engines, written as PGN.

Each game pairs two experts drawn at random from the list. Their rating labels go into
``WhiteElo``/``BlackElo`` so ``transcend data prepare --max-elo`` treats the file like Lichess data.
"""

from __future__ import annotations

import asyncio
import datetime
import multiprocessing as mp
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import chess
import chess.pgn

from transcend.evaluation.endings import game_result
from transcend.evaluation.players import EngineCrashed, Player, PlayerSpec, parse_spec
from transcend.evaluation.tournament import check_engines

DEFAULT_EXPERTS = (
    "sf:skill=0,nodes=100,eps=0.4,elo=1000",
    "sf:skill=1,nodes=100,eps=0.4,elo=1000",
    "sf:skill=2,nodes=100,eps=0.4,elo=1000",
    "sf:skill=3,nodes=100,eps=0.4,elo=1000",
)
_GAME_END = re.compile(r"(1-0|0-1|1/2-1/2|\*)\s*$")
STARTUP_TIMEOUT = 30.0  # seconds for an expert's UCI handshake when the experts are checked


@dataclass
class GameRecord:
    index: int
    white: str
    black: str
    white_elo: int | None
    black_elo: int | None
    moves: list[chess.Move]
    result: str
    termination: str


def game_over(board: chess.Board, max_plies: int) -> tuple[str, str] | None:
    """(result, PGN termination) once the game has ended, else None; draws end it at once."""
    if (ended := game_result(board)) is not None:
        return ended[0], "Normal"
    if board.ply() >= max_plies:
        return "1/2-1/2", "Adjudication"
    return None


def play_game(white: Player, black: Player, max_plies: int) -> tuple[list[chess.Move], str, str]:
    board = chess.Board()
    white.new_game()
    black.new_game()
    while (ended := game_over(board, max_plies)) is None:
        player = white if board.turn == chess.WHITE else black
        board.push(player.choose(board))
    return list(board.move_stack), ended[0], ended[1]


def pgn_text(game: GameRecord, event: str, date: str) -> str:
    """The game as standard PGN, one string ending with a blank line."""
    pgn = chess.pgn.Game()
    pgn.headers["Event"] = event
    pgn.headers["Site"] = "transcend data experts"
    pgn.headers["Date"] = date
    pgn.headers["Round"] = str(game.index + 1)
    pgn.headers["White"] = game.white
    pgn.headers["Black"] = game.black
    pgn.headers["Result"] = game.result
    if game.white_elo is not None:
        pgn.headers["WhiteElo"] = str(game.white_elo)
    if game.black_elo is not None:
        pgn.headers["BlackElo"] = str(game.black_elo)
    pgn.headers["Termination"] = game.termination
    pgn.add_line(game.moves)
    return str(pgn) + "\n\n"


class _Worker:
    """Per-process state: one running Player per expert, reused across games."""

    specs: Sequence[PlayerSpec] = ()
    players: list[Player] = []
    seed: int = 0
    max_plies: int = 300


def _init_worker(specs: Sequence[PlayerSpec], seed: int, max_plies: int) -> None:
    _Worker.specs = specs
    _Worker.players = []
    _Worker.seed = seed
    _Worker.max_plies = max_plies


def _players() -> list[Player]:
    """The worker's players, started by its first game rather than by the pool's initializer:
    a pool answers an initializer's error by starting the worker again, for ever, while a game's
    error reaches the parent and ends the run."""
    while len(_Worker.players) < len(_Worker.specs):
        _Worker.players.append(Player(_Worker.specs[len(_Worker.players)]))
    return _Worker.players


def _play_indexed(index: int) -> GameRecord:
    # Everything random about game `index` comes from (seed, index), so a run is reproducible
    # as far as the engines themselves are (Stockfish's Skill Level has a random streak of its own).
    rng = random.Random(f"{_Worker.seed}:{index}")
    w, b = rng.randrange(len(_Worker.specs)), rng.randrange(len(_Worker.specs))
    players = _players()
    white, black = players[w], players[b]
    ws, bs = _Worker.specs[w], _Worker.specs[b]
    failure: Exception | None = None
    for attempt in range(3):
        if attempt:
            white.restart()
            black.restart()
        white.rng.seed(f"{_Worker.seed}:{index}:white:{attempt}")
        black.rng.seed(f"{_Worker.seed}:{index}:black:{attempt}")
        try:
            moves, result, termination = play_game(white, black, _Worker.max_plies)
            break
        except (EngineCrashed, OSError, ValueError) as exc:
            failure = exc
    else:
        raise EngineCrashed(f"game {index + 1} ({ws.name} vs {bs.name}): the engines failed "
                            f"3 times, last: {failure}")
    return GameRecord(index, ws.name, bs.name, ws.elo, bs.elo, moves, result, termination)


def complete_games(path: Path) -> tuple[int, int]:
    """(games, byte offset after the last complete game) of an existing experts PGN."""
    if not path.exists():
        return 0, 0
    data = path.read_bytes()
    games, end = 0, 0
    for chunk_end in (m.end() for m in re.finditer(rb"\n\n(?=\[Event |\Z)", data)):
        chunk = data[end:chunk_end].decode("utf-8", "replace")
        if "[Event " in chunk and _GAME_END.search(chunk):
            games += 1
            end = chunk_end
    return games, end


def generate(
    out: Path,
    experts: Sequence[str],
    games: int,
    concurrency: int = 1,
    seed: int = 0,
    max_plies: int = 300,
    progress: bool = True,
) -> Iterator[GameRecord]:
    """Append games to ``out`` until it holds ``games`` games, yielding each one as it is written.

    An interrupted run resumes: a half-written last game is cut off and play continues from the
    next game index, so the file is the same as one uninterrupted run's. Every expert is parsed
    and its engine started once before any game (ValueError for a bad one); an engine that keeps
    failing during the run raises EngineCrashed. The file is created by its first finished game,
    so a run that fails before one leaves none.
    """
    specs = [parse_spec(text) for text in experts]
    done, offset = complete_games(out)
    if done >= games:
        return
    asyncio.run(check_engines(specs, STARTUP_TIMEOUT))
    if out.exists() and out.stat().st_size > offset:
        with open(out, "r+b") as cut:
            cut.truncate(offset)
    date = datetime.date.today().strftime("%Y.%m.%d")
    event = "transcend experts " + " vs ".join(spec.name for spec in specs)
    indices = range(done, games)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=games, initial=done, unit="game", dynamic_ncols=True)
    ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
    if concurrency <= 1:
        _init_worker(specs, seed, max_plies)
        records: Iterator[GameRecord] = map(_play_indexed, indices)
        pool = None
    else:
        pool = ctx.Pool(concurrency, _init_worker, (specs, seed, max_plies))
        records = pool.imap(_play_indexed, indices, chunksize=4)
    fh = None
    try:
        for record in records:
            if fh is None:
                out.parent.mkdir(parents=True, exist_ok=True)
                fh = open(out, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
            fh.write(pgn_text(record, event[:200], date))
            fh.flush()
            if bar is not None:
                bar.update(1)
            yield record
    finally:
        if pool is not None:
            pool.terminate()
        else:
            for player in _Worker.players:
                player.close()
        if fh is not None:
            fh.close()
        if bar is not None:
            bar.close()
