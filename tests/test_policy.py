"""The policy: exact legal-move probabilities against a brute-force reference, the KV cache,
prompts (history, FEN, long games), sampling modes and device fallback."""

from __future__ import annotations

import random
from pathlib import Path

import chess
import numpy as np
import pytest

from transcend.engine import policy as policy_module
from transcend.engine.model_file import (
    ModelError,
    default_model_path,
    read_metadata,
    read_model_info,
)
from transcend.engine.policy import Policy
from transcend.engine.transcript import STOI, VOCAB

CASTLING_FEN = "r3k2r/pppqppbp/2np1np1/8/8/2NP1NP1/PPPQPPBP/R3K2R w KQkq - 0 9"


@pytest.fixture(scope="module")
def policy(tiny_onnx: Path) -> Policy:
    return Policy(tiny_onnx, device="cpu", threads=1)


def full_logits(policy: Policy, text: str) -> np.ndarray:
    """Logits of a whole text in one causal pass with an empty cache: no tree, no reuse."""
    return policy.text_logits(text).astype(np.float64)


def reference(policy: Policy, board: chess.Board, temperature: float, mode: str) -> dict:
    """Each move's probability, character by character from full passes over prompt + SAN."""
    text = policy.prompt_text(board)
    sans = {m: board.san(m) for m in board.legal_moves}
    end = [STOI[" "], STOI[";"]]
    out = {}
    for move, san in sans.items():
        logits = full_logits(policy, text + san)
        logp = 0.0
        for d in range(len(san) + 1):
            row = logits[len(text) - 1 + d]
            prefix = san[:d]
            if mode == "move":
                lp = row - np.logaddexp.reduce(row)
                logp += np.logaddexp(lp[end[0]], lp[end[1]]) if d == len(san) else lp[STOI[san[d]]]
                continue
            row = row / temperature
            allowed = {s[d] for s in sans.values() if s.startswith(prefix) and len(s) > d}
            options = {c: row[STOI[c]] for c in allowed}
            if prefix in sans.values():
                options["END"] = np.logaddexp(row[end[0]], row[end[1]])
            norm = np.logaddexp.reduce(np.array(list(options.values())))
            logp += options["END" if d == len(san) else san[d]] - norm
        out[move] = logp
    values = np.array(list(out.values()))
    if mode == "move":
        values = values / temperature
    p = np.exp(values - np.logaddexp.reduce(values))
    return dict(zip(out, p, strict=True))


