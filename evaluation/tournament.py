"""Tournaments of UCI engines: gauntlets and round robins with clocks the runner enforces.

Every game runs on python-chess's asyncio engine API; ``concurrency`` games run at once, each
worker with its own engine processes. The runner keeps the clocks itself: an engine that does
not answer within its budget plus ``margin`` seconds loses on time and is killed (its whole
process group) and restarted for the next game. An illegal move, no move, or a crash forfeits the
game. Finished games are appended to the PGN as they end, so a tournament that is interrupted
continues where it stopped when run again with the same arguments.

Pairings are deterministic: game ``k`` of a pairing uses opening ``k // 2`` (each opening once with
each colour), and the first player of the pairing has White in even games.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
import chess.engine
import click

from transcend.engine.files import write_atomic
from transcend.evaluation.card import Card, find_card, reading
from transcend.evaluation.endings import (
    Ended,
    PlayerEndings,
    classify,
    comment,
    endings_table,
    game_result,
    material_balance,
    tally,
)
from transcend.evaluation.games_pgn import (
    FORFEITS,
    GameResult,
    Scheduled,
    TimeControl,
    game_pgn,
    read_results,
)
from transcend.evaluation.openings import Opening, bundled_openings, load_openings
from transcend.evaluation.players import PlayerSpec, parse_spec
from transcend.evaluation.ratings import (
    Outcome,
    bradley_terry,
    format_table,
    parse_anchor,
    spec_anchors,
)

ILLEGAL_INFO = re.compile(r"illegal attempts\s+(\d+)(\s+fallback)?")
# A transcend engine's conversion rules: those in force (said on a game's first move), and
# those that changed a move (see engine/convert.py).
CONVERT_RULES = re.compile(r"\bconvert (off[^;]*|ahead [^;]*)")
CONVERT_ACTED = re.compile(r"\bconvert acted ([\w -]+)")


@dataclass
class Settings:
    """How games are played; the same for every game of a tournament."""

    tc: TimeControl | None = None
    max_moves: int | None = None
    margin: float = 1.0  # seconds an engine may overrun its budget before it loses on time
    move_timeout: float = 60.0  # for moves with no time budget at all (nodes or depth limits)
    seed: int = 0
    event: str = "transcend tournament"
    startup_timeout: float = 30.0  # for the UCI handshake of a starting engine
    # The paper's rule: an engine whose samples were all illegal (it reports ``fallback``) loses.
    paper_forfeit: bool = False


@dataclass
class TournamentResult:
    players: list[PlayerSpec]
    games: list[GameResult]
    pgn: Path | None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.players]

    def standings(self) -> list[tuple[str, int, float, int, int, int, int]]:
        """(name, games, points, wins, draws, losses, forfeits), best first."""
        rows = []
        for name in self.names:
            mine = [g for g in self.games if name in (g.white, g.black)]
            scores = [g.score(name) for g in mine]
            forfeits = sum(g.forfeited_by() == name for g in mine)
            rows.append((name, len(mine), sum(scores), scores.count(1.0), scores.count(0.5),
                         scores.count(0.0), forfeits))
        return sorted(rows, key=lambda r: (-(r[2] / r[1]) if r[1] else 0.0, r[0]))

    def matrix(self) -> dict[tuple[str, str], tuple[float, int]]:
        """(row, column) -> (row's points against column, games)."""
        cells: dict[tuple[str, str], tuple[float, int]] = {}
        for g in self.games:
            for me, other in ((g.white, g.black), (g.black, g.white)):
                points, games = cells.get((me, other), (0.0, 0))
                cells[me, other] = (points + g.score(me), games + 1)
        return cells

    def endings(self) -> list[PlayerEndings]:
        """Every player's endings and draws while ahead (see ``endings.tally``)."""
        return tally((Ended(g.white, g.black, g.result, g.ending, g.material)
                      for g in self.games), self.names)

    def outcomes(self) -> list[Outcome]:
        specs = {p.name: p.text for p in self.players}
        return [Outcome(g.white, g.black, g.score(g.white), specs.get(g.white, ""),
                        specs.get(g.black, "")) for g in self.games]


def unique_names(specs: list[PlayerSpec]) -> None:
    """Give players that share a name a numbered suffix, so results never mix."""
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
        if seen[spec.name] > 1:
            spec.name = f"{spec.name}#{seen[spec.name]}"


def schedule(n_engines: int, n_players: int, games: int, round_robin: bool,
             n_openings: int) -> list[Scheduled]:
    """All games in play order; players 0..n_engines-1 are the engines, the rest opponents."""
    if round_robin:
        pairs = [(a, b) for a in range(n_players) for b in range(a + 1, n_players)]
    else:
        pairs = [(e, o) for e in range(n_engines) for o in range(n_engines, n_players)]
    out: list[Scheduled] = []
    for first, second in pairs:
        for k in range(games):
            white, black = (first, second) if k % 2 == 0 else (second, first)
            opening = (k // 2) % n_openings if n_openings else None
            out.append(Scheduled(len(out), white, black, opening))
    return out


def _options_for(protocol: chess.engine.UciProtocol, spec: PlayerSpec
                 ) -> dict[str, chess.engine.ConfigValue]:
    options: dict[str, chess.engine.ConfigValue] = {}
    for name, value in spec.options.items():
        if name not in protocol.options:
            raise chess.engine.EngineError(f"{spec.name} has no UCI option {name!r}")
        if protocol.options[name].type == "check":
            options[name] = str(value).lower() in ("true", "1", "yes", "on")
        else:
            options[name] = value
    return options


class EngineSlot:
    """One player's engine process in one worker; started on demand, killed after a failure."""

    def __init__(self, spec: PlayerSpec, startup_timeout: float = 30.0) -> None:
        self.spec = spec
        self.startup_timeout = startup_timeout
        self.transport: asyncio.SubprocessTransport | None = None
        self.protocol: chess.engine.UciProtocol | None = None

    async def start(self) -> chess.engine.UciProtocol:
        if self.protocol is not None and self.protocol.returncode.done():
            await self.kill()
        if self.protocol is None:
            # Its own process group, so a hung engine's children die with it and Ctrl-C in the
            # terminal reaches only the runner, which then closes every engine itself. The
            # process is recorded before the handshake, so it is killed even if that never ends.
            self.transport, self.protocol = await chess.engine.UciProtocol.popen(
                self.spec.command, setpgrp=True, stderr=asyncio.subprocess.DEVNULL)
            await asyncio.wait_for(self.protocol.initialize(), self.startup_timeout)
            await asyncio.wait_for(self.protocol.configure(_options_for(self.protocol, self.spec)),
                                   self.startup_timeout)
            # isready: an engine that loads a model answers once it is loaded, so loading time
            # counts against the startup timeout, not against the first move's clock.
            await asyncio.wait_for(self.protocol.ping(), self.startup_timeout)
        return self.protocol

    async def kill(self) -> None:
        transport, protocol = self.transport, self.protocol
        self.transport = self.protocol = None
        if transport is None or protocol is None:
            return
        if not protocol.returncode.done():  # once reaped, its pid may belong to another
            with contextlib.suppress(ProcessLookupError, PermissionError):
                _kill_tree(transport)
        # Wait for the exit to be reaped, so no process outlives the event loop.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(protocol.returncode), 5.0)
        transport.close()

    async def close(self) -> None:
        if self.protocol is not None and not self.protocol.returncode.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.protocol.quit(), 2.0)
        await self.kill()


def _kill_tree(transport: asyncio.SubprocessTransport) -> None:
    """Kill an engine's process group (the engine and any process it started); on Windows,
    which has no process groups to signal, the engine's process alone."""
    killpg = getattr(os, "killpg", None)
    if killpg is None:
        transport.kill()
    else:
        killpg(transport.get_pid(), signal.SIGKILL)


@dataclass
class _Move:
    move: chess.Move | None = None
    failure: str | None = None  # a termination from FORFEITS
    reason: str = ""
    illegal: int = 0
    fallback: bool = False
    convert: str = ""  # the conversion rules the engine says are in force
    acted: tuple[str, ...] = ()  # the rules that changed this move


async def _engine_move(slot: EngineSlot, board: chess.Board, limit: chess.engine.Limit,
                       budget: float, game: object, paper_forfeit: bool) -> _Move:
    try:
        protocol = await slot.start()
    except (asyncio.TimeoutError, chess.engine.EngineError, OSError) as exc:
        await slot.kill()
        return _Move(failure="crash", reason=f"did not start: {str(exc) or 'timeout'}")
    try:
        played = await asyncio.wait_for(
            protocol.play(board, limit, game=game, info=chess.engine.INFO_BASIC), budget)
    except asyncio.TimeoutError:
        await slot.kill()
        return _Move(failure="time forfeit", reason=f"no move within {budget:.2f} s")
    except chess.engine.EngineTerminatedError:
        await slot.kill()
        return _Move(failure="crash", reason="the engine process exited")
    except chess.engine.EngineError as exc:
        await slot.kill()
        text = str(exc)
        if "uci" in text:  # python-chess rejects an illegal or unparsable bestmove this way
            return _Move(failure="illegal move", reason=text.split(" in ")[0])
        return _Move(failure="crash", reason=text)
    said = str(played.info.get("string", ""))
    found = ILLEGAL_INFO.search(said)
    illegal = int(found.group(1)) if found else 0
    fallback = bool(found and found.group(2))
    if played.move is None or played.move not in board.legal_moves:
        await slot.kill()
        return _Move(failure="illegal move", reason="no move", illegal=illegal)
    if fallback and paper_forfeit:
        return _Move(failure="illegal move", reason=f"{illegal} illegal samples (paper rule)",
                     illegal=illegal, fallback=True)
    rules = CONVERT_RULES.search(said)
    acted = CONVERT_ACTED.search(said)
    return _Move(move=played.move, illegal=illegal, fallback=fallback,
                 convert=rules.group(1).strip() if rules else "",
                 acted=tuple(acted.group(1).split()) if acted else ())


async def play_game(game: Scheduled, players: list[PlayerSpec], slots: dict[int, EngineSlot],
                    openings: list[Opening], settings: Settings) -> tuple[GameResult, str]:
    """Play one scheduled game; returns its result and its PGN text."""
    start = openings[game.opening].board.copy() if game.opening is not None else chess.Board()
    board = start.copy()
    book_plies = len(board.move_stack)
    side_index = {chess.WHITE: game.white, chess.BLACK: game.black}
    rng = random.Random(f"{settings.seed}:{game.index}")
    clocks = {c: settings.tc.base if settings.tc else 0.0 for c in (chess.WHITE, chess.BLACK)}
    illegal: dict[bool, int] = {}
    moves: dict[bool, int] = {}
    fallbacks: dict[bool, int] = {}
    convert: dict[bool, str] = {}
    acted: dict[bool, dict[str, int]] = {}
    key = object()  # a new identity per game: python-chess then sends ucinewgame
    result = termination = reason = ""
    while True:
        if (ended := game_result(board)) is not None:
            result, termination = ended[0], "normal"
            break
        if settings.max_moves and len(board.move_stack) >= 2 * settings.max_moves:
            result, termination = "1/2-1/2", "adjudication"
            reason = f"still running after {settings.max_moves} moves"
            break
        colour = board.turn
        spec = players[side_index[colour]]
        if (noise := spec.noise_move(board, rng)) is not None:
            board.push(noise)
            continue
        slot = slots[side_index[colour]]
        if spec.has_limit() or settings.tc is None:
            limit = spec.limit()
            budget = (limit.time if limit.time is not None else settings.move_timeout)
            budget += settings.margin
        else:
            tc = settings.tc
            limit = chess.engine.Limit(white_clock=clocks[chess.WHITE],
                                       black_clock=clocks[chess.BLACK],
                                       white_inc=tc.increment, black_inc=tc.increment)
            budget = clocks[colour] + settings.margin
        began = time.perf_counter()
        answer = await _engine_move(slot, board, limit, budget, key, settings.paper_forfeit)
        clocks[colour] = max(0.0, clocks[colour] - (time.perf_counter() - began))
        if settings.tc:
            clocks[colour] += settings.tc.increment
        if answer.move is not None or answer.fallback:
            illegal[colour] = illegal.get(colour, 0) + answer.illegal
            moves[colour] = moves.get(colour, 0) + 1
            fallbacks[colour] = fallbacks.get(colour, 0) + answer.fallback
        if answer.convert:
            convert[colour] = answer.convert
        for rule in answer.acted:
            acted.setdefault(colour, {})[rule] = acted.get(colour, {}).get(rule, 0) + 1
        if answer.failure:
            result = "0-1" if colour == chess.WHITE else "1-0"
            termination, reason = answer.failure, answer.reason
            break
        assert answer.move is not None
        board.push(answer.move)
    record = GameResult(game.index, players[game.white].name, players[game.black].name, result,
                        termination, len(board.move_stack) - book_plies, illegal, moves,
                        fallbacks, classify(board, termination), material_balance(board),
                        convert, acted)
    text = comment(record.ending, result, termination, reason)
    return record, game_pgn(record, board, start, game, players, text, book_plies,
                            event=settings.event, tc=settings.tc, max_moves=settings.max_moves)


class Progress:
    """A live standings table on a terminal; one line per finished game otherwise."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.drawn = 0

    def update(self, done: int, game: GameResult, result: TournamentResult) -> None:
        if not self.enabled:
            return
        line = (f"game {done}/{self.total}: {game.white} - {game.black} {game.result} "
                f"({game.ending}, {game.plies} plies)")
        if not self.tty:
            print(line, file=sys.stderr, flush=True)
            return
        text = line + "\n" + standings_table(result)
        if self.drawn:
            sys.stderr.write(f"\x1b[{self.drawn}F\x1b[J")  # back to the table's first line
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        self.drawn = text.count("\n") + 1


def standings_table(result: TournamentResult) -> str:
    width = max([len(n) for n in result.names] + [6])
    lines = [f"{'player':<{width}}  {'games':>5}  {'points':>6}  {'score':>6}  "
             f"{'W-D-L':>11}  {'forfeits':>8}"]
    for name, games, points, wins, draws, losses, forfeits in result.standings():
        score = f"{100 * points / games:5.1f}%" if games else "     -"
        lines.append(f"{name:<{width}}  {games:>5}  {points:>6g}  {score:>6}  "
                     f"{f'{wins}-{draws}-{losses}':>11}  {forfeits:>8}")
    return "\n".join(lines)


def matrix_table(result: TournamentResult) -> str:
    names = result.names
    cells = result.matrix()
    width = max([len(n) for n in names] + [6])
    cols = [n for n in names if any((r, n) in cells for r in names)]
    colw = max([len(c) for c in cols] + [7])
    lines = [" " * width + "  " + "  ".join(f"{c:>{colw}}" for c in cols)]
    for row in names:
        if not any((row, c) in cells for c in cols):
            continue
        text = []
        for col in cols:
            points, games = cells.get((row, col), (0.0, 0))
            text.append(f"{f'{points:g}/{games}' if games else '-':>{colw}}")
        lines.append(f"{row:<{width}}  " + "  ".join(text))
    return "\n".join(lines)


class _EngineErrors(logging.Handler):
    """Collects the ``info string error ...`` lines engines send while starting: an engine
    answers a bad option value that way (UCI has no other), and python-chess only logs it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if found := re.search(r"info string error (.*?)['\"]?$", record.getMessage()):
            self.errors.append(found.group(1))


async def check_engines(players: list[PlayerSpec], startup_timeout: float) -> None:
    """Start every engine once before the first game, so a wrong command or option value is
    one clear error."""
    for spec in players:
        if spec.kind == "random" or spec.eps >= 1.0:
            continue
        slot = EngineSlot(spec, startup_timeout)
        errors = _EngineErrors()
        logger = logging.getLogger("chess.engine")
        logger.addHandler(errors)
        try:
            await slot.start()
            if errors.errors:
                raise ValueError(f"{spec.name} refused its options: {errors.errors[0]}")
        except asyncio.TimeoutError:
            raise ValueError(f"{spec.name} ({' '.join(spec.command)}) did not complete the UCI "
                             f"handshake within {startup_timeout:g} s") from None
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError, OSError) as exc:
            raise ValueError(f"{spec.name} ({' '.join(spec.command)}) failed to start: "
                             f"{exc}") from None
        finally:
            logger.removeHandler(errors)
            await slot.close()


