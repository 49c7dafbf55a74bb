"""The board input: features against python-chess, in training and in the engine alike, export
parity, the engine in every mode, and a plain model called exactly as before."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import chess
import numpy as np
import onnxruntime as ort
import pytest
import torch
from cli_helpers import transcend

from transcend.engine.features import (
    FEATURE_SETS,
    NO_POSITION,
    ROWS,
    WIDTHS,
    position_features,
    text_features,
)
from transcend.engine.model_file import ModelError, cache_feed, read_model_info, resolve_model
from transcend.engine.policy import MODES, Policy
from transcend.engine.transcript import GAME_START, encode, game_transcript, sans_of_moves
from transcend.engine.trie import MoveTrie
from transcend.training.data.board import BoardTargets
from transcend.training.export import export_onnx, metadata_for
from transcend.training.model import CONFIGS, GPT, ModelConfig

# Positions where castling, en passant, promotion and checks happen.
AWKWARD = [
    "r3k2r/pppqppbp/2np1np1/8/8/2NP1NP1/PPPQPPBP/R3K2R w KQkq - 0 9",
    "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3",
    "8/1P4k1/8/8/8/8/6p1/K7 w - - 0 50",
    "r1bqk2r/pppp1ppp/2n2n2/2b1p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4",
]


def reference_features(board: chess.Board, kind: str) -> np.ndarray:
    """The ids written out square by square with python-chess's own API (docs/board.md)."""
    me = board.turn
    ids = []
    classes = []
    for square in chess.SQUARES:
        piece = board.piece_at(square)
        cls = 0 if piece is None else piece.piece_type + (0 if piece.color == me else 6)
        classes.append(cls)
        ids.append(1 + square * 13 + cls)
    rights = [board.has_kingside_castling_rights(me), board.has_queenside_castling_rights(me),
              board.has_kingside_castling_rights(not me),
              board.has_queenside_castling_rights(not me)]
    ids += [833 + 2 * k + int(present) for k, present in enumerate(rights)]
    ep = board.ep_square if board.has_legal_en_passant() else None
    ids.append(841 + (8 if ep is None else chess.square_file(ep)))
    if kind == "board+attacks":
        for square, cls in zip(chess.SQUARES, classes, strict=True):
            mine = min(2, len(board.attackers(me, square)))
            theirs = min(2, len(board.attackers(not me, square)))
            ids.append(850 + cls * 9 + mine * 3 + theirs)
    return np.array(ids)


def random_game(rng: random.Random, board: chess.Board | None = None, plies: int = 60
                ) -> list[chess.Move]:
    board = chess.Board() if board is None else board.copy()
    moves = []
    while not board.is_game_over() and len(moves) < plies:
        legal = list(board.legal_moves)
        # Prefer the awkward moves so that every game has some.
        special = [m for m in legal if m.promotion or board.is_castling(m)
                   or board.is_en_passant(m) or board.gives_check(m)]
        move = rng.choice(special if special and rng.random() < 0.5 else legal)
        moves.append(move)
        board.push(move)
    return moves


def char_boards(sans: list[str]) -> list[chess.Board]:
    """The board each character of a game's transcript reads, by the rule: after every move
    whose text is complete (its terminating space read)."""
    text = game_transcript(sans)
    board = chess.Board()
    out = []
    played = 0
    for i, ch in enumerate(text):
        out.append(board.copy(stack=False))
        if ch == " " and i > 0 and played < len(sans):
            board.push_san(sans[played])
            played += 1
            out[-1] = board.copy(stack=False)
    return out


@pytest.mark.parametrize("kind", FEATURE_SETS)
def test_features_match_python_chess_in_awkward_positions(kind: str) -> None:
    rng = random.Random(4)
    for fen in AWKWARD:
        board = chess.Board(fen)
        for move in [None, *random_game(rng, board, 12)]:
            if move is not None:
                board.push(move)
            got = position_features(board, kind)
            assert got.shape == (WIDTHS[kind],) and got.max() < ROWS[kind] and got.min() > 0
            np.testing.assert_array_equal(got, reference_features(board, kind), board.fen())
    # An en passant square that no pawn can take is no en passant.
    board = chess.Board()
    board.push_san("e4")
    assert board.ep_square is not None
    assert position_features(board, "board")[68] == 841 + 8


