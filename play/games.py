"""The games behind the play page: positions, moves, the model's replies and their numbers.

Every number the page shows comes from the engine's policy (``Policy.move_distribution`` and
``Policy.choose``), and every win probability from Stockfish's MultiPV scores through
``transcend advantage``'s ``win_probability``; nothing here scores moves itself. Chess rules
(legal moves, check, the end of the game) are python-chess's: the page has no chess logic.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import chess
import chess.pgn
import numpy as np

from transcend.engine.convert import ConvertOptions, in_force, plan
from transcend.engine.options import DEFAULT_TEMPERATURE, SEED_MAX
from transcend.engine.policy import MODES, Policy
from transcend.evaluation.advantage import MultiPVClient, position_key, win_probability
from transcend.evaluation.advantage.positions import QuietGameBuilder
from transcend.evaluation.players import EngineCrashed, PlayerSpec, UciClient, find_stockfish

# The page's sampling modes are the engine's (MODES); `paper` shows the `token` distribution,
# from which the engine falls back when the paper's unconstrained attempts fail.
PLAYERS = ("human", "model", "stockfish")
TOP_MOVES = 8
# Stockfish nodes per position for win probabilities: the scale is `transcend advantage`'s, the
# search smaller than its 20,000 so that a 300-ply review takes seconds.
DEFAULT_NODES = 5000
OPPONENT_NODES = 100  # a Stockfish opponent's nodes a move: the model card's levels
MAX_GAMES = 200  # games kept in memory; the least recently used goes first
MAX_PLIES = 2000


class PlayError(ValueError):
    """A request the page cannot honour; its text is shown to the user as is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_temperature(value: object) -> float:
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PlayError(f"temperature must be a number >= 0, not {value!r}") from None
    if not np.isfinite(t) or t < 0:
        raise PlayError(f"temperature must be a number >= 0, not {value!r}")
    return t


def parse_seed(value: object) -> int:
    message = f"seed must be a whole number from 0 to {SEED_MAX}, not {value!r}"
    try:
        seed = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PlayError(message) from None
    if not 0 <= seed <= SEED_MAX:
        raise PlayError(message)
    return seed


def parse_fen(fen: object) -> chess.Board:
    """A legal standard-chess position from FEN text, or a PlayError saying what is wrong."""
    if not isinstance(fen, str) or not fen.strip():
        raise PlayError("FEN: empty")
    try:
        board = chess.Board(fen.strip())
    except ValueError as exc:
        raise PlayError(f"FEN: {exc}") from None
    status = board.status()
    if status != chess.STATUS_VALID:
        problems = [name.lower().replace("_", " ")
                    for name, flag in chess.Status.__members__.items() if flag and status & flag]
        raise PlayError(f"FEN: not a legal position ({', '.join(problems[:3])})")
    return board