async def _run(players: list[PlayerSpec], todo: list[Scheduled], openings: list[Opening],
               settings: Settings, concurrency: int, result: TournamentResult,
               on_game: Callable[[GameResult, str], None]) -> None:
    await check_engines(players, settings.startup_timeout)
    queue: asyncio.Queue[Scheduled] = asyncio.Queue()
    for game in todo:
        queue.put_nowait(game)

    async def worker() -> None:
        slots: dict[int, EngineSlot] = {}
        try:
            while not queue.empty():
                game = queue.get_nowait()
                for index in [i for i in slots if i not in (game.white, game.black)]:
                    await slots.pop(index).close()  # keep only this game's engines running
                for index in (game.white, game.black):
                    slots.setdefault(index, EngineSlot(players[index], settings.startup_timeout))
                record, text = await play_game(game, players, slots, openings, settings)
                result.games.append(record)
                on_game(record, text)
        finally:
            for slot in slots.values():
                await slot.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(todo))))))


def run_tournament(engines: Sequence[str | PlayerSpec], opponents: Sequence[str | PlayerSpec],
                   games: int, *, round_robin: bool = False, openings: Path | None = None,
                   pgn: Path | None = None, concurrency: int = 1, settings: Settings | None = None,
                   progress: bool = False) -> TournamentResult:
    """Play a gauntlet (every engine against every opponent) or a round robin of all players.

    ``games`` is the number of games of each pairing. With ``pgn``, games already in that file
    (same round, same players) are not played again, and new games are appended as they end.
    """
    settings = settings or Settings()
    players = [s if isinstance(s, PlayerSpec) else parse_spec(s) for s in (*engines, *opponents)]
    if games < 1:
        raise ValueError("--games must be at least 1")
    if len(players) < 2 or (not round_robin and (not engines or not opponents)):
        raise ValueError("a tournament needs at least two players: give --engine and "
                         "--opponent (or --round-robin with two or more players)")
    unique_names(players)
    book = load_openings(openings) if openings else []
    plan = schedule(len(engines), len(players), games, round_robin, len(book))
    result = TournamentResult(players, [], pgn)
    done: set[int] = set()
    if pgn is not None and pgn.exists():
        kept = []
        for record, text in read_results(pgn):
            if record.index >= len(plan):
                raise ValueError(f"{pgn} holds game {record.index + 1}, beyond this tournament's "
                                 f"{len(plan)} games: use another --pgn")
            want = plan[record.index]
            if (record.white, record.black) != (players[want.white].name,
                                                players[want.black].name):
                raise ValueError(f"{pgn} holds another tournament (game {record.index + 1} is "
                                 f"{record.white} - {record.black}): use another --pgn")
            if record.index not in done:
                done.add(record.index)
                result.games.append(record)
                kept.append(text)
        # Rewritten without any half-written last game before new games are appended.
        write_atomic(pgn, "".join(kept))
    todo = [g for g in plan if g.index not in done]
    meter = Progress(len(plan), progress)
    if pgn is not None:
        pgn.parent.mkdir(parents=True, exist_ok=True)
    handle = open(pgn, "a", encoding="utf-8") if pgn is not None else None  # noqa: SIM115

    def on_game(record: GameResult, text: str) -> None:
        if handle is not None:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        meter.update(len(result.games), record, result)

    try:
        if todo:
            asyncio.run(_run(players, todo, book, settings, concurrency, result, on_game))
    finally:
        if handle is not None:
            handle.close()
    result.games.sort(key=lambda g: g.index)
    return result


