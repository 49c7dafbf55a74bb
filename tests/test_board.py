"""Board targets, the board loss in training, export without the head, and `transcend probe`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import chess
import numpy as np
import onnxruntime as ort
import pytest
import torch
from cli_helpers import transcend

from transcend.engine.policy import Policy
from transcend.engine.transcript import encode, game_transcript
from transcend.training.data.board import (
    IGNORE,
    PIECE_NAMES,
    BoardTargets,
    board_classes,
    replay_game,
)

FAST = ["--config", "tiny", "--block-size", "128", "--batch-size", "8", "--quiet",
        "--eval-batches", "2", "--legal-interval", "0", "--warmup-steps", "5", "--threads", "1",
        "--seed", "3"]


@pytest.fixture(scope="module")
def expert_games(tmp_path_factory: pytest.TempPathFactory, stockfish: str) -> Path:
    """Openings of a noisy Stockfish expert against itself, made by `transcend data experts`:
    games cut at 16 plies, where a small model learns the board within a few hundred steps. At
    skill 20 the same seed makes the same games (below it Stockfish draws its own random
    numbers), so the probe comparison below measures the recipe, not a draw of the data."""
    pgn = tmp_path_factory.mktemp("experts") / "experts.pgn"
    transcend("data", "experts", "--out", str(pgn), "--games", "400", "--concurrency", "2",
              "--expert", "sf:skill=20,nodes=10,eps=0.5",
              "--max-plies", "16", "--quiet", "--seed", "5")
    return pgn


@pytest.fixture(scope="module")
def expert_data(expert_games: Path) -> Path:
    data = expert_games.parent / "data"
    transcend("data", "prepare", str(expert_games), "--out", str(data), "--val-fraction", "0.1")
    return data


@pytest.fixture(scope="module")
def trained_pair(expert_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same `mini` model trained on the same windows, with and without the board loss."""
    root = tmp_path_factory.mktemp("pair")
    runs = {}
    for name, extra in (("plain", []), ("board", ["--board-loss", "1", "--board-at", "moves"])):
        runs[name] = root / name
        transcend("train", "--data", str(expert_data), "--out", str(runs[name]), *FAST,
                  "--config", "mini", "--block-size", "64", "--batch-size", "16",
                  "--mid-game-share", "0", "--max-steps", "400", "--lr", "3e-3",
                  "--eval-interval", "100", *extra)
    return runs


def test_classes_are_relative_to_the_side_to_move() -> None:
    board = chess.Board()
    for san in ("e4", "d5", "exd5", "Qxd5"):
        board.push_san(san)
    classes = board_classes(board)
    for square in chess.SQUARES:
        piece = board.piece_at(square)
        letter = PIECE_NAMES[classes[square]]
        if piece is None:
            assert letter == "."
            continue
        mine = piece.color == board.turn
        assert letter == (piece.symbol().upper() if mine else piece.symbol().lower())
    # White to move: white's queen is "mine" (Q), black's queen on d5 is "theirs" (q).
    assert PIECE_NAMES[classes[chess.D5]] == "q" and PIECE_NAMES[classes[chess.D1]] == "Q"


def test_random_games_replay_to_python_chess_boards() -> None:
    rng = random.Random(11)
    for _ in range(20):
        board, sans = chess.Board(), []
        boards = [board_classes(board)]
        while not board.is_game_over() and len(sans) < 80:
            move = rng.choice(list(board.legal_moves))
            sans.append(board.san(move))
            board.push(move)
            boards.append(board_classes(board))
        replayed = replay_game(game_transcript(sans))
        assert replayed is not None
        assert np.array_equal(replayed.boards, np.stack(boards))


def test_targets_sit_where_moves_are_decided() -> None:
    text = ";1.e4 e5 2.Nf3 Nc6"
    game = replay_game(text)
    assert game is not None
    moves = game.targets(len(text), "moves")
    decided = [i for i in range(len(text)) if moves[i, 0] != IGNORE]
    # The character before each move: '.' before white's, the space before black's.
    assert [text[i] for i in decided] == [".", " ", ".", " "]
    assert [text[i + 1] for i in decided] == ["e", "e", "N", "N"]
    for k, i in enumerate(decided):
        assert np.array_equal(moves[i], game.boards[k])
    every = game.targets(len(text), "all")
    assert np.array_equal(every[text.index("e5") - 1], game.boards[1])  # the space after e4
    assert np.array_equal(every[text.index("e5") + 1], game.boards[1])  # mid-move: before e5
    assert np.array_equal(every[text.index("e5") + 2], game.boards[2])  # e5's space: after it


