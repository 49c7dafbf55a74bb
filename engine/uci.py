"""`transcend-uci`: the model as a UCI engine for chess GUIs and tournament runners.

Stdin is read on its own thread, the model loads in the background (``uci`` is answered at
once, ``isready`` waits for the model), and each ``go`` runs on a worker thread that prints
exactly one ``bestmove``. A move is one call of the policy (no search), so every ``go`` answers
within milliseconds; ``go infinite`` and ``go ponder`` hold the move until ``stop``/``ponderhit``.
See ``docs/engine.md`` for options, prompts and GUI set-up.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TextIO

import chess
import numpy as np

from transcend.engine.convert import MAX_MARGIN, Plan, in_force, material_cp, plan
from transcend.engine.model_file import (
    DEVICES,
    ModelError,
    ModelInfo,
    default_model_path,
    device_choices,
    read_model_info,
    resolve_model,
)
from transcend.engine.options import (
    DEFAULT_TEMPERATURE,
    HASH_MAX,
    IGNORED_OPTIONS,
    OPTION_ALIASES,
    SEED_MAX,
    Settings,
    UciError,
    check_text,
    option_key,
    parse_check,
    parse_choice,
    parse_spin,
    parse_temperature,
    with_value,
)
from transcend.engine.policy import MODES, Choice, Policy

AUTHOR = "the transcend authors"
TOP_MOVES_SHOWN = 5
MOVES_TO_GO = 30  # assumed moves left in a sudden-death time control, for the think-time cap
GO_NUMBERS = ("wtime", "btime", "winc", "binc", "movestogo", "movetime", "depth", "nodes", "mate")
GO_FLAGS = ("infinite", "ponder")


def _version() -> str:
    try:
        return metadata.version("transcend")
    except metadata.PackageNotFoundError:
        return "dev"


def temperature_for_elo(calibration: list[tuple[float, float]], elo: float) -> float:
    """The hottest temperature whose calibrated rating is still ``elo``.

    ``calibration`` is sorted by temperature. The curve is first made non-increasing (a colder
    model is taken to be at least as strong as a hotter one: dips are measurement noise), then
    interpolated linearly; a rating above the curve gives the hottest temperature at its top.
    """
    temps = [t for t, _ in calibration]
    envelope = [e for _, e in calibration]
    for i in range(len(envelope) - 2, -1, -1):
        envelope[i] = max(envelope[i], envelope[i + 1])
    if elo >= envelope[0]:
        return max(t for t, e in zip(temps, envelope, strict=True) if e >= envelope[0])
    for i in range(1, len(temps)):
        if envelope[i] <= elo < envelope[i - 1]:
            frac = (envelope[i - 1] - elo) / (envelope[i - 1] - envelope[i])
            return temps[i - 1] + frac * (temps[i] - temps[i - 1])
    return temps[-1]


@dataclass
class GoParams:
    numbers: dict[str, int] = field(default_factory=dict)
    infinite: bool = False
    ponder: bool = False
    searchmoves: list[chess.Move] | None = None


class Output:
    """Lines to the GUI: one writer at a time, each line flushed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.broken = False

    def send(self, *lines: str) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                for line in lines:
                    self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                # The GUI has gone away: a broken pipe here, EINVAL on Windows, or a closed file.
                self.broken = True