def result_json(result: TournamentResult) -> dict[str, Any]:
    """The tournament as data: standings, every player's endings, and every game."""
    sides = (("white", True), ("black", False))
    return {
        "standings": [dict(zip(("name", "games", "points", "wins", "draws", "losses",
                                "forfeits"), row, strict=True)) for row in result.standings()],
        "endings": [row.as_dict() for row in result.endings()],
        "games": [{"round": g.index + 1, "white": g.white, "black": g.black,
                   "result": g.result, "termination": g.termination, "ending": g.ending,
                   "material": g.material / 100, "plies": g.plies,
                   "convert": {c: g.convert[s] for c, s in sides if s in g.convert},
                   "converted": {c: g.acted.get(s, {}) for c, s in sides if s in g.convert}}
                  for g in result.games],
    }


def conversion_lines(result: TournamentResult) -> list[str]:
    """Per engine that converts won positions: the rules it played with, and how often each
    changed a move."""
    lines = []
    for name in result.names:
        said: set[str] = set()
        acted: dict[str, int] = {}
        for g in result.games:
            for side, player in ((True, g.white), (False, g.black)):
                if player == name and side in g.convert:
                    said.add(g.convert[side])
                    for rule, n in g.acted.get(side, {}).items():
                        acted[rule] = acted.get(rule, 0) + n
        if said:
            times = ", ".join(f"{rule} {n}" for rule, n in sorted(acted.items())) or "none"
            lines.append(f"{name}: {' | '.join(sorted(said))}; moves changed: {times}")
    return ["Conversion rules (engine/convert.py)", *lines] if lines else []