def parse_pgn(text: object) -> chess.pgn.Game:
    """The first game of a PGN text (its main line), or a PlayError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise PlayError("PGN: empty")
    game = chess.pgn.read_game(io.StringIO(text), Visitor=QuietGameBuilder)
    if game is None:
        raise PlayError("PGN: no game found")
    if game.errors:
        raise PlayError(f"PGN: {str(game.errors[0]).splitlines()[0]}")
    variant = game.headers.get("Variant", "standard").lower()
    if variant not in ("standard", "chess", "from position", ""):
        raise PlayError(f"PGN: variant {game.headers['Variant']!r} is not supported")
    board = game.board()
    if not board.is_valid():
        raise PlayError("PGN: its FEN header is not a legal position")
    plies = len(list(game.mainline_moves()))
    if plies == 0 and "FEN" not in game.headers:
        raise PlayError("PGN: no moves found")
    if plies > MAX_PLIES:
        raise PlayError(f"PGN: longer than {MAX_PLIES} plies")
    return game


@dataclass
class Settings:
    """How the model plays in one game, as set on the page."""

    temperature: float = DEFAULT_TEMPERATURE
    mode: str = "token"
    seed: int = 0  # 0: a fresh random seed
    white: str = "human"
    black: str = "model"
    level: int = 0  # Stockfish Skill Level of a `stockfish` player

    def update(self, values: dict[str, object]) -> None:
        """Check every value first, so a bad one changes nothing."""
        new = Settings(**self.__dict__)
        if "temperature" in values:
            new.temperature = parse_temperature(values["temperature"])
        if "mode" in values:
            if values["mode"] not in MODES:
                raise PlayError(f"mode must be one of {', '.join(MODES)}")
            new.mode = str(values["mode"])
        if "seed" in values:
            new.seed = parse_seed(values["seed"])
        for colour in ("white", "black"):
            if colour in values:
                if values[colour] not in PLAYERS:
                    raise PlayError(f"{colour} must be one of {', '.join(PLAYERS)}")
                setattr(new, colour, str(values[colour]))
        if "level" in values:
            try:
                new.level = int(values["level"])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise PlayError("Stockfish level must be a whole number from 0 to 20") from None
            if not 0 <= new.level <= 20:
                raise PlayError("Stockfish level must be a whole number from 0 to 20")
        self.__dict__.update(new.__dict__)

    @property
    def distribution_mode(self) -> str:
        return "move" if self.mode == "move" else "token"


@dataclass
class Game:
    """One game of one browser tab: a start position, a line of moves and a cursor in it."""

    id: str
    root: chess.Board
    settings: Settings
    moves: list[chess.Move] = field(default_factory=list)
    cursor: int = 0  # plies shown on the board; moving from an earlier ply cuts the line there
    # Per ply of the line: who played it ("human", "model", "stockfish" or "pgn") and, for the
    # model, the probability of its move and the settings it was drawn with.
    played: list[dict[str, object]] = field(default_factory=list)
    sans: list[str] = field(default_factory=list)  # of the line, kept so answers stay cheap
    headers: dict[str, str] = field(default_factory=dict)
    loaded_moves: list[chess.Move] | None = None  # the line of a loaded PGN, for its result
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def board(self, ply: int | None = None) -> chess.Board:
        """The position after ``ply`` plies of the line (default: the cursor), with history."""
        board = self.root.copy(stack=False)
        for move in self.moves[: self.cursor if ply is None else ply]:
            board.push(move)
        return board

    def reseed(self) -> None:
        self.rng = np.random.default_rng(self.settings.seed or None)

    def push(self, board: chess.Board, move: chess.Move, by: str,
             info: dict[str, object] | None = None) -> None:
        """Play ``move`` in ``board`` (the position at the cursor), cutting the line there."""
        if self.cursor >= MAX_PLIES:
            raise PlayError(f"the game has reached {MAX_PLIES} plies")
        self.cut(self.cursor)
        self.moves.append(move)
        self.sans.append(board.san(move))
        self.played.append({"by": by, **(info or {})})
        self.cursor += 1

    def cut(self, ply: int) -> None:
        del self.moves[ply:], self.played[ply:], self.sans[ply:]

    def player_to_move(self) -> str:
        # The side to move follows from the cursor's parity: no need to replay the line.
        white = (self.root.turn == chess.WHITE) == (self.cursor % 2 == 0)
        return self.settings.white if white else self.settings.black


def outcome_text(board: chess.Board) -> tuple[str, str]:
    """(result, why) of a position: ``("*", "")`` while the game goes on."""
    outcome = board.outcome()
    if outcome is None:
        return "*", ""
    return outcome.result(), outcome.termination.name.lower().replace("_", " ")


class Stockfish:
    """Stockfish for the page: MultiPV scores of every legal move, and an opponent's moves.

    One process for analysis and one per opponent level, started on first use; each is used by
    one request at a time.
    """

    def __init__(self, nodes: int = DEFAULT_NODES, path: str | None = None) -> None:
        self.nodes = nodes
        try:
            self.command: str | None = find_stockfish(path)
        except FileNotFoundError:
            self.command = None
        self._lock = threading.Lock()
        self._analysis: MultiPVClient | None = None
        self._opponents: dict[str, UciClient] = {}
        self._scores: OrderedDict[str, dict[str, float]] = OrderedDict()

    @property
    def available(self) -> bool:
        return self.command is not None

    def win_probabilities(self, board: chess.Board) -> dict[str, float] | None:
        """UCI move -> win probability for the side to move after a MultiPV search; None
        without Stockfish."""
        if self.command is None:
            return None
        key = position_key(board)
        with self._lock:
            if key in self._scores:
                self._scores.move_to_end(key)
                return self._scores[key]
            try:
                if self._analysis is None:
                    self._analysis = MultiPVClient([self.command], self.nodes)
                scores = self._analysis.scores(board)
            except (EngineCrashed, OSError) as exc:
                self._drop(self._analysis)
                self._analysis = None
                raise PlayError(f"Stockfish failed ({exc}); the next request restarts it",
                                500) from None
            found = {m: win_probability(kind, value) for m, (kind, value) in scores.items()}
            self._scores[key] = found
            if len(self._scores) > 20_000:
                self._scores.popitem(last=False)
            return found

    def best_move(self, board: chess.Board, level: int) -> chess.Move:
        if self.command is None:
            raise PlayError("Stockfish is not installed (Debian: apt-get install stockfish)")
        # Built field by field, not from a spec string: the path may hold any character.
        spec = PlayerSpec(kind="sf", name=f"sf-skill{level}", command=[self.command],
                          options={"Skill Level": level, "Threads": 1, "Hash": 16},
                          nodes=OPPONENT_NODES)
        with self._lock:
            client = self._opponents.get(spec.name)
            try:
                if client is None:
                    client = self._opponents[spec.name] = UciClient(spec.command, spec.options)
                move = client.bestmove(board, spec.go_arguments())
            except (EngineCrashed, OSError) as exc:
                self._drop(self._opponents.pop(spec.name, None))
                raise PlayError(f"Stockfish failed ({exc}); the next request restarts it",
                                500) from None
        if move not in board.legal_moves:
            raise PlayError(f"Stockfish answered {move.uci()}, not a legal move", 500)
        return move

    @staticmethod
    def _drop(client: UciClient | None) -> None:
        if client is not None:
            with contextlib.suppress(OSError, EngineCrashed):
                client.close()

    def close(self) -> None:
        with self._lock:
            clients = [*self._opponents.values()]
            if self._analysis is not None:
                clients.append(self._analysis)
            for client in clients:
                client.close()
            self._opponents.clear()
            self._analysis = None


class Games:
    """The games of every tab, one model and one Stockfish shared by all of them."""

    def __init__(self, policy: Policy, model_name: str, stockfish: Stockfish) -> None:
        self.policy = policy
        self.model_name = model_name
        self.stockfish = stockfish
        self._games: OrderedDict[str, Game] = OrderedDict()
        self._lock = threading.Lock()

    # -- the set of games ------------------------------------------------------------------

    def new(self, values: dict[str, object]) -> Game:
        """A new game from the start, a FEN or a PGN, with the page's settings."""
        settings = Settings()
        settings.update(values)
        root, moves, headers = chess.Board(), [], {}
        if values.get("pgn"):
            pgn = parse_pgn(values["pgn"])
            root, moves = pgn.board(), list(pgn.mainline_moves())
            headers = dict(pgn.headers)
        elif values.get("fen"):
            root = parse_fen(values["fen"])
        game = Game(uuid.uuid4().hex, root, settings, headers=headers)
        game.reseed()
        board = root.copy(stack=False)
        for move in moves:
            game.push(board, move, "pgn")
            board.push(move)
        if moves:
            game.loaded_moves = list(moves)
            game.cursor = 0  # a loaded game is stepped through from its start
        with self._lock:
            self._games[game.id] = game
            while len(self._games) > MAX_GAMES:
                self._games.popitem(last=False)
        return game

    def get(self, game_id: object) -> Game:
        with self._lock:
            game = self._games.get(str(game_id))
            if game is None:
                raise PlayError("unknown game (the server may have restarted): start a new game",
                                404)
            self._games.move_to_end(game.id)
            return game

    # -- moves -----------------------------------------------------------------------------

    def move(self, game: Game, uci: object) -> None:
        """A move from the page (UCI text), checked against the position."""
        board = game.board()
        try:
            move = chess.Move.from_uci(str(uci))
        except ValueError:
            raise PlayError(f"not a move: {uci!r} (expected UCI like e2e4 or e7e8q)") from None
        if board.is_game_over():
            raise PlayError(f"the game is over ({outcome_text(board)[1]})")
        if move not in board.legal_moves:
            raise PlayError(f"illegal move {uci} in {board.fen()}")
        game.push(board, move, "human")

    def reply(self, game: Game) -> dict[str, object]:
        """The move of the engine to move (the model or Stockfish); the human's turn is an
        error."""
        board = game.board()
        if board.is_game_over():
            raise PlayError(f"the game is over ({outcome_text(board)[1]})")
        player = game.player_to_move()
        if player == "stockfish":
            move = self.stockfish.best_move(board, game.settings.level)
            game.push(board, move, "stockfish", {"level": game.settings.level})
            return {"uci": move.uci(), "san": board.san(move), "by": "stockfish"}
        if player != "model":
            raise PlayError("it is your move")
        s = game.settings
        # As the engine plays: its conversion rules when ahead, except in the paper's mode.
        rules = plan(board, None, s.temperature, in_force(s.mode, ConvertOptions()))
        choice = self.policy.choose(board, rules.temperature, s.mode, game.rng, rules.moves)
        p = choice.probabilities.get(choice.move, 0.0)
        game.push(board, choice.move, "model",
                  {"p": p, "temperature": rules.temperature, "mode": s.mode,
                   **({"convert": rules.rules} if rules.rules else {})})
        return {"uci": choice.move.uci(), "san": board.san(choice.move), "by": "model", "p": p}

    def takeback(self, game: Game) -> None:
        """Back to the human's previous turn: one ply, or two when the engine answered."""
        if game.cursor == 0:
            raise PlayError("nothing to take back")
        game.cursor -= 1
        while game.cursor > 0 and game.player_to_move() != "human" and (
            game.settings.white == "human" or game.settings.black == "human"
        ):
            game.cursor -= 1
        game.cut(game.cursor)

    def goto(self, game: Game, ply: object) -> None:
        try:
            n = int(ply)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise PlayError(f"ply must be a whole number, not {ply!r}") from None
        if not 0 <= n <= len(game.moves):
            raise PlayError(f"ply must be from 0 to {len(game.moves)}")
        game.cursor = n

    # -- numbers ---------------------------------------------------------------------------

    def analysis(self, game: Game, ply: int | None = None, stockfish: bool = True,
                 top: int = TOP_MOVES) -> dict[str, object]:
        """The model's top moves in the position after ``ply`` plies: exact probabilities at
        T = 1 and at the game's T, the move played there, and Stockfish's win probabilities."""
        ply = game.cursor if ply is None else ply
        board = game.board(ply)
        s = game.settings
        mode = s.distribution_mode
        base, tempered = self.policy.move_distributions(board, [1.0, s.temperature], mode)
        wins = self.stockfish.win_probabilities(board) if stockfish and base else None
        played = game.moves[ply] if ply < len(game.moves) else None
        ranked = sorted(base, key=lambda m: -(tempered[m] + base[m]))
        shown = ranked[:max(1, top)]
        if played is not None and played not in shown:
            shown.append(played)
        sans = {m: board.san(m) for m in shown}
        candidates = [
            {"uci": m.uci(), "san": sans[m], "p1": base[m], "pT": tempered[m],
             "win": wins.get(m.uci()) if wins else None}
            for m in shown
        ]
        return {
            "ply": ply, "fen": board.fen(), "temperature": s.temperature, "mode": s.mode,
            "legal": len(base), "candidates": candidates,
            "played": {"uci": played.uci(), "san": board.san(played),
                       **game.played[ply]} if played is not None else None,
            "stockfish": wins is not None,
            "best_win": max(wins.values()) if wins else None,
        }

    def review(self, game: Game, stockfish: bool = True) -> list[dict[str, object]]:
        """Per move of the line: the model's probability of it at T = 1 and at the game's T, the
        model's own preferred move, and the win probability the move lost against it."""
        s = game.settings
        boards = [game.root.copy(stack=False)]
        for move in game.moves[:-1]:
            boards.append(boards[-1].copy())
            boards[-1].push(move)
        # Stockfish is another process: it scores the positions while the model runs here.
        with ThreadPoolExecutor(1) as pool:
            scoring = pool.submit(
                lambda: [self.stockfish.win_probabilities(b) for b in boards] if stockfish
                else [None] * len(boards))
            rows = []
            for ply, (board, move) in enumerate(zip(boards, game.moves, strict=True)):
                base, tempered = self.policy.move_distributions(
                    board, [1.0, s.temperature], s.distribution_mode)
                best = max(base, key=base.__getitem__)
                rows.append({
                    "ply": ply, "san": game.sans[ply], "by": game.played[ply]["by"],
                    "p1": base[move], "pT": tempered[move], "best_san": board.san(best),
                    "best_uci": best.uci(), "best_p1": base[best], "win_played": None,
                    "win_best": None, "loss": None,
                })
            all_wins = scoring.result()
        for row, move, wins in zip(rows, game.moves, all_wins, strict=True):
            if wins:
                best = str(row["best_uci"])
                row["win_played"], row["win_best"] = wins[move.uci()], wins[best]
                row["loss"] = wins[best] - wins[move.uci()]
        return rows

    # -- state and PGN -----------------------------------------------------------------------

    def state(self, game: Game) -> dict[str, object]:
        """Everything the page draws: position, legal moves, the line and the settings."""
        board = game.board()
        result, why = outcome_text(board)
        line = [{"uci": m.uci(), "san": san} for m, san in zip(game.moves, game.sans, strict=True)]
        last = game.moves[game.cursor - 1] if game.cursor else None
        return {
            "id": game.id, "fen": board.fen(), "start_fen": game.root.fen(),
            "turn": "white" if board.turn == chess.WHITE else "black",
            "first_ply": 2 * (game.root.fullmove_number - 1) + (game.root.turn == chess.BLACK),
            "legal": [m.uci() for m in board.legal_moves],
            "check": board.is_check(), "last_move": last.uci() if last else None,
            "ply": game.cursor, "line": line, "played": game.played,
            "result": result, "termination": why,
            "to_move": "" if result != "*" else game.player_to_move(),
            "settings": dict(game.settings.__dict__), "model": self.model_name,
            "stockfish": self.stockfish.available,
        }

    def pgn(self, game: Game) -> str:
        """The line as PGN, with the model and its sampling settings in the headers and each
        model move's probability in a comment."""
        s = game.settings
        pgn = chess.pgn.Game()
        pgn.headers.update(game.headers)
        names = {"human": "Human", "model": f"transcend {self.model_name}",
                 "stockfish": f"Stockfish skill {s.level} ({OPPONENT_NODES} nodes)"}
        if not game.headers:
            pgn.headers["Event"] = "transcend play"
            pgn.headers["Site"] = "localhost"
            pgn.headers["Date"] = datetime.date.today().strftime("%Y.%m.%d")
            pgn.headers["White"], pgn.headers["Black"] = names[s.white], names[s.black]
        if game.root.fen() != chess.STARTING_FEN:
            pgn.setup(game.root)
        pgn.headers["Model"] = self.model_name
        pgn.headers["Temperature"] = f"{s.temperature:g}"
        pgn.headers["SamplingMode"] = s.mode
        pgn.headers["Seed"] = str(s.seed)
        node: chess.pgn.GameNode = pgn
        for move, info in zip(game.moves, game.played, strict=True):
            node = node.add_variation(move)
            if info["by"] == "model":
                node.comment = (f"p={info['p']:.4f} T={info['temperature']:g} {info['mode']}"
                                + "".join(f" {rule}" for rule in info.get("convert", [])))
        board = game.board(len(game.moves))
        result = outcome_text(board)[0]
        if result == "*" and game.loaded_moves == game.moves:
            result = game.headers.get("Result", "*")
        pgn.headers["Result"] = result
        return str(pgn) + "\n"