def test_illegal_games_are_skipped_and_counted() -> None:
    good = game_transcript(["e4", "e5"])
    bad = game_transcript(["e4", "e4"])
    tokens = encode(good + bad + good)
    targets = BoardTargets(tokens, "all")
    window = targets.window(0, len(tokens))
    bad_span = slice(len(good), len(good) + len(bad))
    assert (window[bad_span] == IGNORE).all()
    assert (window[: len(good)] != IGNORE).all() and (window[-len(good):] != IGNORE).all()
    assert targets.failed == 1 and targets.replayed == 3


def test_a_window_that_starts_inside_a_game_gets_no_targets_for_it() -> None:
    first = game_transcript(["e4", "e5", "Nf3", "Nc6"])
    second = game_transcript(["d4"])
    targets = BoardTargets(encode(first + second), "all")
    window = targets.window(5, len(first) - 5 + len(second))
    assert (window[: len(first) - 5] == IGNORE).all()
    assert (window[len(first) - 5:] != IGNORE).all()


def test_board_loss_is_logged_and_resumes_exactly(expert_data: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--data", str(expert_data), *FAST, "--eval-interval", "4", "--board-loss", "0.5"]
    transcend("train", "--out", str(straight), *common, "--max-steps", "8")
    transcend("train", "--out", str(split), *common, "--max-steps", "4")
    # The thread count is the one setting a resume does not take from the run: keep it.
    transcend("train", "--out", str(split), "--resume", "--max-steps", "8", "--quiet",
              "--threads", "1")
    a = torch.load(straight / "ckpt.pt", weights_only=True)
    b = torch.load(split / "ckpt.pt", weights_only=True)
    for name, tensor in a["board_head"].items():
        assert torch.equal(tensor, b["board_head"][name]), name
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert any("board_loss" in r and "loss" in r for r in records)
    assert any("val_board_loss" in r for r in records)
    summary = a["summary"]
    assert summary["board_loss"] == 0.5 and summary["board_layer"] == 1  # two thirds of 2 layers
    assert summary["board_games_skipped"] == 0 and summary["board_games_replayed"] > 0


def test_board_loss_on_data_that_does_not_replay_is_one_line(tmp_path: Path) -> None:
    pgn = tmp_path / "illegal.pgn"
    games = [f'[Event "x"]\n[Result "1-0"]\n\n1. e5 e4 2. N{f}{r} Nc3 1-0\n'
             for f in "abcdefgh" for r in "3456"]
    pgn.write_text("\n".join(games))
    data = tmp_path / "data"
    transcend("data", "prepare", str(pgn), "--out", str(data))  # kept: prepare does not replay
    result = transcend("train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST,
                       "--max-steps", "2", "--board-loss", "1", check=False)
    assert result.returncode == 1
    assert "no board targets" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    plain = transcend("train", "--data", str(data), "--out", str(tmp_path / "plain"), *FAST,
                      "--max-steps", "2")
    assert plain.returncode == 0


def test_board_training_raises_probe_accuracy(trained_pair: dict[str, Path], expert_games: Path,
                                              tmp_path: Path) -> None:
    results = {}
    for name, run in trained_pair.items():
        transcend("probe", str(run), "--pgn", str(expert_games), "--out", str(tmp_path / name),
                  "--games", "200")
        results[name] = json.loads((tmp_path / name / "probe.json").read_text())
    plain, board = results["plain"], results["board"]
    best = {name: max(r["accuracy"] for r in res["layers"]) for name, res in results.items()}
    occupied = {name: max(r["occupied_accuracy"] for r in res["layers"])
                for name, res in results.items()}
    # One measured draw of this recipe: 0.864 against 0.836; occupied squares 0.827 and 0.793.
    assert best["board"] > best["plain"] + 0.01, best
    assert occupied["board"] > occupied["plain"] + 0.01, occupied
    assert board["layers"][board["best_layer"]]["loss"] < plain["layers"][plain["best_layer"]][
        "loss"]
    for res in (plain, board):
        assert len(res["layers"]) == 5  # the embeddings and four blocks
        for row in res["layers"]:
            assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["occupied_accuracy"] <= 1.0
        assert res["positions"] > 100 and res["games"]["test"] == 50
        assert max(res["baselines"].values()) < max(r["accuracy"] for r in res["layers"])
        assert {row["plies"] for row in res["by_ply"]} == {"0-10", "11-20"}
    assert (tmp_path / "board" / "probe.md").read_text().startswith("# Board probe")
    assert (tmp_path / "board" / "probe.png").stat().st_size > 1000


def test_export_drops_the_head_and_the_engine_plays(trained_pair: dict[str, Path],
                                                    tmp_path: Path) -> None:
    models = {}
    for name, run in trained_pair.items():
        models[name] = tmp_path / f"{name}.onnx"
        transcend("export", str(run), "--out", str(models[name]))
    sessions = {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for name, path in models.items()}

    def interface(session: ort.InferenceSession) -> list[tuple[str, list]]:
        return [(x.name, x.shape) for x in [*session.get_inputs(), *session.get_outputs()]]

    assert interface(sessions["board"]) == interface(sessions["plain"])
    assert models["board"].stat().st_size == pytest.approx(models["plain"].stat().st_size,
                                                           rel=0.01)
    policy = Policy(models["board"], threads=1)
    board, rng = chess.Board(), np.random.default_rng(0)
    for _ in range(6):
        move = policy.choose(board, 0.01, "token", rng).move
        assert move in board.legal_moves
        board.push(move)


def test_probe_reads_a_nanogpt_checkpoint_and_an_exported_model(expert_games: Path,
                                                                tmp_path: Path,
                                                                tiny_onnx: Path) -> None:
    from transcend.training.model import CONFIGS, GPT

    torch.manual_seed(4)
    model = GPT(CONFIGS["tiny"])
    state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": state, "model_args": CONFIGS["tiny"].to_dict(), "iter_num": 5}, ckpt)
    for source, out in ((ckpt, tmp_path / "nano"), (tiny_onnx, tmp_path / "onnx")):
        result = transcend("probe", str(source), "--pgn", str(expert_games), "--out", str(out),
                           "--games", "20")
        assert "best layer" in result.stdout
        probe = json.loads((out / "probe.json").read_text())
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in probe["layers"])


