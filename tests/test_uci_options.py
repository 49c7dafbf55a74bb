"""The option names that bots and GUIs send by default never stop the engine.

lichess-bot configures engines through python-chess, which refuses an option the engine did not
declare, so everything its stock `config.yml.default` sets must be declared. cutechess and
fastchess send only declared options; other GUIs send standard ones regardless.
"""

from __future__ import annotations

import re
from pathlib import Path

import chess
import chess.engine
from test_uci import Raw, bestmove, binary, declared_options

from transcend.engine.options import option_key

# lichess-bot's config.yml.default (lichess-bot-devs/lichess-bot, seen 2026-11-30), `uci_options`.
LICHESS_BOT_STOCK = {"Move Overhead": 100, "Threads": 4, "Hash": 512, "SyzygyPath": "./syzygy/",
                     "UCI_ShowWDL": True}
# Standard options that GUIs (Arena, BanksiaGUI, analysis front ends) may send whether or not
# they are declared, with typical values.
GUI_DEFAULTS = [
    "setoption name Hash value 128",
    "setoption name Threads value 1",
    "setoption name Ponder value false",
    "setoption name OwnBook value false",
    "setoption name MultiPV value 1",
    "setoption name UCI_Chess960 value false",
    "setoption name UCI_AnalyseMode value true",
    "setoption name UCI_Opponent value GM 2800 human Some Body",
    "setoption name UCI_EngineAbout value transcend",
    "setoption name UCI_ShowWDL value true",
    "setoption name UCI_ShowCurrLine value false",
    "setoption name UCI_ShowRefutations value false",
    "setoption name Clear Hash",
    "setoption name SyzygyPath value C:\\tb\\syzygy;D:\\tb",
    "setoption name SyzygyProbeDepth value 1",
    "setoption name Syzygy50MoveRule value true",
    "setoption name SyzygyProbeLimit value 7",
    "setoption name NalimovPath value <empty>",
    "setoption name NalimovCache value 32",
    "setoption name Move Overhead value 100",
    "setoption name MoveOverhead value 100",
    "setoption name move overhead value 50",
    "setoption name Minimum Thinking Time value 0",
]
NODES = re.compile(r" nodes (\d+) ")


def test_declares_stockfish_spellings(raw: Raw) -> None:
    raw.send("uci")
    options = declared_options(raw.until("uciok"))
    assert options["Move Overhead"].startswith("spin default 30 min 0 max 5000")
    assert "MoveOverhead" not in options  # one name only, Stockfish's; the old one still works
    assert options["Hash"] == "spin default 16 min 1 max 33554432"
    assert options["Clear Hash"] == "button"
    assert options["SyzygyPath"] == "string default <empty>"
    assert options["UCI_ShowWDL"] == "check default false"
    assert options["UCI_Chess960"] == "check default false"
    assert "var coreml" not in options["Device"]  # offered on macOS only
    for name in LICHESS_BOT_STOCK:
        assert name in options


def test_gui_defaults_are_accepted(raw: Raw) -> None:
    raw.send(*GUI_DEFAULTS)
    lines = raw.ready()
    assert not [line for line in lines if "error" in line], lines
    ignored = [line for line in lines if line.endswith("has no effect on this engine (ignored)")]
    assert len(ignored) == 12, lines  # Ponder ... NalimovCache: the undeclared ones, each noted
    raw.send("position startpos moves e2e4", "go movetime 100")
    board = chess.Board()
    board.push_san("e4")
    assert chess.Move.from_uci(bestmove(raw.until("bestmove"))) in board.legal_moves


def test_unknown_and_bad_options_are_answered_in_one_line(raw: Raw) -> None:
    bad = [
        ("setoption name Skill Level value 3", "unknown option: Skill Level"),
        ("setoption name UCI_Elo value 1500", "needs a model with an Elo calibration"),
        ("setoption name UCI_LimitStrength value true", "needs a model with an Elo calibration"),
        ("setoption name Hash value 0", "between 1 and 33554432"),
        ("setoption name Hash value lots", "takes an integer"),
        ("setoption name UCI_ShowWDL value maybe", "takes true or false"),
        ("setoption name UCI_Chess960 value 1", "takes true or false"),
    ]
    for command, message in bad:
        raw.send(command)
        line = raw.until("info string error", timeout=10)[-1]
        assert message in line, (command, line)
    assert raw.ready()[-1] == "readyok"


def test_lichess_bot_stock_config_through_python_chess(tiny_onnx: Path) -> None:
    """What lichess-bot does: configure with its stock options, then play with pondering."""
    with chess.engine.SimpleEngine.popen_uci([binary(), "--model", str(tiny_onnx)]) as engine:
        engine.configure(LICHESS_BOT_STOCK)
        board = chess.Board()
        for _ in range(4):
            result = engine.play(board, chess.engine.Limit(white_clock=60, black_clock=60,
                                                           white_inc=1, black_inc=1),
                                 ponder=True, info=chess.engine.INFO_ALL)
            assert result.move in board.legal_moves
            board.push(result.move)
        analysis = engine.analyse(board, chess.engine.Limit(nodes=1), multipv=3)
        assert len(analysis) == 3