def summary(result: TournamentResult, anchors: Mapping[str, float] | None = None,
            card: Card | None = None) -> str:
    """Standings, the results matrix, forfeits and a rating list, for people.

    The list is anchored at ``anchors`` (default: the paper's Stockfish levels when they
    played); with ``card`` it ends with a reading of the list against that model card.
    """
    parts = [standings_table(result), "", matrix_table(result)]
    forfeits: dict[str, int] = {}
    for g in result.games:
        if g.termination in FORFEITS:
            forfeits[g.termination] = forfeits.get(g.termination, 0) + 1
    parts += ["", "forfeits: " + (", ".join(f"{k} {v}" for k, v in forfeits.items()) or "none")]
    parts += ["", endings_table(result.endings())]
    if rules := conversion_lines(result):
        parts += ["", *rules]
    outcomes = result.outcomes()
    if outcomes:
        anchors = dict(anchors or spec_anchors(outcomes))
        scale = ", ".join(f"{k}={v:g}" for k, v in anchors.items())
        try:
            ratings = bradley_terry(outcomes, anchors)
        except ValueError as exc:
            return "\n".join([*parts, "", f"no rating list: {exc}"])
        title = "Maximum-likelihood Elo" + (f" (anchored: {scale})" if anchors else "")
        parts += ["", format_table(ratings, title)]
        if card is not None:
            parts += ["", *reading(ratings, result.players, anchors, card)]
    return "\n".join(parts)


