"""Players: Stockfish at a skill level, a random mover, or any UCI engine, optionally noisy.

A player is described by a one-line spec, used both for the experts that make training data and
for tournament opponents::

    sf:skill=1,time=0.1                 Stockfish Skill Level 1 at 0.1 s a move (the paper's)
    sf:skill=0,nodes=60,eps=0.3,elo=900  60 nodes a move, 30% uniformly random moves, label 900
    random                              a uniformly random legal mover
    uci:name=mine,cmd=transcend-uci --temp 0.5
    uci:name=m,option.Temperature=0.5,cmd=transcend-uci --model m.onnx
    transcend-uci --temp 0.5            any other text is a UCI command line

Keys for every kind: ``name`` (shown in PGN), ``eps`` (probability of a uniformly random legal
move instead of the engine's), ``elo`` (the rating label written to PGN), ``nodes``, ``time``
(seconds a move), ``depth``. Stockfish also takes ``skill``, ``threads``, ``hash`` and ``path``;
``option.NAME=VALUE`` sets any UCI option (``sf`` and ``uci`` players; NAME keeps its case).
``cmd`` must come last in a ``uci:`` spec because it takes the rest of the line.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import chess
import chess.engine

STOCKFISH_CANDIDATES = ("stockfish", "/usr/games/stockfish", "/usr/local/bin/stockfish")


class SpecError(ValueError):
    """A player spec that cannot be understood."""


def find_stockfish(path: str | None = None) -> str:
    """Path of a Stockfish binary: ``path``, $STOCKFISH, PATH, or Debian's /usr/games/stockfish."""
    for candidate in (path, os.environ.get("STOCKFISH"), *STOCKFISH_CANDIDATES):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise FileNotFoundError(
        "Stockfish not found: install it (Debian: apt-get install stockfish) or set $STOCKFISH"
    )


@dataclass
class PlayerSpec:
    kind: str  # "sf", "random" or "uci"
    name: str
    command: list[str] = field(default_factory=list)
    options: dict[str, str | int] = field(default_factory=dict)
    nodes: int | None = None
    time: float | None = None
    depth: int | None = None
    eps: float = 0.0
    elo: int | None = None
    text: str = ""

    @property
    def temperature(self) -> float | None:
        """The sampling temperature of a transcend engine: its ``Temperature`` option, or the
        ``--temp`` / ``--temperature`` argument of its command line; None when there is none."""
        for key, value in self.options.items():
            if key.lower() == "temperature":
                return _float_or_none(value)
        for i, word in enumerate(self.command):
            flag, eq, value = word.partition("=")
            if flag in ("--temp", "--temperature"):
                if not eq:
                    value = self.command[i + 1] if i + 1 < len(self.command) else ""
                return _float_or_none(value)
        return None

    def has_limit(self) -> bool:
        """Whether the spec sets its own per-move budget (``nodes``, ``time`` or ``depth``)."""
        return self.nodes is not None or self.time is not None or self.depth is not None

    def limit(self) -> chess.engine.Limit:
        """The search budget for ``chess.engine`` (0.1 s a move when none is given)."""
        if self.nodes is None and self.time is None and self.depth is None:
            return chess.engine.Limit(time=0.1)
        return chess.engine.Limit(nodes=self.nodes, time=self.time, depth=self.depth)

    def noise_move(self, board: chess.Board, rng: random.Random) -> chess.Move | None:
        """A uniformly random legal move when this player moves at random this turn, else None:
        always for ``random``, with probability ``eps`` for a noisy engine."""
        if self.kind == "random" or (self.eps and rng.random() < self.eps):
            return rng.choice(list(board.legal_moves))
        return None

    def go_arguments(self) -> str:
        """The same budget as the arguments of a UCI ``go`` command."""
        limit = self.limit()
        parts = []
        if limit.nodes is not None:
            parts.append(f"nodes {limit.nodes}")
        if limit.time is not None:
            parts.append(f"movetime {max(1, round(limit.time * 1000))}")
        if limit.depth is not None:
            parts.append(f"depth {limit.depth}")
        return " ".join(parts)