class Search(threading.Thread):
    """One ``go``: choose the move, wait as the options and the GUI ask, print one bestmove."""

    def __init__(self, engine: Engine, board: chess.Board, params: GoParams) -> None:
        super().__init__(daemon=True, name="search")
        self.engine = engine
        self.board = board
        self.params = params
        self.start_time = time.monotonic()
        self.cond = threading.Condition()
        self.stopped = False
        self.pondering = params.ponder
        self.answered = threading.Event()  # bestmove is out; the cache may still be extending

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def ponderhit(self) -> None:
        with self.cond:
            if self.pondering:
                self.pondering = False
                self.start_time = time.monotonic()  # the clock starts now
            self.cond.notify_all()

    def run(self) -> None:
        engine = self.engine
        lines: list[str] = []
        best = "0000"
        after: chess.Board | None = None  # the position after the engine's move
        policy = None
        try:
            policy = engine.wait_for_model()
            legal = list(self.board.legal_moves)
            moves = self.params.searchmoves
            if policy is None:
                lines.append(f"info string error no model loaded: {engine.load_error}")
            elif not legal:
                lines.append("info string no legal move")
            else:
                choice, rules = engine.choose(policy, self.board, moves)
                best = self.board.uci(choice.move)
                lines += engine.report(self.board, choice, rules, self.start_time)
                after = self.board.copy()
                after.push(choice.move)
        except Exception as exc:  # noqa: BLE001 - whatever fails, the GUI still gets a bestmove
            lines.append(f"info string error {_first_line(exc)}")
        engine.out.send(*lines)
        delay = engine.think_delay(self.board.turn, self.params)
        with self.cond:
            while not self.stopped:
                if self.pondering or self.params.infinite:
                    self.cond.wait()  # until stop, or ponderhit (which restarts the clock)
                    continue
                remaining = self.start_time + delay - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
        engine.out.send(f"bestmove {best}")
        self.answered.set()
        if policy is not None and after is not None:
            # Off the clock, while the opponent thinks: the engine's own move into the cache,
            # so that the next position runs only the reply. A failure here would fail the
            # next move too, which reports it.
            with contextlib.suppress(Exception):
                policy.extend_cache(after)