def test_chess960_castling_is_king_takes_rook(raw: Raw) -> None:
    fen = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQK2R w KQkq - 0 1"
    raw.send(f"position fen {fen}", "go searchmoves e1g1")
    assert bestmove(raw.until("bestmove")) == "e1g1"
    raw.send("setoption name UCI_Chess960 value true", f"position fen {fen}",
             "go searchmoves e1h1")
    lines = raw.until("bestmove")
    assert bestmove(lines) == "e1h1"
    assert any(line.endswith(" pv e1h1") for line in lines)
    # A Chess960 start (Shredder-FEN castling rights), castling as king takes rook (f1g1).
    start960 = "bqnbrkrn/pppppppp/8/8/8/8/PPPPPPPP/BQNBRKRN w GEge - 0 1"
    raw.send(f"position fen {start960} moves h1g3 h8g6 f1g1", "go")
    lines = raw.until("bestmove")
    assert not [line for line in lines if "error" in line], lines
    board = chess.Board(start960, chess960=True)
    for move in ("h1g3", "h8g6", "f1g1"):
        board.push_uci(move)
    assert board.piece_at(chess.G1) == chess.Piece(chess.KING, chess.WHITE)
    assert chess.Move.from_uci(bestmove(lines)) in board.legal_moves


def test_clear_hash_empties_the_cache(raw: Raw) -> None:
    def nodes() -> int:
        raw.send("go nodes 1")
        lines = raw.until("bestmove")
        return int(NODES.search(next(x for x in lines if " nodes " in x)).group(1))

    raw.send("position startpos moves e2e4 e7e5 g1f3 b8c6 f1b5 a7a6")
    first = nodes()
    again = nodes()  # the prompt is cached: only the legal moves' characters run
    raw.send("setoption name Clear Hash")
    cleared = nodes()
    assert again < first
    assert cleared == first


def test_option_names_match_in_any_case_and_spacing() -> None:
    assert option_key("Move Overhead") == option_key("MoveOverhead") == "moveoverhead"
    assert option_key("clear  hash") == option_key("Clear Hash") == "clearhash"
    assert option_key("UCI_Elo") == "uci_elo"


def test_model_file_in_quotes_as_windows_copies_paths(raw: Raw, tiny_onnx: Path) -> None:
    raw.send(f'setoption name ModelFile value "{tiny_onnx}"')
    assert raw.ready() == ["readyok"]  # no error: the quotes are not part of the name
    raw.send("position startpos", "go nodes 1")
    lines = raw.until("bestmove")
    assert any(line.startswith(f"info string model {tiny_onnx} (") for line in lines), lines


def test_reloading_options_sent_during_a_search_do_not_lose_its_move(raw: Raw) -> None:
    raw.send("position startpos moves e2e4")
    for threads in (1, 2, 1, 2):  # a race: a few rounds make a regression show
        raw.send("go wtime 60000 btime 60000", f"setoption name Threads value {threads}")
        lines = raw.until("bestmove")
        assert not [line for line in lines if "error" in line], lines
        assert bestmove(lines) != "0000"


def _docs_lichess_bot_section() -> dict[str, dict[str, object]]:
    """`engine_options` and `uci_options` of the lichess-bot YAML in docs/engine.md (two-level
    `key: value` maps; no YAML library needed for that much)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "engine.md").read_text()
    block = re.search(r"```yaml\n(\s*engine:\n.*?)```", text, re.DOTALL)
    assert block, "docs/engine.md has no lichess-bot engine: section"
    sections: dict[str, dict[str, object]] = {}
    current = None
    for line in block.group(1).splitlines():
        line = line.split(" #")[0].rstrip()
        key, _, value = line.strip().partition(":")
        if not value.strip():
            current = sections.setdefault(key, {}) if line.startswith("    ") else None
            continue
        if current is not None and line.startswith("      "):
            value = value.strip()
            current[key] = (value.strip('"') if value.startswith('"') else
                            value == "true" if value in ("true", "false") else
                            int(value) if value.isdigit() else value)
    return sections


def test_docs_lichess_bot_section_works_as_pasted(tiny_onnx: Path) -> None:
    sections = _docs_lichess_bot_section()
    options = sections["uci_options"]
    assert set(LICHESS_BOT_STOCK) <= set(options)  # the stock config's options are all kept
    flags = [f"--{k}={v}" for k, v in sections["engine_options"].items()]  # as lichess-bot does
    with chess.engine.SimpleEngine.popen_uci([binary(), "--model", str(tiny_onnx), *flags]) as e:
        e.configure(options)
        board = chess.Board()
        result = e.play(board, chess.engine.Limit(white_clock=60, black_clock=60), ponder=True)
        assert result.move in board.legal_moves
