"""``transcend data diversity``: the paper's measure of how diverse a data set's players are.

Every position at plies 0 to 16 (keyed by its full FEN, move counters included, so transpositions
by another move order meet) is counted with the move played from it. Over the positions from
which more than 100 moves were seen, the mean of the normalised entropy of those moves: the
entropy (base 2) of the move distribution divided by log2 of the number of distinct moves, 0 when
only one move was seen. The paper reports 0.70, 0.66 and 0.64 for its Lichess data capped at
1000, 1300 and 1500.

Games are shared as a trie of their first moves, so each distinct opening line is replayed once.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import chess
import click
import numpy as np

from transcend.engine.files import write_atomic
from transcend.engine.transcript import GAME_START, VOCAB

MIN_COUNT = 100
MAX_PLY = 16
METHOD = ("mean over positions (full FEN) at plies 0..max_ply from which more than min_count "
          "moves were seen of the entropy (base 2) of the moves divided by log2 of the number "
          "of distinct moves (0 for one)")
_VOCAB_BYTES = np.frombuffer(VOCAB.encode("ascii"), dtype=np.uint8)


def games_of_tokens(tokens: np.ndarray) -> Iterator[str]:
    """The games (movetext without ``;``) of a token stream."""
    if tokens.size and int(tokens.max()) >= len(VOCAB):
        raise ValueError("token ids above the vocabulary: not transcript data")
    text = _VOCAB_BYTES[tokens].tobytes().decode("ascii")
    return (g for g in text.split(GAME_START) if g)


def _trie(games: Iterable[str], moves: int) -> tuple[dict[str, list[Any]], int]:
    """{san: [count, children]} of the first ``moves`` moves of every game, and the games."""
    root: dict[str, list[Any]] = {}
    count = 0
    for game in games:
        count += 1
        node = root
        for i, token in enumerate(game.split(" ", moves)[:moves]):
            san = token.split(".", 1)[1] if i % 2 == 0 else token
            entry = node.get(san)
            if entry is None:
                entry = node[san] = [0, {}]
            entry[0] += 1
            node = entry[1]
    return root, count


def position_key(board: chess.Board) -> tuple[object, ...]:
    """Equal exactly when the boards' full FENs are (pieces, side to move, castling rights, a
    legal en passant square, both move counters), and about ten times faster than the FEN."""
    return (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings,
            board.occupied_co[chess.WHITE], board.occupied_co[chess.BLACK], board.turn,
            board.clean_castling_rights(),
            board.ep_square if board.has_legal_en_passant() else None,
            board.halfmove_clock, board.fullmove_number)


def diversity(games: Iterable[str], min_count: int = MIN_COUNT,
              max_ply: int = MAX_PLY) -> dict[str, Any]:
    """The measure over ``games`` (movetexts); ``value`` is None when no position qualified.

    A move that is not legal SAN where it stands ends its line there (counted in
    ``unreadable``): prepared data is not replayed unless ``--validate`` asked for it.
    """
    root, count = _trie(games, max_ply + 1)
    moves: defaultdict[tuple[object, ...], Counter[str]] = defaultdict(Counter)
    board = chess.Board()
    unreadable = 0

    def visit(node: dict[str, list[Any]]) -> None:  # depth is at most max_ply + 1
        nonlocal unreadable
        seen = moves[position_key(board)]
        for san, (n, _) in node.items():
            seen[san] += n
        for san, (n, children) in node.items():
            if not children:
                continue
            try:
                board.push_san(san)
            except ValueError:
                unreadable += n
                continue
            visit(children)
            board.pop()

    visit(root)
    values = []
    for seen in moves.values():
        total = sum(seen.values())
        if total <= min_count:
            continue
        if len(seen) == 1:
            values.append(0.0)
            continue
        p = np.array(list(seen.values()), dtype=float) / total
        values.append(float(-(p * np.log2(p)).sum() / math.log2(len(seen))))
    return {"value": float(np.mean(values)) if values else None, "positions": len(values),
            "games": count, "min_count": min_count, "max_ply": max_ply,
            "unreadable_moves": unreadable, "method": METHOD}



def games_of_inputs(inputs: Iterable[str]) -> Iterator[str]:
    """The games of prepared-data folders (train.bin and val.bin) and PGN files."""
    from transcend.training.data.prepare import Filters, _blocks, _open, game_chunks, process_chunk

    for path in inputs:
        if os.path.isdir(path):
            folder = Path(path)
            if not (folder / "train.bin").is_file():
                raise ValueError(f"{path}: no train.bin (give a folder written by "
                                 "`transcend data prepare`, or PGN files)")
            for name in ("train.bin", "val.bin"):
                if (folder / name).is_file():
                    yield from games_of_tokens(np.fromfile(folder / name, dtype=np.uint8))
            continue
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input {path}: no such file")
        errors: list[str] = []
        with _open(path) as fh:
            # The games `data prepare` would keep without filters, read the same way.
            for chunk, _ in game_chunks(_blocks(fh), 1 << 20, errors):
                result = process_chunk(chunk, Filters(val_fraction=0.0))
                yield from games_of_tokens(np.frombuffer(result.train, dtype=np.uint8))
        if errors:
            raise ValueError(f"{path}: {'; '.join(errors)}")


def record_in_manifest(folder: Path, result: dict[str, Any]) -> None:
    """Adds ``diversity`` to ``folder``/manifest.json, replacing the file atomically."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["diversity"] = result
    write_atomic(path, json.dumps(manifest, indent=2) + "\n")


def describe(result: dict[str, Any]) -> str:
    head = ("no position qualified" if result["value"] is None
            else f"diversity {result['value']:.4f}")
    return (f"{head}: {result['positions']} positions seen more than {result['min_count']} "
            f"times at plies 0-{result['max_ply']}, from {result['games']:,} games"
            + (f" ({result['unreadable_moves']} moves unreadable)"
               if result["unreadable_moves"] else ""))


@click.command("diversity")
@click.argument("inputs", nargs=-1, required=True, metavar="DIR_OR_PGN...")
@click.option("--min-count", type=click.IntRange(min=0), default=MIN_COUNT, show_default=True,
              help="Keep positions from which more than this many moves were seen.")
@click.option("--max-ply", type=click.IntRange(min=0), default=MAX_PLY, show_default=True,
              help="Positions after 0 to this many half-moves.")
def diversity_command(inputs: tuple[str, ...], min_count: int, max_ply: int) -> None:
    """The paper's diversity of a data set: mean normalised entropy of the moves played from
    common early positions.

    Inputs are folders from `data prepare` (train.bin and val.bin) or PGN files (.pgn,
    .pgn.zst; the games `data prepare` would keep), measured together. A single folder also
    gets the figure in its manifest.json.
    """
    start = time.monotonic()
    result = diversity(games_of_inputs(inputs), min_count, max_ply)
    if result["games"] == 0:
        raise ValueError("no games in the inputs")
    click.echo(describe(result))
    manifest = Path(inputs[0]) / "manifest.json"
    if len(inputs) == 1 and manifest.is_file():
        record_in_manifest(manifest.parent, result)
        click.echo(f"recorded in {manifest}", err=True)
    click.echo(f"{time.monotonic() - start:.1f} s", err=True)