def _float_or_none(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _option_value(value: str) -> str | int:
    # Spin options arrive as text; integers are passed on as numbers, everything else verbatim.
    try:
        return int(value)
    except ValueError:
        return value


def _number(key: str, value: str, kind: type) -> int | float:
    try:
        return kind(value)
    except ValueError:
        raise SpecError(f"{key}={value!r} is not a number") from None


def resolve_command(argv: list[str]) -> list[str]:
    """``argv`` with its program found on PATH or, failing that, beside the running Python.

    So ``transcend-uci`` works as an engine command from an unactivated virtual environment.
    """
    if argv and os.sep not in argv[0] and shutil.which(argv[0]) is None:
        sibling = Path(sys.executable).parent / argv[0]
        if sibling.exists():
            return [str(sibling), *argv[1:]]
    return argv


def parse_spec(text: str) -> PlayerSpec:
    """Parse a player spec (see the module docstring); raises SpecError with a one-line reason."""
    text = text.strip()
    if not text:
        raise SpecError("empty player spec")
    head, _, rest = text.partition(":")
    kind = head.lower()
    if kind in ("stockfish",):
        kind = "sf"
    if kind not in ("sf", "random", "uci"):
        bare = PlayerSpec(kind="uci", name="", command=resolve_command(shlex.split(text)),
                          text=text)
        bare.name = default_name(bare)
        return bare
    pairs: dict[str, str] = {}
    while rest:
        raw_key, eq, value = rest.partition("=")
        key = raw_key.strip().lower()
        if not eq or not key:
            raise SpecError(f"expected key=value in player spec {text!r}")
        if key == "cmd":
            pairs[key] = value.strip()
            break
        value, _, rest = value.partition(",")
        pairs[raw_key.strip() if key.startswith("option.") else key] = value.strip()
    spec = PlayerSpec(kind=kind, name="", text=text)
    for key, value in pairs.items():
        if key == "name":
            spec.name = value
        elif key == "eps":
            spec.eps = float(_number(key, value, float))
            if not 0.0 <= spec.eps <= 1.0:
                raise SpecError(f"eps={value} must be between 0 and 1")
        elif key == "elo":
            spec.elo = int(_number(key, value, int))
        elif key == "nodes":
            spec.nodes = int(_number(key, value, int))
        elif key == "time":
            spec.time = float(_number(key, value, float))
        elif key == "depth":
            spec.depth = int(_number(key, value, int))
        elif key.lower().startswith("option.") and kind != "random" and key[7:]:
            spec.options[key[7:]] = _option_value(value)
        elif key == "cmd" and kind == "uci":
            spec.command = resolve_command(shlex.split(value))
        elif kind == "sf" and key == "skill":
            skill = int(_number(key, value, int))
            if not 0 <= skill <= 20:
                raise SpecError(f"skill={value} must be between 0 and 20")
            spec.options["Skill Level"] = skill
        elif kind == "sf" and key == "threads":
            spec.options["Threads"] = int(_number(key, value, int))
        elif kind == "sf" and key == "hash":
            spec.options["Hash"] = int(_number(key, value, int))
        elif kind == "sf" and key == "path":
            spec.command = [value]
        else:
            raise SpecError(f"unknown key {key!r} for a {kind} player in {text!r}")
    if kind == "uci" and not spec.command:
        raise SpecError(f"a uci player needs cmd=...: {text!r}")
    if kind == "sf":
        spec.command = [find_stockfish(spec.command[0] if spec.command else None)]
        spec.options.setdefault("Threads", 1)
        spec.options.setdefault("Hash", 16)
    if not spec.name:
        spec.name = default_name(spec)
    return spec


def default_name(spec: PlayerSpec) -> str:
    if spec.kind == "random":
        return "random"
    parts = ["sf" if spec.kind == "sf" else os.path.basename(spec.command[0])]
    if "Skill Level" in spec.options:
        parts.append(f"skill{spec.options['Skill Level']}")
    if spec.nodes is not None:
        parts.append(f"n{spec.nodes}")
    if spec.time is not None:
        parts.append(f"t{spec.time:g}")
    if spec.depth is not None:
        parts.append(f"d{spec.depth}")
    if spec.eps:
        parts.append(f"eps{spec.eps:g}")
    if spec.kind == "uci" and (temperature := spec.temperature) is not None:
        parts.append(f"T{temperature:g}")
    return "-".join(parts)


class UciClient:
    """A minimal blocking UCI client for fixed-budget searches.

    Data generation asks for hundreds of thousands of tiny searches; talking to the engine over
    plain pipes is about 1.7x faster here than going through ``chess.engine``'s event loop.
    Tournaments, which need clocks and hang detection, use ``chess.engine`` instead.
    """

    def __init__(self, command: list[str], options: dict[str, str | int]) -> None:
        self.command = command
        self.options = options
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        self._send("uci")
        self._wait("uciok")
        for name, value in self.options.items():
            self._send(f"setoption name {name} value {value}")
        self._send("isready")
        self._wait("readyok")

    def _send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _wait(self, prefix: str) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EngineCrashed(f"{self.command[0]} exited")
            if line.startswith(prefix):
                return line

    def new_game(self) -> None:
        self._send("ucinewgame")

    def bestmove(self, board: chess.Board, limit: str) -> chess.Move:
        root = board.root()
        position = "startpos" if root.fen() == chess.STARTING_FEN else f"fen {root.fen()}"
        moves = " ".join(m.uci() for m in board.move_stack)
        self._send(f"position {position}" + (f" moves {moves}" if moves else ""))
        self._send(f"go {limit}")
        words = self._wait("bestmove").split()
        return chess.Move.from_uci(words[1]) if len(words) > 1 else chess.Move.null()

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self._send("quit")
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class EngineCrashed(RuntimeError):
    """The engine process went away or answered nonsense."""


class Player:
    """A running player. ``choose`` returns a legal move; noise comes from the player's own RNG."""

    def __init__(self, spec: PlayerSpec, seed: int | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.rng = random.Random(seed)
        self.client: UciClient | None = None
        if spec.kind != "random" and spec.eps < 1.0:
            self.client = UciClient(spec.command, spec.options)

    def restart(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client.start()

    def new_game(self) -> None:
        if self.client is not None:
            self.client.new_game()

    def choose(self, board: chess.Board) -> chess.Move:
        if self.client is None:  # a random mover, or eps = 1
            return self.rng.choice(list(board.legal_moves))
        if (noise := self.spec.noise_move(board, self.rng)) is not None:
            return noise
        move = self.client.bestmove(board, self.spec.go_arguments())
        if not board.is_legal(move):
            raise EngineCrashed(f"{self.name} played an illegal move: {move.uci()}")
        return move

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
