"""Opening books for tournaments: loading PGN or EPD files, and making the bundled suite.

The bundled ``openings.pgn`` was made by this module's generator::

    python -m transcend.evaluation.openings --out evaluation/openings.pgn

It walks the tree of Stockfish's best moves from the start position (MultiPV at a fixed depth,
so it is reproducible), four plies deep, and keeps one line per position (no transpositions)
when Stockfish scores it within ``--max-cp`` centipawns of equality at a deeper search: short,
common, balanced openings. Each is played twice in a tournament, once with each colour. PGN books
keep the whole game from the start position, which suits a model that reads the transcript of
the game so far.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import chess
import chess.engine
import chess.pgn

from transcend.engine.files import write_atomic
from transcend.evaluation.players import find_stockfish


@dataclass
class Opening:
    board: chess.Board  # the start of the game, with the book moves on its move stack
    name: str


def bundled_openings() -> Path:
    """Path of the suite shipped with the package."""
    return Path(str(resources.files("transcend.evaluation").joinpath("openings.pgn")))


def load_openings(path: Path) -> list[Opening]:
    """Openings of a PGN file (each game's main line) or an EPD file (one position a line)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    openings: list[Opening] = []
    if Path(path).suffix.lower() in (".epd", ".fen"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            board = chess.Board()
            try:
                ops = board.set_epd(line.strip())
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not an EPD position ({exc})") from None
            if board.is_game_over():
                raise ValueError(f"{path}:{number}: the position is already over")
            openings.append(Opening(board, str(ops.get("id", f"{Path(path).name}:{number}"))))
    else:
        handle = io.StringIO(text)
        while (game := chess.pgn.read_game(handle)) is not None:
            if game.errors:
                raise ValueError(f"{path}: bad opening {len(openings) + 1}: {game.errors[0]}")
            board = game.end().board()
            if board.is_game_over():
                raise ValueError(f"{path}: opening {len(openings) + 1} is already over")
            name = game.headers.get("Opening", "") or f"{Path(path).name}:{len(openings) + 1}"
            openings.append(Opening(board, name))
    if not openings:
        raise ValueError(f"{path} holds no openings (expected PGN games or EPD lines)")
    return openings


def generate(engine: chess.engine.SimpleEngine, plies: int, width: list[int], depth: int,
             check_depth: int, max_cp: int) -> list[list[chess.Move]]:
    """Lines of ``plies`` moves: at ply k the ``width[k]`` best moves, kept when balanced."""
    lines: list[list[chess.Move]] = [[]]
    for ply in range(plies):
        grown: list[list[chess.Move]] = []
        for line in lines:
            board = chess.Board()
            for move in line:
                board.push(move)
            infos = engine.analyse(board, chess.engine.Limit(depth=depth), multipv=width[ply])
            grown += [line + [info["pv"][0]] for info in infos if info.get("pv")]
        lines = grown
    balanced = []
    seen: set[str] = set()
    for line in lines:
        board = chess.Board()
        for move in line:
            board.push(move)
        if board.epd() in seen:  # a transposition of a line already kept
            continue
        seen.add(board.epd())
        score = engine.analyse(board, chess.engine.Limit(depth=check_depth))["score"].white()
        if not score.is_mate() and abs(score.score() or 0) <= max_cp:
            balanced.append(line)
    return balanced


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make a balanced opening suite with Stockfish.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plies", type=int, default=4)
    parser.add_argument("--width", default="4,3,2,2", help="moves kept at each ply")
    parser.add_argument("--depth", type=int, default=12, help="depth of the MultiPV searches")
    parser.add_argument("--check-depth", type=int, default=18, help="depth of the final check")
    parser.add_argument("--max-cp", type=int, default=50)
    args = parser.parse_args(argv)
    width = [int(w) for w in args.width.split(",")]
    width += [width[-1]] * (args.plies - len(width))
    with chess.engine.SimpleEngine.popen_uci(find_stockfish()) as engine:
        engine.configure({"Threads": 1, "Hash": 64})
        lines = generate(engine, args.plies, width, args.depth, args.check_depth, args.max_cp)
    chunks = []
    for number, line in enumerate(lines, 1):
        game = chess.pgn.Game()
        game.headers.clear()
        game.headers["Event"] = "transcend opening suite"
        game.headers["Round"] = str(number)
        game.headers["Opening"] = chess.Board().variation_san(line)
        game.headers["Result"] = "*"
        game.add_line(line)
        chunks.append(str(game))
    write_atomic(args.out, "\n\n".join(chunks) + "\n")
    print(f"{len(lines)} balanced openings written to {args.out}")


if __name__ == "__main__":
    main()