class Engine:
    """The UCI state machine; ``handle`` takes one line from the GUI."""

    def __init__(self, settings: Settings, out: Output) -> None:
        self.settings = settings
        self.out = out
        self.board = chess.Board()
        self._position_key: tuple[str, list[str]] = ("startpos", [])
        self.search: Search | None = None
        self.policy: Policy | None = None
        self.load_error = ""
        self._loaded = threading.Event()
        self._loader: threading.Thread | None = None
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._fen_warned = False
        self._clear_cache = False  # "Clear Hash": the next search starts with an empty cache
        self._announced = ""  # the conversion rules last announced
        self.info: ModelInfo | None = None
        self.rng = np.random.default_rng(settings.seed or None)
        self._read_info()
        self.start_loading()

    # -- model ---------------------------------------------------------------------------------

    def model_path(self) -> Path | None:
        if self.settings.model:
            return Path(self.settings.model).expanduser()
        path = default_model_path()
        return path if path.exists() else None

    def _read_info(self) -> None:
        """The model's metadata (fast, no session): options such as UCI_Elo depend on it."""
        path = self.model_path()
        try:
            self.info = read_model_info(path) if path else None
        except (ModelError, OSError):
            self.info = None  # the loader reports the error
        if self.info and self.info.calibration and not self.settings.elo:
            self.settings.elo = round(max(e for _, e in self.info.calibration))

    def start_loading(self) -> None:
        """Load the model (again) in the background; ``isready`` and ``go`` wait for it."""
        # A search started before this setoption (which UCI does not allow, but GUIs race)
        # answers first, with the model it was started with.
        self._finish_search()
        if self._loader is not None:
            self._loader.join()
        self._loaded.clear()
        self.policy, self.load_error = None, ""
        path = self.model_path()
        settings = self.settings
        self._loader = threading.Thread(
            target=self._load, args=(path, settings.device, settings.threads), daemon=True
        )
        self._loader.start()

    def _load(self, path: Path | None, device: str, threads: int) -> None:
        messages: list[str] = []
        try:
            if path is None:
                raise ModelError(
                    f"the bundled {default_model_path()} is missing; "
                    "start with --model PATH or set the ModelFile option"
                )
            policy = Policy(path, device=device, threads=threads)
            policy.move_distribution(chess.Board(), 1.0)  # warm-up: the first move is fast too
            policy.reset()
            info = policy.info
            size = f"{info.n_params:,} parameters, " if info.n_params else ""
            board = f", board input {info.board_input}" if info.board_input else ""
            messages.append(
                f"info string model {path} ({size}{info.n_layer} layers, window "
                f"{info.block_size}{board}) on {info.provider}"
            )
            if info.device_note:
                messages.append(f"info string GPU not used: {info.device_note}")
            self.policy = policy
        except Exception as exc:  # noqa: BLE001 - a broken model is reported, never fatal
            self.load_error = _first_line(exc)
            messages.append(f"info string error no model loaded: {self.load_error}")
        with self._pending_lock:
            self._pending += messages
        self._loaded.set()

    def wait_for_model(self) -> Policy | None:
        """The policy once loading has finished (None if it failed)."""
        self._loaded.wait()
        self.flush_messages()
        return self.policy

    def flush_messages(self) -> None:
        with self._pending_lock:
            lines, self._pending = self._pending, []
        if lines:
            self.out.send(*lines)

    # -- moves ---------------------------------------------------------------------------------

    def effective_temperature(self) -> float:
        s = self.settings
        if s.limit_strength and self.info and self.info.calibration:
            return temperature_for_elo(self.info.calibration, s.elo)
        return s.temperature

    def choose(
        self, policy: Policy, board: chess.Board, moves: list[chess.Move] | None
    ) -> tuple[Choice, Plan]:
        """The move, and the conversion rules' plan that it was sampled under."""
        if self._clear_cache:
            self._clear_cache = False
            policy.reset()  # here, not in setoption: no search is running now
        if not self._fen_warned and not policy.has_history(board):
            self._fen_warned = True
            self.out.send(
                "info string position without game history (position fen): the prompt "
                "starts at the FEN's move number and the model plays weaker than from startpos"
            )
        temperature = self.effective_temperature()
        rules = plan(board, moves, temperature, in_force(self.settings.mode, self.settings.convert))
        # One info line per MultiPV entry needs every move's probability; otherwise `token`
        # mode may sample the move alone, which is cheaper for large models. Unless a rule
        # acted, the policy gets exactly what it would without the rules.
        choice = policy.choose(board, rules.temperature, self.settings.mode, self.rng,
                               rules.moves, distribution=self.settings.multipv > 1)
        return choice, rules

    def convert_rules(self) -> str:
        """The conversion rules in force, as the engine announces them."""
        options = in_force(self.settings.mode, self.settings.convert)
        if options is None:
            return f"convert off ({self.settings.mode} mode)"
        return options.describe(self.effective_temperature())

    def report(self, board: chess.Board, choice: Choice, rules: Plan,
               start: float) -> list[str]:
        """The info lines for a chosen move: top moves, then one line per MultiPV entry, then
        the conversion rules: those in force on a game's first move, those that acted."""
        ms = max(0, round((time.monotonic() - start) * 1000))
        nodes = choice.nodes
        nps = round(nodes * 1000 / max(ms, 1))
        ranked = sorted(choice.probabilities.items(), key=lambda kv: -kv[1])
        top = " ".join(f"{board.san(m)} {p:.4f}" for m, p in ranked[:TOP_MOVES_SHOWN])
        label = "top" if choice.complete else "chosen"
        lines = [f"info string {self.settings.mode} T={rules.temperature:g} {label} {top}"]
        if choice.illegal_attempts:
            tried = " | ".join(repr(a) for a in choice.attempts)
            tail = " fallback token" if choice.fallback else ""
            lines.append(f"info string illegal attempts {choice.illegal_attempts}{tail} {tried}")
        pvs = [choice.move] + [m for m, _ in ranked if m != choice.move]
        for k, move in enumerate(pvs[: self.settings.multipv], start=1):
            after = board.copy(stack=False)
            after.push(move)
            cp = material_cp(after, board.turn)
            lines.append(
                f"info depth 1 seldepth 1 multipv {k} score cp {cp} nodes {nodes} nps {nps} "
                f"time {ms} pv {board.uci(move)}"
            )
        # Last: python-chess, and so the tournament runner, keeps a move's last info string.
        # In paper mode that is the illegal attempts' line, and no rule ever acts.
        said = []
        if (announce := self.convert_rules()) != self._announced:
            self._announced = announce
            said.append(announce)
        if rules.rules:
            said.append("convert acted " + " ".join(rules.rules))
        if said:
            lines.insert(1 if self.settings.mode == "paper" else len(lines),
                         "info string " + "; ".join(said))
        return lines

    def think_delay(self, turn: chess.Color, params: GoParams) -> float:
        """Seconds to hold the move: MinThinkTime, capped so the clock never runs out."""
        s = self.settings
        n = params.numbers
        budget = math.inf
        if "movetime" in n:
            budget = n["movetime"] - s.move_overhead
        mine = n.get("wtime" if turn == chess.WHITE else "btime")
        inc = n.get("winc" if turn == chess.WHITE else "binc", 0)
        if mine is not None:
            togo = max(1, n.get("movestogo", MOVES_TO_GO))
            share = mine / togo + inc * 0.75 - s.move_overhead
            budget = min(budget, share, mine - 2 * s.move_overhead)
        return max(0.0, min(s.min_think, budget)) / 1000

    # -- commands ------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Run one command; False when the engine should exit."""
        words = line.split()
        if not words:
            return True
        command, args = words[0], words[1:]
        try:
            if command == "quit":
                return False
            handler = getattr(self, f"cmd_{command}", None)
            if handler is None:
                raise UciError(f"unknown command: {line.strip()[:80]}")
            handler(args)
        except UciError as exc:
            self.out.send(f"info string error {exc}")
        return True

    def cmd_uci(self, args: list[str]) -> None:
        s = self.settings
        c = s.convert
        model = s.model or (str(default_model_path()) if self.model_path() else "<empty>")
        lines = [
            f"id name transcend {_version()}",
            f"id author {AUTHOR}",
            f"option name ModelFile type string default {model}",
            f"option name Temperature type string default {s.temperature:g}",
            "option name SamplingMode type combo default {} {}".format(
                s.mode, " ".join(f"var {m}" for m in MODES)
            ),
            f"option name Seed type spin default {s.seed} min 0 max {SEED_MAX}",
            f"option name Threads type spin default {s.threads} min 0 max 256",
            "option name Device type combo default {} {}".format(
                s.device, " ".join(f"var {d}" for d in with_value(device_choices(), s.device))
            ),
            f"option name MultiPV type spin default {s.multipv} min 1 max 256",
            f"option name Move Overhead type spin default {s.move_overhead} min 0 max 5000",
            f"option name MinThinkTime type spin default {s.min_think} min 0 max 60000",
            "option name UCI_Chess960 type check default " + check_text(s.chess960),
            f"option name Hash type spin default {s.hash_mb} min 1 max {HASH_MAX}",
            "option name Clear Hash type button",
            f"option name SyzygyPath type string default {s.syzygy_path or '<empty>'}",
            "option name UCI_ShowWDL type check default " + check_text(s.show_wdl),
            "option name Convert type check default " + check_text(c.enabled),
            f"option name ConvertMargin type spin default {c.margin} min 1 max {MAX_MARGIN}",
            "option name ConvertMate type check default " + check_text(c.mate),
            "option name ConvertAvoidDraws type check default " + check_text(c.avoid_draws),
            "option name ConvertProgress type check default " + check_text(c.progress),
            f"option name ConvertRepetitionTemperature type string default "
            f"{c.repeat_temperature:g}",
        ]
        if self.info and self.info.calibration:
            low, high = self._elo_range()
            lines += [
                "option name UCI_LimitStrength type check default " + check_text(s.limit_strength),
                f"option name UCI_Elo type spin default {s.elo} min {low} max {high}",
            ]
        self.out.send(*lines, "uciok")

    def _elo_range(self) -> tuple[int, int]:
        elos = [e for _, e in self.info.calibration] if self.info else [0]
        return math.floor(min(elos)), math.ceil(max(elos))

    def cmd_isready(self, args: list[str]) -> None:
        # What the model loaded onto is said with the first `go`: python-chess and some GUIs
        # take any line before readyok for noise. A failed load is said at once.
        self._loaded.wait()
        if self.load_error:
            self.flush_messages()
        self.out.send("readyok")

    def cmd_debug(self, args: list[str]) -> None:
        pass  # nothing extra to say in debug mode

    def cmd_register(self, args: list[str]) -> None:
        pass

    def cmd_ucinewgame(self, args: list[str]) -> None:
        self._fen_warned = False
        self._announced = ""  # every game's log names the rules it was played with
        self.board = chess.Board(chess960=self.settings.chess960)
        self._position_key = ("startpos", [])

    def cmd_setoption(self, args: list[str]) -> None:
        if not args or args[0] != "name":
            raise UciError("setoption needs: setoption name <id> [value <x>]")
        if "value" in args:
            at = args.index("value")
            name, value = " ".join(args[1:at]), " ".join(args[at + 1 :])
        else:
            name, value = " ".join(args[1:]), ""
        self.set_option(name, value)

    def set_option(self, name: str, value: str) -> None:
        s = self.settings
        key = option_key(name)
        key = OPTION_ALIASES.get(key, key)
        if key == "modelfile":
            # Windows' "Copy as path" wraps the path in quotes; a file name never has them.
            value = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
            try:
                s.model = "" if value in ("", "<empty>") else str(resolve_model(value))
            except ModelError as exc:
                raise UciError(str(exc)) from None
            s.elo = 0  # the new model's calibration gives the default
            self._read_info()
            self.start_loading()
        elif key == "temperature":
            s.temperature = parse_temperature(value)
        elif key == "samplingmode":
            s.mode = parse_choice(name, value, MODES)
        elif key == "seed":
            s.seed = parse_spin(name, value, 0, SEED_MAX)
            self.rng = np.random.default_rng(s.seed or None)
        elif key == "threads":
            threads = parse_spin(name, value, 0, 256)
            if threads != s.threads:
                s.threads = threads
                self.start_loading()
        elif key == "device":
            device = parse_choice(name, value, DEVICES)
            if device != s.device:
                s.device = device
                self.start_loading()
        elif key == "multipv":
            s.multipv = parse_spin(name, value, 1, 256)
        elif key == "moveoverhead":
            s.move_overhead = parse_spin(name, value, 0, 5000)
        elif key == "minthinktime":
            s.min_think = parse_spin(name, value, 0, 60000)
        elif key == "uci_chess960":
            chess960 = parse_check(name, value)
            if chess960 != s.chess960:
                s.chess960 = chess960
                self.board.chess960 = chess960
                self._position_key = ("", [])  # the next `position` builds a fresh board
        elif key == "clearhash":
            self._clear_cache = True
        # Hash, SyzygyPath and UCI_ShowWDL are declared and kept but change nothing (no search,
        # no table, no evaluation): lichess-bot, through python-chess, refuses to start an engine
        # that lacks an option its config sets, and its stock config sets these.
        elif key == "hash":
            s.hash_mb = parse_spin(name, value, 1, HASH_MAX)
        elif key == "syzygypath":
            s.syzygy_path = "" if value == "<empty>" else value
        elif key == "uci_showwdl":
            s.show_wdl = parse_check(name, value)
        elif key == "convert":
            s.convert.enabled = parse_check(name, value)
        elif key == "convertmargin":
            s.convert.margin = parse_spin(name, value, 1, MAX_MARGIN)
        elif key == "convertmate":
            s.convert.mate = parse_check(name, value)
        elif key == "convertavoiddraws":
            s.convert.avoid_draws = parse_check(name, value)
        elif key == "convertprogress":
            s.convert.progress = parse_check(name, value)
        elif key == "convertrepetitiontemperature":
            try:
                s.convert.repeat_temperature = parse_temperature(value)
            except UciError as exc:
                raise UciError(f"option {name}: {exc}") from None
        elif key in ("uci_limitstrength", "uci_elo") and not (self.info and self.info.calibration):
            raise UciError(f"option {name} needs a model with an Elo calibration (made by "
                           "`transcend sweep`); this one has none, set Temperature instead")
        elif key == "uci_elo":
            s.elo = parse_spin(name, value, *self._elo_range())
        elif key == "uci_limitstrength":
            s.limit_strength = parse_check(name, value)
        elif key in IGNORED_OPTIONS:
            self.out.send(f"info string option {name} has no effect on this engine (ignored)")
        else:
            raise UciError(f"unknown option: {name} (see the options listed after `uci`)")

    def cmd_position(self, args: list[str]) -> None:
        if not args:
            raise UciError("position needs startpos or fen")
        if "moves" in args:
            at = args.index("moves")
            head, moves = args[:at], args[at + 1 :]
        else:
            head, moves = args, []
        if head == ["startpos"]:
            root_key = "startpos"
        elif head[0] == "fen" and len(head) > 1:
            root_key = " ".join(head[1:])
        else:
            raise UciError(f"malformed position: {' '.join(args)[:80]}")
        old_key, old_moves = self._position_key
        if root_key == old_key and moves[: len(old_moves)] == old_moves:
            board, done = self.board.copy(), len(old_moves)  # the same game, moves further on
        else:
            chess960 = self.settings.chess960
            try:
                board = (chess.Board(chess960=chess960) if root_key == "startpos"
                         else chess.Board(root_key, chess960=chess960))
            except ValueError as exc:
                raise UciError(f"bad FEN {root_key!r}: {exc}") from None
            if root_key != "startpos" and not board.is_valid():
                raise UciError(f"impossible position in FEN {root_key!r}")
            done = 0
        for i, text in enumerate(moves[done:], start=done):
            try:
                move = board.parse_uci(text)
                if not move:
                    raise ValueError("null move")
            except ValueError:
                self.board, self._position_key = board, (root_key, moves[:i])
                raise UciError(
                    f"illegal move {text} in position (moves from there are ignored)"
                ) from None
            board.push(move)
        self.board, self._position_key = board, (root_key, moves)

    def cmd_go(self, args: list[str]) -> None:
        self._finish_search()
        params = self._parse_go(args)
        self.search = Search(self, self.board.copy(), params)
        self.search.start()

    def _parse_go(self, args: list[str]) -> GoParams:
        params = GoParams()
        i = 0
        errors: list[str] = []
        while i < len(args):
            word = args[i]
            if word in GO_NUMBERS and i + 1 < len(args):
                try:
                    params.numbers[word] = int(args[i + 1])
                except ValueError:
                    errors.append(f"{word} {args[i + 1]}")
                i += 2
            elif word in GO_FLAGS:
                setattr(params, word, True)
                i += 1
            elif word == "searchmoves":
                params.searchmoves = []
                i += 1
                while i < len(args) and args[i] not in GO_NUMBERS + GO_FLAGS:
                    try:
                        params.searchmoves.append(self.board.parse_uci(args[i]))
                    except ValueError:
                        errors.append(f"searchmoves {args[i]}")
                    i += 1
            else:
                errors.append(word)
                i += 1
        if errors:
            self.out.send(f"info string error ignored in go: {', '.join(errors)}")
        if params.searchmoves == []:  # none of them legal: search every move, as Stockfish does
            params.searchmoves = None
        return params

    def cmd_stop(self, args: list[str]) -> None:
        self._finish_search()

    def cmd_ponderhit(self, args: list[str]) -> None:
        if self.search is not None:
            self.search.ponderhit()

    def cmd_d(self, args: list[str]) -> None:
        """Stockfish's debugging command: the position and the model's prompt."""
        if self.search is not None and self.search.answered.is_set():
            self.search.join()  # the state after the last move's work, cache included
        self.out.send(f"info string fen {self.board.fen()}")
        if self.policy is not None:
            self.out.send(f"info string prompt {self.policy.prompt_text(self.board)!r}",
                          f"info string cache {self.policy.cached_tokens} tokens")

    def _finish_search(self) -> None:
        """Stop the running search (it prints its bestmove) and wait for it."""
        if self.search is not None:
            self.search.stop()
            self.search.join()
            self.search = None

    def shutdown(self) -> None:
        self._finish_search()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _read_stdin(lines: queue.Queue[str | None]) -> None:
    """The reader thread: GUI lines into the queue; None at end of input."""
    try:
        sys.stdin.reconfigure(errors="replace")  # type: ignore[union-attr]
        for line in sys.stdin:
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage block: GUIs show the engine's stderr to people.
        self.exit(2, f"transcend-uci: error: {message}\n")