@pytest.mark.parametrize("case", ["missing", "garbage", "empty", "onnx-garbage", "not-a-run"])
def test_probe_bad_input_is_one_line(case: str, expert_games: Path, tmp_path: Path) -> None:
    from transcend.training.model import CONFIGS, GPT

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": GPT(CONFIGS["tiny"]).state_dict(),
                "model_args": CONFIGS["tiny"].to_dict()}, run / "ckpt.pt")
    model, pgn = run, expert_games
    if case == "missing":
        pgn = tmp_path / "absent.pgn"
    elif case in ("garbage", "empty"):
        pgn = tmp_path / "bad.pgn"
        pgn.write_bytes(b"\x00\xff garbage \x01" * 50 if case == "garbage" else b"")
    elif case == "onnx-garbage":
        model = tmp_path / "m.onnx"
        model.write_bytes(b"not a model")
    else:
        model = tmp_path / "empty-folder"
        model.mkdir()
    result = transcend("probe", str(model), "--pgn", str(pgn), "--out", str(tmp_path / "out"),
                       check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert not (tmp_path / "out" / "probe.json").exists()


def test_the_board_loss_reaches_only_the_blocks_up_to_its_layer() -> None:
    """The head reads block ``layer``: its loss changes the gradients of the embeddings and the
    blocks up to it, and leaves those above it as the next-character loss alone makes them."""
    from transcend.training.model import (
        GPT,
        BoardSupervised,
        ModelConfig,
        board_loss,
        next_char_loss,
    )

    text = game_transcript(["e4", "e5", "Nf3", "Nc6", "Bb5", "a6", "Ba4", "Nf6"])
    ids = torch.from_numpy(encode(text).astype(np.int64))[None]
    game = replay_game(text)
    assert game is not None
    targets = torch.from_numpy(game.targets(len(text), "all"))[None]
    where = targets[..., 0] != IGNORE
    grads = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        gpt = GPT(ModelConfig(n_layer=3, n_head=2, n_embd=32, block_size=64))
        model = BoardSupervised(gpt, layer=2)
        x, supervised = ids[:, :-1], where[:, :-1]
        logits, board = model(x, supervised)
        board_ce = board_loss(board, targets[:, :-1][supervised])
        loss = next_char_loss(logits, ids[:, 1:]) + weight * board_ce
        loss.backward()
        grads[weight] = {name: p.grad.clone() for name, p in model.gpt.named_parameters()}
    changed = {name for name in grads[0.0] if not torch.allclose(grads[0.0][name],
                                                                 grads[1.0][name])}
    assert "transformer.wpe.weight" in changed
    assert any(name.startswith("transformer.h.0.") for name in changed)
    assert any(name.startswith("transformer.h.1.") for name in changed)
    assert not any(name.startswith(("transformer.h.2.", "transformer.ln_f")) for name in changed)