@click.command("tournament")
@click.option("--engine", "engines", multiple=True, metavar="CMD",
              help="An engine: a UCI command line or a player spec (repeatable).")
@click.option("--opponent", "opponents", multiple=True, metavar="SPEC",
              help="An opponent: sf:skill=K,time=S, sf:skill=K,nodes=N, random, uci:..., or a "
                   "command line (repeatable).")
@click.option("--games", type=int, default=2, show_default=True, help="Games per pairing.")
@click.option("--round-robin", is_flag=True, help="Every player against every other.")
@click.option("--openings", type=click.Path(dir_okay=False, path_type=Path),
              help="Opening book (.pgn or .epd); 'default' for the bundled balanced suite.")
@click.option("--pgn", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every game here; an existing file is resumed.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-moves", type=click.IntRange(min=1), default=None,
              help="Score a game still running after this many moves as a draw (paper: 90).")
@click.option("--tc", default=None, metavar="BASE+INC",
              help="Game clock in seconds for players without their own time/nodes/depth.")
@click.option("--margin", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Seconds an engine may overrun its time before it loses on time.")
@click.option("--move-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Longest wait for a move searched by nodes or depth.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of random movers and noise.")
@click.option("--event", default="transcend tournament", show_default=True)
@click.option("--paper-forfeit", is_flag=True,
              help="An engine that reports all its samples illegal ('info string illegal "
                   "attempts N fallback') loses the game, as in the paper.")
@click.option("--anchor", "anchor_texts", multiple=True, metavar="NAME=ELO",
              help="Fix a player's rating in the list (repeatable). Default: the paper's "
                   "Stockfish anchors when sf:skill=1/3/5 players with a time limit played.")
@click.option("--card", default=None, metavar="MODEL|FILE",
              help="End with a reading of the list against a model card's figures: a "
                   "<model>.card.json, or a model (file or bundled name) whose card is beside "
                   "it; a model without one gets no reading.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write standings, endings and every game's result here as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def tournament_command(engines: tuple[str, ...], opponents: tuple[str, ...], games: int,
                       round_robin: bool, openings: Path | None, pgn: Path | None,
                       json_out: Path | None,
                       concurrency: int, max_moves: int | None, tc: str | None, margin: float,
                       move_timeout: float, seed: int, event: str, paper_forfeit: bool,
                       anchor_texts: tuple[str, ...], card: str | None, quiet: bool) -> None:
    """Play a gauntlet (or round robin) of UCI engines and print standings and ratings."""
    # Anchors and the card are checked before any game: a typo should not cost the tournament.
    anchors = dict(parse_anchor(text) for text in anchor_texts)
    figures = find_card(card) if card else None
    specs = [parse_spec(s) for s in (*engines, *opponents)]
    unique_names(specs)
    for name in anchors:
        if name not in [s.name for s in specs]:
            raise ValueError(f"--anchor {name}: not a player here (players: "
                             f"{', '.join(s.name for s in specs)})")
    if openings is not None and str(openings) == "default":
        openings = bundled_openings()
    elif openings is not None and not openings.exists():
        raise click.BadParameter(f"{openings} does not exist", param_hint="--openings")
    settings = Settings(TimeControl.parse(tc) if tc else None, max_moves, margin, move_timeout,
                        seed, event, paper_forfeit=paper_forfeit)
    result = run_tournament(specs[:len(engines)], specs[len(engines):], games,
                            round_robin=round_robin, openings=openings, pgn=pgn,
                            concurrency=concurrency, settings=settings, progress=not quiet)
    if pgn is not None:
        click.echo(f"PGN: {pgn}")
    if json_out is not None:
        write_atomic(json_out, (json.dumps(result_json(result), indent=1) + "\n").encode())
        click.echo(f"JSON: {json_out}")
    if pgn is not None or json_out is not None:
        click.echo()
    click.echo(summary(result, anchors, figures))  # last: the list and its reading end the output