def assert_matches(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for move, p in want.items():
        assert got[move] == pytest.approx(p, rel=1e-4, abs=1e-9), move


def _moves_that_keep_going(board: chess.Board, moves: list[chess.Move]) -> list[chess.Move]:
    """Moves after which the side to move still has a move (no mate, no stalemate)."""
    going = []
    for move in moves:
        board.push(move)
        if any(board.legal_moves):
            going.append(move)
        board.pop()
    return going or moves


def random_game(plies: int, seed: int) -> chess.Board:
    rng = random.Random(seed)
    board = chess.Board()
    while len(board.move_stack) < plies and not board.is_game_over():
        board.push(rng.choice(list(board.legal_moves)))
    return board


@pytest.mark.parametrize("mode,temperature", [("token", 1.0), ("token", 0.3), ("move", 0.5)])
def test_distribution_matches_brute_force(policy: Policy, mode: str, temperature: float) -> None:
    board = random_game(9, seed=1)
    got = policy.move_distribution(board, temperature, mode)
    assert sum(got.values()) == pytest.approx(1.0)
    assert_matches(got, reference(policy, board, temperature, mode))


def test_castling_both_ways_are_different_moves(policy: Policy) -> None:
    board = chess.Board(CASTLING_FEN)
    sans = {board.san(m) for m in board.legal_moves}
    assert {"O-O", "O-O-O"} <= sans
    got = policy.move_distribution(board, 1.0, "token")
    want = reference(policy, board, 1.0, "token")
    assert_matches(got, want)
    short, long_ = (board.parse_san(s) for s in ("O-O", "O-O-O"))
    assert got[short] != pytest.approx(got[long_])
    # The model's own END probability after "O-O" decides between the two.
    logp = policy.move_log_probs(board)
    assert logp[short] > -np.inf and logp[long_] > -np.inf


def test_greedy_is_one_hot_of_per_character_argmax(policy: Policy) -> None:
    board = random_game(6, seed=2)
    got = policy.move_distribution(board, 0.0, "token")
    assert sorted(got.values())[-1] == 1.0 and sum(got.values()) == 1.0
    # Per-character argmax among legal continuations equals the T -> 0 limit.
    cold = policy.move_distribution(board, 1e-4, "token")
    assert max(cold, key=cold.get) == max(got, key=got.get)
    greedy_move = policy.move_distribution(board, 0.0, "move")
    exact = policy.move_log_probs(board)
    assert greedy_move[max(exact, key=exact.get)] == 1.0


def test_cache_reuse_runs_only_new_tokens(policy: Policy) -> None:
    policy.reset()
    rng = np.random.default_rng(0)
    board = chess.Board()
    first = policy.choose(board, 1.0, "token", rng)
    prompt0 = policy.prompt_text(board)
    n_tree0 = first.nodes - len(prompt0)
    assert n_tree0 > 0
    board.push(first.move)
    san = chess.Board().san(first.move)
    # The chosen move's characters were kept from the tree: the cache holds prompt + SAN.
    assert policy.cached_tokens == len(prompt0) + len(san)
    board.push(next(iter(board.legal_moves)))
    prompt1 = policy.prompt_text(board)
    second = policy.choose(board, 1.0, "token", rng)
    tree = policy._trie(board, None)
    assert second.nodes == len(prompt1) - len(prompt0) - len(san) + tree.n
    assert_matches(second.probabilities, reference(policy, board, 1.0, "token"))


def test_extend_cache_leaves_only_the_reply(policy: Policy) -> None:
    policy.reset()
    rng = np.random.default_rng(3)
    board = random_game(10, seed=8)
    move = policy.choose(board, 1.0, "token", rng, distribution=False).move
    board.push(move)
    policy.extend_cache(board)  # as the engine does after bestmove
    mine = policy.prompt_text(board)
    assert policy.cached_tokens == len(mine)
    policy.extend_cache(board)  # nothing new: nothing runs, nothing changes
    assert policy.cached_tokens == len(mine)
    board.push(next(iter(board.legal_moves)))
    choice = policy.choose(board, 1.0, "move", rng)
    reply = policy.prompt_text(board)
    assert reply.startswith(mine)
    assert choice.nodes == len(reply) - len(mine) + policy._trie(board, None).n
    assert_matches(choice.probabilities, reference(policy, board, 1.0, "move"))


def test_cache_buffer_grows_in_chunks_and_stays_exact(tiny_onnx: Path) -> None:
    pol = Policy(tiny_onnx, device="cpu", threads=1)
    board = chess.Board()
    rng = random.Random(11)
    capacities = []
    while len(board.move_stack) < 90 and not board.is_game_over():
        dist = pol.move_distribution(board, 1.0)
        capacities.append(pol._cache.shape[4])
        assert pol.cached_tokens <= capacities[-1] <= pol.info.block_size
        board.push(rng.choice(_moves_that_keep_going(board, list(dist))))
        pol.extend_cache(board)
    grown = sorted(set(capacities))
    assert len(grown) >= 3 and all(c % policy_module.CACHE_CHUNK == 0 for c in grown)
    assert_matches(pol.move_distribution(board, 1.0), reference(pol, board, 1.0, "token"))


def test_paper_attempts_leave_the_cache_as_it_was(policy: Policy) -> None:
    board = random_game(9, seed=12)  # black to move: the prompt's trailing space is cached
    policy.move_distribution(board, 1.0)
    n = policy.cached_tokens
    before = policy._cache[..., :n, :].copy()
    choice = policy.choose(board, 1.0, "paper", np.random.default_rng(4))
    assert len(choice.attempts) >= 1
    after = policy._cache[..., :n, :]
    assert np.array_equal(before, after)
    assert_matches(policy.move_distribution(board, 1.0), reference(policy, board, 1.0, "token"))


def test_takeback_and_new_game_reuse_the_common_prefix(policy: Policy) -> None:
    board = random_game(20, seed=3)
    policy.move_distribution(board, 1.0)
    for _ in range(5):
        board.pop()
    assert_matches(policy.move_distribution(board, 1.0), reference(policy, board, 1.0, "token"))
    other = random_game(7, seed=4)
    assert_matches(policy.move_distribution(other, 1.0), reference(policy, other, 1.0, "token"))


def test_prompts_from_history_and_from_fen(policy: Policy) -> None:
    board = chess.Board()
    assert policy.prompt_text(board) == ";1."
    board.push_san("e4")
    assert policy.prompt_text(board) == ";1.e4 "
    assert policy.has_history(board)
    fen_black = chess.Board("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 12")
    assert policy.prompt_text(fen_black) == "12.-- "
    assert not policy.has_history(fen_black)
    fen_black.push_san("e5")
    assert policy.prompt_text(fen_black) == "12.-- e5 13."
    # A FEN that is the standard start is a game start.
    assert policy.prompt_text(chess.Board(chess.STARTING_FEN)) == ";1."


def test_long_game_keeps_a_window_of_whole_moves(tiny_onnx: Path) -> None:
    pol = Policy(tiny_onnx, device="cpu", threads=1)
    board = chess.Board()
    rng = random.Random(5)
    budget = pol.info.block_size - policy_module.WINDOW_MARGIN
    starts = set()
    while len(board.move_stack) < 400:
        text = pol.prompt_text(board)
        assert len(text) <= budget
        if not text.startswith(";"):
            assert text.split(".", 1)[0].isdigit()  # starts at a white move number
            starts.add(text.split(".", 1)[0])
        dist = pol.move_distribution(board, 1.0)
        assert sum(dist.values()) == pytest.approx(1.0)
        board.push(rng.choice(_moves_that_keep_going(board, list(dist))))
    assert len(starts) >= 2  # the window moved more than once
    assert_matches(pol.move_distribution(board, 1.0), reference(pol, board, 1.0, "token"))
    fresh = Policy(tiny_onnx, device="cpu", threads=1)
    assert_matches(fresh.move_distribution(board, 1.0), pol.move_distribution(board, 1.0))


def test_seeded_choices_repeat(policy: Policy) -> None:
    board = random_game(4, seed=6)
    a = [policy.choose(board, 1.0, "token", np.random.default_rng(7)).move for _ in range(3)]
    b = [policy.choose(board, 1.0, "token", np.random.default_rng(7)).move for _ in range(3)]
    assert a == b
    drawn = {policy.choose(board, 1.0, "move", np.random.default_rng(s)).move for s in range(30)}
    assert len(drawn) > 1  # at T = 1 the random model's moves vary


def test_sampling_follows_the_distribution() -> None:
    p = np.array([0.1, 0.6, 0.3])
    rng = np.random.default_rng(0)
    counts = np.bincount([policy_module._sample_index(p, rng) for _ in range(6000)], minlength=3)
    assert np.allclose(counts / 6000, p, atol=0.025)


def test_searchmoves_restrict_the_choice(policy: Policy) -> None:
    board = chess.Board()
    only = [chess.Move.from_uci("g1f3"), chess.Move.from_uci("a2a3")]
    dist = policy.move_distribution(board, 1.0, moves=only)
    assert set(dist) == set(only) and sum(dist.values()) == pytest.approx(1.0)
    choice = policy.choose(board, 1.0, "token", np.random.default_rng(0), moves=only)
    assert choice.move in only


def test_paper_mode_resamples_then_falls_back(policy: Policy, monkeypatch) -> None:
    board = chess.Board()
    board.push_san("e4")
    seen: list[int] = []
    texts = iter(["Zz9 ", " 2.Nf3", " e5 2.Nf3"])

    def fake(n: int, temperature: float, rng: np.random.Generator) -> tuple[str, int]:
        seen.append(n)
        return next(texts), 3

    monkeypatch.setattr(policy, "_generate", fake)
    choice = policy.choose(board, 1.0, "paper", np.random.default_rng(0))
    assert choice.move == chess.Move.from_uci("e7e5")
    assert choice.illegal_attempts == 2 and not choice.fallback
    # Black's prompt is given without its trailing space: the model writes it.
    assert seen == [len(";1.e4")] * 3
    monkeypatch.undo()
    # The random model writes no legal move in 5 tries: token mode takes over.
    fallback = policy.choose(board, 1.0, "paper", np.random.default_rng(1))
    assert fallback.fallback and fallback.illegal_attempts == policy_module.PAPER_ATTEMPTS
    assert fallback.move in board.legal_moves and len(fallback.attempts) == 5


def test_parse_generated() -> None:
    board = chess.Board()
    parse = policy_module._parse_generated
    assert parse(board, "e4 e5") == chess.Move.from_uci("e2e4")
    assert parse(board, "Nf3;1.") == chess.Move.from_uci("g1f3")
    assert parse(board, ";1.e4") is None
    assert parse(board, "Ke9 ") is None
    assert parse(board, "--") is None
    board.push_san("e4")
    assert parse(board, " e5 2.Nf3") == chess.Move.from_uci("e7e5")


def test_metadata_and_bad_files(tiny_onnx: Path, tmp_path: Path) -> None:
    import onnx

    meta = read_metadata(tiny_onnx)
    assert meta == {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    info = read_model_info(tiny_onnx)
    assert meta["vocab"] == VOCAB
    assert (info.n_layer, info.block_size, info.max_rating) == (2, 1023, 1000)
    with pytest.raises(ModelError, match="no model file"):
        Policy(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\xff" * 100)
    with pytest.raises(ModelError):
        Policy(corrupt)
    proto = onnx.load(str(tiny_onnx))
    for prop in proto.metadata_props:
        if prop.key == "vocab":
            prop.value = VOCAB[::-1]
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelError, match="vocabulary"):
        Policy(wrong)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_onnx.read_bytes()[:5000])
    with pytest.raises(ModelError):
        Policy(truncated)


def _with_metadata(source: Path, out: Path, **changes: str | None) -> Path:
    """A copy of ``source`` with metadata entries set (a value) or removed (None), as an older
    or damaged export would have them."""
    import onnx

    proto = onnx.load(str(source))
    kept = [p for p in proto.metadata_props if p.key not in changes]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in changes.items():
        if value is not None:
            proto.metadata_props.add(key=key, value=value)
    out.write_bytes(proto.SerializeToString())
    return out


def test_absent_optional_metadata_stays_absent(tiny_onnx: Path, tmp_path: Path) -> None:
    from transcend.training.export import export_onnx, metadata_for
    from transcend.training.model import CONFIGS, GPT

    # Data without ratings (the manifest says null): no max_rating in the file at all.
    model = GPT(CONFIGS["tiny"])
    meta = metadata_for(model, {"data": {"max_rating": None}})
    assert "max_rating" not in meta and "None" not in meta.values()
    # Nor does an old file's "None" travel on when its metadata is written again (upgrade-model).
    export_onnx(model, tmp_path / "again.onnx", meta | {"max_rating": "None"})
    assert "max_rating" not in read_metadata(tmp_path / "again.onnx")
    # Files exported before that rule hold the string "None": they load, with no rating.
    old = _with_metadata(tiny_onnx, tmp_path / "old.onnx", max_rating="None")
    assert read_metadata(old)["max_rating"] == "None"
    assert read_model_info(old).max_rating is None
    board = chess.Board()
    move = Policy(old, device="cpu").choose(board, 1.0, "token", np.random.default_rng(0)).move
    assert move in board.legal_moves
    bare = _with_metadata(tiny_onnx, tmp_path / "bare.onnx", max_rating=None, n_params=None)
    info = read_model_info(bare)
    assert (info.max_rating, info.n_params, info.block_size) == (None, None, 1023)


@pytest.mark.parametrize("changes, message", [
    ({"head_dim": None}, "incomplete metadata: no head_dim"),
    ({"block_size": "None"}, "incomplete metadata: no block_size"),
    ({"n_layer": "two"}, "bad n_layer in its metadata: 'two'"),
    ({"max_rating": "high"}, "bad max_rating in its metadata: 'high'"),
])
def test_bad_metadata_is_one_line_naming_the_field(
        tiny_onnx: Path, tmp_path: Path, changes: dict[str, str | None], message: str) -> None:
    path = _with_metadata(tiny_onnx, tmp_path / "damaged.onnx", **changes)
    with pytest.raises(ModelError, match=message) as exc:
        read_model_info(path)
    assert len(str(exc.value).splitlines()) == 1


def test_calibration_is_read(tiny_onnx: Path, tmp_path: Path) -> None:
    from transcend.evaluation.sweep import write_metadata_calibration

    path = tmp_path / "calibrated.onnx"
    path.write_bytes(tiny_onnx.read_bytes())
    write_metadata_calibration(path, [{"temperature": 1.0, "elo": 900},
                                      {"temperature": 0.01, "elo": 1400}])
    assert read_model_info(path).calibration == [(0.01, 1400.0), (1.0, 900.0)]
    # `transcend sweep` also writes the curve next to the model.
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(tiny_onnx.read_bytes())
    assert read_model_info(plain).calibration == []
    (tmp_path / "plain.calibration.json").write_text('[{"temperature": 0.5, "elo": 1100.5}]')
    assert read_model_info(plain).calibration == [(0.5, 1100.5)]


def test_cuda_request_falls_back_quietly(tiny_onnx: Path, capfd) -> None:
    pol = Policy(tiny_onnx, device="cuda")
    if pol.info.provider == "CPUExecutionProvider":
        assert pol.info.device_note  # says why
    assert pol.move_distribution(chess.Board(), 1.0)
    assert capfd.readouterr().err == ""
    with pytest.raises(ValueError, match="unknown device"):
        Policy(tiny_onnx, device="tpu")


def test_default_model_path_is_in_the_package() -> None:
    path = default_model_path()
    assert path.name == "default.onnx" and path.parent.name == "models"


def test_legal_sans_agree_with_python_chess() -> None:
    """Over random games (promotions, castling, en passant, checks, mates) and positions that
    need disambiguation by file, by rank and by both."""
    rng = random.Random(8)
    seen: set[str] = set()
    for _ in range(25):
        board = chess.Board()
        while not board.is_game_over() and len(board.move_stack) < 200:
            moves = list(board.legal_moves)
            want = [board.san(m) for m in moves]
            assert policy_module.legal_sans(board, moves) == want, board.fen()
            seen.update(want)
            # Prefer captures and promotions so that rare notations turn up.
            spicy = [m for m in moves if board.is_capture(m) or m.promotion]
            board.push(rng.choice(spicy if spicy and rng.random() < 0.5 else moves))
    for pattern in ("=Q", "#", "+", "O-O", "O-O-O"):
        assert any(pattern in s for s in seen), pattern
    for fen, needed in [
        ("k7/8/8/8/8/8/8/KN3N2 w - - 0 1", "Nbd2"),
        ("7k/8/8/R7/8/8/8/R3K3 w - - 0 1", "R1a3"),
        ("8/8/k7/8/4Q2Q/8/8/K6Q w - - 0 1", "Qh4e1"),
        ("1r2k3/P1P5/8/8/8/8/8/4K2R w K - 0 1", "axb8=N"),
    ]:
        board = chess.Board(fen)
        moves = list(board.legal_moves)
        sans = policy_module.legal_sans(board, moves)
        assert sans == [board.san(m) for m in moves] and needed in sans


def test_small_window_shifts_often_and_stays_exact(tmp_path: Path) -> None:
    """A 96-character window: the start moves every few moves, the cache follows it."""
    import torch

    from transcend.training.export import export_onnx, metadata_for
    from transcend.training.model import GPT, ModelConfig

    torch.manual_seed(1)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=96))
    path = tmp_path / "short.onnx"
    export_onnx(model, path, metadata_for(model, {}))
    pol = Policy(path, device="cpu", threads=1)
    rng = random.Random(9)
    board = chess.Board("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR b KQkq - 0 7")
    starts = set()
    for ply in range(120):
        text = pol.prompt_text(board)
        assert len(text) <= 96 - policy_module.WINDOW_MARGIN
        starts.add(text.split(".", 1)[0])
        dist = pol.move_distribution(board, 0.7)
        if ply % 30 == 29:
            assert_matches(dist, reference(pol, board, 0.7, "token"))
        board.push(rng.choice(_moves_that_keep_going(board, list(dist))))
    assert len(starts) > 5
    fresh = Policy(path, device="cpu", threads=1)
    assert_matches(fresh.move_distribution(board, 0.7), pol.move_distribution(board, 0.7))