@pytest.mark.parametrize("kind", FEATURE_SETS)
def test_every_character_reads_its_position_in_training_windows(kind: str) -> None:
    rng = random.Random(11)
    games = [sans_of_moves(random_game(rng)) for _ in range(6)]
    texts = [game_transcript(sans) for sans in games]
    expected = [reference_features(b, kind) for sans in games for b in char_boards(sans)]
    stream = encode("".join(texts))
    targets = BoardTargets(stream, "all", board_input=kind)
    # Windows from a game start, from inside a game (replayed from its start), across games.
    for start in [0, 5, len(texts[0]) - 3, len(texts[0]) + 40, len(stream) - 90]:
        rows, index = targets.window_features(start, 80)
        for i in range(min(80, len(stream) - start)):
            np.testing.assert_array_equal(rows[index[i]], expected[start + i], f"{start}+{i}")
    # The same through the one function the engine uses for a text from the start.
    for sans, text in zip(games, texts, strict=True):
        rows, index = text_features(text, kind)
        want = [reference_features(b, kind) for b in char_boards(sans)]
        np.testing.assert_array_equal(rows[index], np.stack(want))


def test_a_game_that_does_not_replay_reads_no_position() -> None:
    good = game_transcript(["e4", "e5"])
    stream = encode(good + ";1.e4 Ke7 2.Qh5;" + good)
    targets = BoardTargets(stream, "all", board_input="board")
    features, index = targets.batch_features([0, len(good)], 14)
    assert (features[0][index[0]][: len(good)] != NO_POSITION).all()
    assert (features[0][index[0]][len(good):] == NO_POSITION).all()
    assert (features[1][index[1]] == NO_POSITION).all()


