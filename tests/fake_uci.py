"""A scriptable fake UCI engine for the tournament tests: misbehaves on purpose.

    python fake_uci.py [--mode MODE] [--after N] [--once FILE] [--temp T] [--model M]
                       [--illegal-info K]

Modes: ``random`` plays random legal moves; ``crash`` exits at its N-th ``go`` of a game;
``silent`` never answers its N-th ``go``; ``illegal`` plays an illegal move at its N-th ``go``;
``nouci`` never answers ``uci``; ``slow`` sleeps 0.3 s before every move. ``--illegal-info K``
reports ``info string illegal attempts K`` before every move, as transcend-uci does in paper mode;
``--once FILE`` makes a ``crash`` happen once: the crashing process creates FILE, and one
that finds it plays random moves.
``--fallback-at N`` reports at its N-th move that every sample was illegal.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import chess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="random")
    parser.add_argument("--after", type=int, default=1)
    parser.add_argument("--once", default="")
    parser.add_argument("--temp", type=float, default=1.0)
    parser.add_argument("--model", default="")
    parser.add_argument("--illegal-info", type=int, default=-1)
    parser.add_argument("--fallback-at", type=int, default=0)
    args, _ = parser.parse_known_args()
    rng = random.Random(int(args.temp * 1000))
    if args.once and os.path.exists(args.once):
        args.mode = "random"
    board = chess.Board()
    goes = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "uci":
            if args.mode == "nouci":
                continue
            print("id name fake\noption name Temperature type string default 1.0\nuciok",
                  flush=True)
        elif words[0] == "isready":
            print("readyok", flush=True)
        elif words[0] == "ucinewgame":
            goes = 0
        elif words[0] == "position":
            if words[1] == "startpos":
                board = chess.Board()
                rest = words[2:]
            else:
                board = chess.Board(" ".join(words[2:8]))
                rest = words[8:]
            for uci in rest[1:] if rest and rest[0] == "moves" else []:
                board.push_uci(uci)
        elif words[0] == "go":
            goes += 1
            if goes >= args.after and args.mode == "crash":
                if args.once:
                    open(args.once, "w").close()
                sys.exit(3)
            if goes >= args.after and args.mode == "silent":
                continue
            if args.mode == "slow":
                time.sleep(0.3)
            if goes == args.fallback_at:
                print("info string illegal attempts 5 fallback token 'Zz9'", flush=True)
            elif args.illegal_info > 0:
                print(f"info string illegal attempts {args.illegal_info} 'e9'", flush=True)
            if goes >= args.after and args.mode == "illegal":
                legal = set(board.legal_moves)
                wrong = next(chess.Move(a, b) for a in board.pieces(chess.KING, board.turn)
                             for b in chess.SQUARES if a != b and chess.Move(a, b) not in legal)
                print(f"bestmove {wrong.uci()}", flush=True)
                continue
            move = rng.choice(list(board.legal_moves))
            print(f"info depth 1 score cp 0\nbestmove {move.uci()}", flush=True)
        elif words[0] == "quit":
            return


if __name__ == "__main__":
    main()