def parse_args(argv: list[str] | None) -> Settings:
    parser = _ArgumentParser(
        prog="transcend-uci",
        description="A chess engine whose brain is a transformer trained on weak players' "
        "games. Speaks UCI on stdin/stdout; flags set the initial option values.",
    )
    parser.add_argument("--model", default="", help="the .onnx model, or a bundled model's "
                        "name (default: the bundled `default`)")
    parser.add_argument("--temp", "--temperature", dest="temp", default=str(DEFAULT_TEMPERATURE),
                        help="sampling temperature, 0 = greedy (default %(default)s)")
    parser.add_argument("--mode", choices=MODES, default="token", help="sampling mode")
    parser.add_argument("--seed", type=int, default=0, help="random seed, 0 = random")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = all cores")
    parser.add_argument("--version", action="version", version=f"transcend {_version()}")
    ns = parser.parse_args(argv)
    try:
        temperature = parse_temperature(ns.temp)
    except UciError as exc:
        parser.error(str(exc))
    if not 0 <= ns.seed <= SEED_MAX:
        parser.error(f"--seed must be between 0 and {SEED_MAX}")
    if not 0 <= ns.threads <= 256:
        parser.error("--threads must be between 0 and 256")
    try:
        model = str(resolve_model(ns.model)) if ns.model else ""
    except ModelError as exc:
        parser.error(str(exc))
    return Settings(model=model, temperature=temperature, mode=ns.mode, seed=ns.seed,
                    device=ns.device, threads=ns.threads)


def _next_line(lines: queue.Queue[str | None]) -> str | None:
    """The next GUI line. Waits in short slices: on Windows a blocking wait cannot be
    interrupted, and Ctrl-C in a console must still end the engine."""
    while True:
        try:
            return lines.get(timeout=0.5)
        except queue.Empty:
            continue


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``transcend-uci``."""
    settings = parse_args(argv)
    with contextlib.suppress(AttributeError, ValueError):
        # A path or name the console's code page cannot encode (Windows) becomes '?' instead
        # of an error that would silence the engine.
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    out = Output(sys.stdout)
    engine = Engine(settings, out)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_stdin, args=(lines,), daemon=True,
                     name="stdin").start()
    try:
        while (line := _next_line(lines)) is not None and engine.handle(line):
            pass
    except KeyboardInterrupt:
        pass
    engine.shutdown()
    out.send()
    # Leave at once even if a model is still loading in the background.
    os._exit(0)


if __name__ == "__main__":
    main()