@pytest.fixture(scope="module")
def board_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained `tiny` models reading each feature set, and one with a 96-character window."""
    root = tmp_path_factory.mktemp("board-input")
    out = {}
    for name, config in [(kind, replace(CONFIGS["tiny"], board_input=kind))
                         for kind in FEATURE_SETS] + [
            ("short", ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=96,
                                  board_input="board+attacks"))]:
        torch.manual_seed(2)
        model = GPT(config)
        out[name] = root / f"{name}.onnx"
        # Export checks its own parity with torch on random features, in one pass and step by
        # step through a cache: it raises above 1e-4.
        assert export_onnx(model, out[name], metadata_for(model, {})) < 1e-4
    return out


def test_export_writes_the_inputs_and_metadata(board_models: dict[str, Path]) -> None:
    session = ort.InferenceSession(str(board_models["board"]), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert inputs["board_features"].type == "tensor(int64)"
    assert inputs["board_features"].shape[2] == WIDTHS["board"]
    assert [i.name for i in session.get_inputs()][3:5] == ["board_features", "board_index"]
    info = read_model_info(board_models["board"])
    assert info.board_input == "board"
    assert info.metadata["board_features_version"] == "1"


def uncached_feed(policy: Policy, text: str, trie: MoveTrie) -> dict[str, np.ndarray]:
    """The inputs of one call that runs ``text`` and the move tree ``trie`` from an empty
    cache, built here rather than by the policy: causal over the text, each tree node attending
    to the text and to its own ancestors."""
    n, t = len(text), len(text) + trie.n
    mask = np.zeros((t, t), bool)
    mask[:n, :n] = np.tril(np.ones((n, n), bool))
    mask[n:, :n] = True
    mask[n:, n:] = trie.ancestors
    info = policy.info
    empty = np.zeros((info.n_layer, 2, 1, info.n_head, 0, info.head_dim), np.float32)
    return {"input_ids": np.concatenate([encode(text), trie.chars]).astype(np.int64)[None],
            "position_ids": np.concatenate([np.arange(n), n + trie.depth - 1])[None],
            "attention_mask": mask[None], **cache_feed(empty)}


def reference_rows(policy: Policy, board: chess.Board) -> np.ndarray:
    """The score rows of ``board`` from one uncached call whose board inputs are built here,
    from python-chess: each prompt character reads the board after the moves complete there
    (a shifted window's text starts at a known ply of the game), every move's node the board."""
    kind = policy.board_input
    text = policy.prompt_text(board)
    history = [board.root()]
    for move in board.move_stack:
        history.append(history[-1].copy(stack=False))
        history[-1].push(move)
    root_ply = 2 * (board.root().fullmove_number - 1) + (board.root().turn == chess.BLACK)
    number = int(text.lstrip(GAME_START).split(".", 1)[0])
    first = max(0, 2 * (number - 1) - root_ply)  # a text from a FEN opens at the root
    boards, complete = [], first
    for i, ch in enumerate(text):
        if ch == " " and text[i - 1] != "-":  # "12.-- " stands for no move
            complete += 1
        boards.append(history[complete])
    trie = policy.score(board).trie
    positions = [reference_features(b, kind) for b in boards] + [
        reference_features(board, kind)]
    n = len(text)
    logits, _ = policy.session.run(None, {
        **uncached_feed(policy, text, trie),
        "board_features": np.stack(positions)[None],
        "board_index": np.concatenate([np.arange(n), np.full(trie.n, n)])[None]})
    return np.concatenate([logits[0, n - 1:n], logits[0, n:]])


@pytest.mark.parametrize("kind", FEATURE_SETS)
def test_the_engine_plays_in_every_mode_with_exact_inputs(board_models: dict[str, Path],
                                                          kind: str) -> None:
    policy = Policy(board_models[kind], device="cpu", threads=1)
    rng = np.random.default_rng(3)
    board = chess.Board()
    for ply in range(24):
        mode = MODES[ply % 3]
        if ply % 6 == 0:  # through the cache, as played: the same rows as built from scratch
            np.testing.assert_allclose(policy.score(board).rows, reference_rows(policy, board),
                                       atol=1e-4)
        choice = policy.choose(board, 1.0, mode, rng, distribution=ply % 2 == 0)
        assert choice.move in board.legal_moves
        board.push(choice.move)
        if ply % 5 == 4:
            policy.extend_cache(board)
    # The engine's rule is training's: the logits of a text read as a game from the start.
    scores = policy.score(board)
    text = policy.prompt_text(board)
    np.testing.assert_allclose(scores.rows[0], policy.text_logits(text)[-1], atol=1e-4)
    for m, san in enumerate(scores.trie.sans[:6]):
        np.testing.assert_allclose(scores.rows[scores.trie.end_row[m]],
                                   policy.text_logits(text + san)[-1], atol=1e-4)


def test_window_shifts_and_set_up_positions_read_the_right_boards(
        board_models: dict[str, Path]) -> None:
    policy = Policy(board_models["short"], device="cpu", threads=1)
    rng = random.Random(5)
    np_rng = np.random.default_rng(5)
    starts = set()
    for fen in AWKWARD[:2] + [chess.STARTING_FEN]:
        board = chess.Board(fen)
        for ply in range(50):
            if board.is_game_over():
                break
            starts.add(policy.prompt_text(board)[:3])
            if ply % 7 == 0:
                np.testing.assert_allclose(policy.score(board).rows,
                                           reference_rows(policy, board), atol=1e-4)
            mode = MODES[ply % 3]
            board.push(policy.choose(board, 1.0, mode, np_rng).move if ply % 2
                       else rng.choice(list(board.legal_moves)))
    assert len(starts) > 4  # the window moved


def test_same_text_from_another_position_is_not_read_from_the_cache(
        board_models: dict[str, Path]) -> None:
    """Two set-up positions with the same move number write the same prompt: the cache, keyed
    on the text, must still run the second one with its own board."""
    policy = Policy(board_models["board"], device="cpu", threads=1)
    first = chess.Board("4k3/8/8/8/8/8/4P3/4K3 w - - 0 30")
    second = chess.Board("4k3/8/8/8/8/8/3QP3/4K3 w - - 0 30")
    for board in (first, second):
        board.push_san("Kd1")
    assert policy.prompt_text(first) == policy.prompt_text(second)
    policy.score(first)
    fresh = Policy(board_models["board"], device="cpu", threads=1)
    np.testing.assert_array_equal(policy.score(second).rows, fresh.score(second).rows)


def test_a_plain_model_is_called_exactly_as_before() -> None:
    """The bundled paper model gets no board input and the same logits, bit for bit, as one
    call with the inputs the engine has always fed: the prompt, then every move as a tree."""
    policy = Policy(resolve_model("paper"), device="cpu", threads=1)
    assert policy.board_input is None
    fed: list[set[str]] = []
    run = policy.session.run

    class Recorder:
        def run(self, names, feed):  # type: ignore[no-untyped-def]
            fed.append(set(feed))
            return run(names, feed)

    session, policy.session = policy.session, Recorder()
    board = chess.Board()
    for san in ["e4", "c5", "Nf3"]:
        board.push_san(san)
    rows = policy.score(board).rows
    expected = {i.name for i in session.get_inputs()}
    assert fed == [expected] and not any(name.startswith("board") for name in expected)
    text, trie = policy.prompt_text(board), policy.score(board).trie
    n = len(text)
    logits, _ = session.run(None, uncached_feed(policy, text, trie))
    assert np.array_equal(rows, np.concatenate([logits[0, n - 1:n], logits[0, n:]]))


def _with_board_metadata(source: Path, out: Path, kind: str, version: str) -> Path:
    import onnx

    proto = onnx.load(str(source))
    for entry in proto.metadata_props:
        if entry.key == "board_input":
            entry.value = kind
        if entry.key == "board_features_version":
            entry.value = version
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize(("kind", "version"), [("board+pins", "1"), ("board", "7")])
def test_unknown_board_input_is_one_line_from_the_engine(board_models: dict[str, Path],
                                                         tmp_path: Path, kind: str,
                                                         version: str) -> None:
    path = _with_board_metadata(board_models["board"], tmp_path / "odd.onnx", kind, version)
    with pytest.raises(ModelError, match="board input") as caught:
        Policy(path)
    assert "\n" not in str(caught.value)
    engine = Path(sys.executable).parent / "transcend-uci"
    result = subprocess.run([str(engine), "--model", str(path)], input="uci\nisready\nquit\n",
                            capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr + result.stdout
    assert "board input" in result.stderr + result.stdout


BIN = Path(sys.executable).parent
FAST = ["--config", "tiny", "--block-size", "128", "--batch-size", "8", "--quiet",
        "--eval-batches", "4", "--legal-positions", "20", "--warmup-steps", "10",
        "--threads", "1", "--lr", "3e-3"]


def final_record(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "val_loss" in r][-1]


def test_the_board_input_learns_legal_moves_faster(tiny_data: Path, tmp_path: Path) -> None:
    """Random legal games: the next move is any legal one, so knowing the board is all there is
    to learn. At equal steps on the same windows the model that reads it is well ahead: a lower
    validation loss, and more of its probability on legal moves (exact, through the engine)."""
    rng = random.Random(3)
    boards = []
    while len(boards) < 20:
        board = chess.Board()
        for move in random_game(rng, board, rng.randrange(0, 40)):
            board.push(move)
        if not board.is_game_over():
            boards.append(board)
    results = {}
    for name, extra in (("plain", []), ("board", ["--board-input", "board"])):
        run, model = tmp_path / name, tmp_path / f"{name}.onnx"
        transcend("train", "--data", str(tiny_data), "--out", str(run), *FAST,
                  "--max-steps", "150", "--eval-interval", "150", "--legal-interval", "0",
                  *extra)
        transcend("export", str(run), "--out", str(model))
        policy = Policy(model, device="cpu", threads=1)
        legal = np.mean([np.exp(list(policy.move_log_probs(b).values())).sum() for b in boards])
        results[name] = final_record(run)["val_loss"], legal
    # Measured: 1.63 against 1.41 nats; legal moves 0.16 against 0.22 of the probability.
    assert results["board"][0] < results["plain"][0] - 0.1
    assert results["board"][1] > results["plain"][1] + 0.03


def test_board_input_on_data_that_does_not_replay_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    encode(";1.e5 e4 2.Nb3 Nc3" * 40).tofile(data / "train.bin")
    result = transcend("train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST,
                       "--max-steps", "2", "--board-input", "board+attacks", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: --board-input: no game in {data / 'train.bin'} replays as chess, so there are "
        "no boards to read; train without --board-input"]


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory: pytest.TempPathFactory, stockfish: str) -> dict[str, Path]:
    """Games the project's commands make (`data experts`, `data prepare`), a `board+attacks`
    run on them (straight, and split by a resume), and its export."""
    root = tmp_path_factory.mktemp("expert-board")
    pgn = root / "experts.pgn"
    transcend("data", "experts", "--out", str(pgn), "--games", "40", "--concurrency", "2",
              "--expert", "sf:skill=0,nodes=10,eps=0.5", "--expert", "sf:skill=1,nodes=10,eps=0.5",
              "--max-plies", "40", "--quiet", "--seed", "5")
    data = root / "data"
    transcend("data", "prepare", str(pgn), "--out", str(data), "--val-fraction", "0.1")
    common = ["--data", str(data), *FAST, "--block-size", "64", "--mid-game-share", "0.5",
              "--board-input", "board+attacks", "--eval-interval", "3", "--legal-interval", "6"]
    transcend("train", "--out", str(root / "straight"), *common, "--max-steps", "6")
    transcend("train", "--out", str(root / "split"), *common, "--max-steps", "3")
    transcend("train", "--out", str(root / "split"), "--resume", "--max-steps", "6", "--quiet",
              "--threads", "1")
    model = root / "model.onnx"
    transcend("export", str(root / "straight"), "--out", str(model))
    return {"pgn": pgn, "straight": root / "straight", "split": root / "split", "model": model}


def test_a_board_input_run_resumes_exactly(expert_run: dict[str, Path]) -> None:
    a = torch.load(expert_run["straight"] / "ckpt.pt", weights_only=True)
    b = torch.load(expert_run["split"] / "ckpt.pt", weights_only=True)
    assert a["model_args"]["board_input"] == "board+attacks"
    assert "transformer.bte.weight" in a["model"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    summary = a["summary"]
    assert summary["board_input"] == "board+attacks" and summary["board_games_skipped"] == 0
    assert "legal_rate" in final_record(expert_run["straight"])


def test_everything_that_plays_reads_a_board_input_model(expert_run: dict[str, Path],
                                                         tmp_path: Path) -> None:
    model, pgn = expert_run["model"], expert_run["pgn"]
    assert read_model_info(model).board_input == "board+attacks"
    engine = f"{BIN / 'transcend-uci'} --model {model} --temp 1"
    transcend("tournament", "--engine", engine, "--opponent", "random", "--games", "2",
              "--max-moves", "20", "--pgn", str(tmp_path / "t.pgn"), "--quiet")
    assert (tmp_path / "t.pgn").read_text().count("[Result") == 2
    transcend("sweep", "--model", str(model), "--temps", "0.5,1", "--mode", "paper",
              "--opponent", "random", "--anchor", "random=0", "--games", "1",
              "--max-moves", "15", "--out", str(tmp_path / "sweep"), "--no-calibration",
              "--quiet")
    assert (tmp_path / "sweep" / "ratings.csv").exists()
    transcend("advantage", "--model", str(model), "--pgn", str(pgn), "--positions", "4",
              "--temps", "0,1", "--nodes", "200", "--out", str(tmp_path / "adv"), "--quiet")
    assert (tmp_path / "adv" / "advantage.csv").exists()
    probe = transcend("probe", str(model), "--pgn", str(pgn), "--out", str(tmp_path / "probe"),
                      "--games", "12")
    assert "best layer" in probe.stdout


def test_the_play_page_plays_a_board_input_model(expert_run: dict[str, Path]) -> None:
    from play_helpers import Client

    from transcend.play.server import make_server, serve_in_thread

    server = make_server(expert_run["model"], port=0, nodes=50, threads=1)
    serve_in_thread(server)
    try:
        client = Client(server.url)
        state = client.ok("new", white="human", black="model", temperature=1, seed=3)
        state = client.ok("move", id=state["id"], uci="e2e4")
        state = client.ok("reply", id=state["id"])
        assert state["ply"] == 2 and 0 < state["reply"]["p"] <= 1
        analysis = client.ok("analysis", id=state["id"], top=500, stockfish=False)
        assert len(analysis["candidates"]) == analysis["legal"] > 0
    finally:
        server.shutdown()
        server.server_close()
        server.games.stockfish.close()


def test_a_board_input_model_trains_under_ddp(tiny_data: Path, tmp_path: Path) -> None:
    import os

    run = tmp_path / "ddp"
    result = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
         str(BIN / "transcend"), "train", "--data", str(tiny_data), "--out", str(run), *FAST,
         "--block-size", "64", "--batch-size", "4", "--max-steps", "4", "--eval-interval", "2",
         "--legal-interval", "0", "--board-input", "board+attacks"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["summary"]["world_size"] == 2 and ckpt["summary"]["board_input"] == "board+attacks"
    assert ckpt["model"]["transformer.bte.weight"][NO_POSITION].abs().sum() == 0


def test_the_bundled_default_reads_the_board_and_plays_through_uci() -> None:
    assert read_model_info(resolve_model("default")).board_input == "board+attacks"
    assert read_model_info(resolve_model("paper")).board_input is None
    moves = "e2e4 c7c5 g1f3 d7d6 d2d4 c5d4 f3d4 g8f6 b1c3"
    for mode in MODES:
        out = subprocess.run(
            [sys.executable, "-m", "transcend.engine.uci", "--temp", "0", "--mode", mode],
            input=f"uci\nisready\nposition startpos moves {moves}\ngo depth 1\nquit\n",
            capture_output=True, text=True, timeout=120, check=True).stdout
        assert "window 1023, board input board+attacks) on " in out  # the engine says so
        best = out.split("bestmove ")[1].split()[0]
        board = chess.Board()
        for uci in moves.split():
            board.push_uci(uci)
        assert chess.Move.from_uci(best) in board.legal_moves, (mode, out[-500:])
