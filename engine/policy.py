"""The model as a chess policy: exact probabilities of legal moves, and sampling from them.

A move's text is its SAN, and a move is complete when the model writes a terminator after it
(``" "`` or ``";"``), so ``O-O`` and ``O-O-O`` are different texts. Every legal move is scored in
one onnxruntime call: the SANs form a tree of characters (a trie) whose nodes run as new tokens
after the cached prompt, each attending to the cache and to its own ancestors only. The key/value
cache is kept between calls in a buffer with spare capacity that the model reads in place, so a
position that extends the previous one runs only its new characters and copies nothing.

Sampling modes (see ``docs/engine.md``):

``token``  characters sampled one by one from softmax(logits / T), restricted at each step to the
           characters that continue some legal move (the paper's temperature, always legal);
``move``   the exact probability p of every legal move, then p^(1/T) renormalised;
``paper``  the paper's protocol: up to 10 unconstrained characters, re-sampled on an illegal
           move up to 5 attempts, then ``token`` mode.

No torch here: the engine runs on onnxruntime and numpy alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import chess
import numpy as np

from transcend.engine.features import move_spans, plies_at, position_features, text_features
from transcend.engine.model_file import ModelError, cache_feed, create_session, read_model_info
from transcend.engine.token_steps import (
    first_chars,
    sample_in_order,
    sample_index,
    step,
    steps_are_cheaper,
    walk,
)
from transcend.engine.transcript import STOI, VOCAB, VOCAB_SIZE, decode, encode, prompt
from transcend.engine.trie import (
    MoveTrie,
    legal_sans,
    move_log_probs,
    softmax,
    token_log_probs,
)

MODES = ("token", "move", "paper")
# The paper's protocol: characters generated per attempt, and attempts before giving up.
PAPER_MAX_CHARS = 10
PAPER_ATTEMPTS = 5
# Room kept after the prompt: the longest SAN is 7 characters, a paper attempt writes 10.
WINDOW_MARGIN = PAPER_MAX_CHARS
# A rough upper bound of transcript characters per ply, used to space the window shifts.
CHARS_PER_PLY = 7
# The cache buffer grows in steps of this many positions: each growth copies the cache once,
# and every call reads the spare positions too (masked), so neither cost is large.
CACHE_CHUNK = 128
# Copying a cached position costs about as much as this many new tokens attending to it (one
# thread reads about 16 GB/s; attention runs at about 100 GFLOP/s here).
SPARE_READS_PER_COPY = 25


@dataclass
class MoveScores:
    """The model's logits for the characters of a position's moves: logit row 0 after the
    prompt, row i + 1 after node i of ``trie``. Every distribution of the position is exact
    from them."""

    trie: MoveTrie
    rows: np.ndarray

    def probabilities(self, temperature: float, mode: str = "token") -> np.ndarray:
        """Each move's probability under ``token`` or ``move`` sampling at ``temperature``, in
        the order of ``trie.moves``; at 0 a one-hot of the greedy choice."""
        rows, trie = self.rows, self.trie
        if mode not in ("token", "move"):
            raise ValueError(f"unknown sampling mode {mode!r} for a distribution")
        if temperature < 0 or not np.isfinite(temperature):
            raise ValueError(f"temperature must be a number >= 0, not {temperature}")
        if temperature == 0:
            best = (
                walk(rows, trie, 0.0, 0.0)[0]
                if mode == "token"
                else int(np.argmax(move_log_probs(rows, trie)))
            )
            p = np.zeros(len(trie.moves))
            p[best] = 1.0
            return p
        if mode == "token":
            return softmax(token_log_probs(rows, trie, temperature))
        return softmax(move_log_probs(rows, trie) / temperature)

    def distribution(self, temperature: float, mode: str = "token") -> dict[chess.Move, float]:
        """:meth:`probabilities` by move (empty when there is no move)."""
        if not self.trie.moves:
            return {}
        p = self.probabilities(temperature, mode)
        return dict(zip(self.trie.moves, p.tolist(), strict=True))

    def log_probs(self) -> dict[chess.Move, float]:
        """Each move's untempered log-probability of its text with its terminator, not
        renormalised over the moves (empty when there is no move)."""
        if not self.trie.moves:
            return {}
        logp = move_log_probs(self.rows, self.trie)
        return dict(zip(self.trie.moves, logp.tolist(), strict=True))


@dataclass
class Choice:
    """A chosen move and how it was chosen."""

    move: chess.Move
    # The distribution the move was drawn from (for `paper`, the `token` distribution that a
    # fallback uses), over the legal (or searched) moves.
    probabilities: dict[chess.Move, float]
    illegal_attempts: int = 0  # `paper` mode: attempts that gave no legal move
    fallback: bool = False  # `paper` mode: every attempt was illegal, the move is from `token`
    attempts: list[str] = field(default_factory=list)  # `paper` mode: the texts generated
    nodes: int = 0  # tokens run through the model for this move
    # False when `probabilities` holds the chosen move alone (exact): `token` mode sampled it
    # character by character without scoring the other moves.
    complete: bool = True



def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.nonzero(a[:n] != b[:n])[0]
    return int(diff[0]) if len(diff) else n


def _sample_index(p: np.ndarray, rng: np.random.Generator) -> int:
    return sample_index(p, rng.random())


class Policy:
    """A model file as a chess policy, with a key/value cache kept between calls."""

    def __init__(self, model_path: str | Path, device: str = "auto", threads: int = 0) -> None:
        self.info = read_model_info(model_path)
        self.session, self.info.provider, self.info.device_note = create_session(
            self.info.path, device, threads
        )
        self._lock = threading.RLock()  # public methods call each other
        # How `choose(..., distribution=False)` samples in `token` mode: "auto" (step by step
        # when cheaper), "steps" or "tree" (always scoring every move).
        self.token_path = "auto"
        # Window shifts move the start by this many plies (even, so it starts at a white move):
        # about half the window, so the cache is rebuilt rarely.
        self.shift_plies = max(2, 2 * ((self.info.block_size // 2) // (2 * CHARS_PER_PLY)))
        # The feature set a board-input model reads (engine/features.py); None: the plain model,
        # called exactly as without this feature.
        self.board_input = self.info.board_input
        self.reset()

    def reset(self) -> None:
        """Forget the cache (a new model or to free memory; a new game needs no reset)."""
        i = self.info
        self._ids = np.zeros(0, dtype=np.int64)
        # Keys and values of the cached tokens in the first len(_ids) positions; the rest is
        # spare capacity that the model reads but the attention mask keeps out.
        self._cache = np.zeros((i.n_layer, 2, 1, i.n_head, 0, i.head_dim), dtype=np.float32)
        self._logits = np.zeros((0, VOCAB_SIZE), dtype=np.float32)
        self._san_root: chess.Board | None = None
        self._san_board = chess.Board()
        self._root_is_start = True
        self._first_ply = 0  # of the transcript: 0 from the standard start
        self._sans: list[str] = []
        # A board-input model: the features of the position after each ply of the history
        # (index 0: the root), a key of each, and the key of each cached token's position. The
        # cache is kept only where both the text and the positions agree (two games set up from
        # different FENs may share their text).
        self._ply_features: list[np.ndarray] = []
        self._ply_keys: list[int] = []
        self._keys = np.zeros(0, dtype=np.int64)

    @property
    def cached_tokens(self) -> int:
        """How many tokens the cache holds."""
        return len(self._ids)

    # -- prompts ------------------------------------------------------------------------------

    def _history(self, board: chess.Board) -> tuple[list[str], int, bool]:
        """(SANs since the root, ply of the root, whether the root is the standard start).

        SANs are remembered between calls: a board that extends the last one costs only its
        new moves.
        """
        root = board.root()
        if root != self._san_root:
            # Board equality compares pieces, turn, castling, en passant and both clocks.
            self._san_root, self._san_board, self._sans = root, root.copy(), []
            self._root_is_start = (
                root.board_fen() == chess.STARTING_BOARD_FEN
                and root.turn == chess.WHITE
                and root.castling_rights == chess.BB_CORNERS
                and root.fullmove_number == 1
            )
            self._first_ply = 2 * (root.fullmove_number - 1) + (root.turn == chess.BLACK)
            self._ply_features, self._ply_keys = [], []
            self._add_position()
        stack = board.move_stack
        replay = self._san_board
        done = replay.move_stack
        same = 0
        for a, b in zip(stack, done, strict=False):
            if a != b:
                break
            same += 1
        # The private board follows the last game: step back to where the games part, then on.
        while len(done) > same:
            replay.pop()
            self._sans.pop()
            if self.board_input:
                self._ply_features.pop()
                self._ply_keys.pop()
        for move in stack[same:]:
            self._sans.append(replay.san_and_push(move))
            self._add_position()
        return list(self._sans), self._first_ply, self._root_is_start

    def _add_position(self) -> None:
        """The features of the history's last position, for a board-input model."""
        if self.board_input:
            row = position_features(self._san_board, self.board_input)
            self._ply_features.append(row)
            self._ply_keys.append(hash(row.tobytes()))

    def prompt_text(self, board: chess.Board) -> str:
        """The text the model sees before the move to play in ``board``."""
        return self._prompt(board)[0]

    def _prompt(self, board: chess.Board) -> tuple[str, int]:
        """The text the model sees before the move to play in ``board``, and the ply of the
        history (0: the root) where the text starts.

        From the standard start it is the game's transcript as in training (``;1.e4 e5 2.``).
        From a FEN there is no history: the text starts at the FEN's move number, without ``;``
        (``12.-- `` when black is to move). When the text would not leave room for a move in
        the model's window, whole moves are dropped from the front so that it starts at a white
        move number; the start moves in steps of ``shift_plies`` so that it changes rarely.
        """
        with self._lock:
            sans, first_ply, start = self._history(board)
        budget = self.info.block_size - WINDOW_MARGIN
        text = prompt(sans, first_ply, game_start=start)
        if len(text) <= budget:
            return text, 0
        step = self.shift_plies
        absolute = (first_ply // step + 1) * step
        end = first_ply + len(sans)
        while True:
            if absolute > end:
                absolute = end - (end % 2)
            k = absolute - first_ply
            text = prompt(sans[k:], absolute, game_start=False)
            if len(text) <= budget:
                return text, k
            if absolute >= end - 1:
                raise ModelError(
                    f"the model's window ({self.info.block_size}) is too small to hold a move"
                )
            absolute += step

    def has_history(self, board: chess.Board) -> bool:
        """Whether ``board`` was reached from the standard start (its prompt is a real game)."""
        with self._lock:
            return self._history(board)[2]

    # -- model calls --------------------------------------------------------------------------

    def _run(
        self, ids: np.ndarray, positions: np.ndarray, cached: int, new_mask: np.ndarray,
        plies: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and new keys and values of ``ids`` run after the first ``cached`` tokens of the
        cache, with ``new_mask`` saying which new tokens each new token attends to. A board-input
        model reads the position after ``plies[i]`` plies of the history at token i (default:
        the current position for every token)."""
        t, cache = len(ids), self._cache
        if t * (cache.shape[4] - cached) > SPARE_READS_PER_COPY * cached:
            # Many new tokens and few cached ones (a window shift rebuilds the cache): every new
            # token would read every spare position, dearer than copying the cached ones.
            cache = np.ascontiguousarray(cache[..., :cached, :])
        capacity = cache.shape[4]
        mask = np.zeros((t, capacity + t), dtype=bool)
        mask[:, :cached] = True
        mask[:, capacity:] = new_mask
        logits, new_kv = self.session.run(  # type: ignore[attr-defined]
            None,
            {
                "input_ids": ids[None],
                "position_ids": positions[None],
                "attention_mask": mask[None],
                **self._board_feed(plies, t),
                **cache_feed(cache),
            },
        )
        return logits[0], new_kv

    def _board_feed(self, plies: np.ndarray | None, tokens: int) -> dict[str, np.ndarray]:
        """The board inputs of ``tokens`` new tokens at ``plies`` of the history: each distinct
        position's features once, and which of them each token is at. Empty for a plain model."""
        if not self.board_input:
            return {}
        if plies is None:
            plies = np.full(tokens, len(self._ply_features) - 1)
        distinct, index = np.unique(plies, return_inverse=True)
        features = np.stack([self._ply_features[int(ply)] for ply in distinct])
        return {"board_features": features[None], "board_index": index.reshape(1, -1)}

    def _prompt_plies(self, text: str, first: int) -> np.ndarray:
        """For each character of a prompt that starts ``first`` plies into the history, the
        ply whose position it reads (training's rule: every move complete there)."""
        return first + plies_at(move_spans(text)[2], len(text))

    def text_logits(self, text: str) -> np.ndarray:
        """Next-character logits (T, vocab) of every character of ``text``, in one causal pass
        from an empty cache: the plain reading of the graph, leaving the engine's cache alone."""
        info = self.info
        ids = encode(text).astype(np.int64)[None]
        n = ids.shape[1]
        empty = np.zeros((info.n_layer, 2, 1, info.n_head, 0, info.head_dim), np.float32)
        board: dict[str, np.ndarray] = {}
        if self.board_input:  # the text is a game from the standard start, as in training
            features = text_features(text, self.board_input)
            board = {"board_features": features[0][None], "board_index": features[1][None]}
        logits, _ = self.session.run(None, {  # type: ignore[attr-defined]
            "input_ids": ids, "position_ids": np.arange(n)[None],
            "attention_mask": np.tril(np.ones((n, n), bool))[None], **board,
            **cache_feed(empty),
        })
        return logits[0]

    def _reserve(self, size: int) -> None:
        """Room in the cache buffer for ``size`` tokens, keeping the cached ones."""
        capacity = self._cache.shape[4]
        if size <= capacity:
            return
        i = self.info
        capacity = max(size, min(i.block_size, -(-(size + CACHE_CHUNK // 2) // CACHE_CHUNK)
                                 * CACHE_CHUNK))
        cache = np.zeros((i.n_layer, 2, 1, i.n_head, capacity, i.head_dim), dtype=np.float32)
        n = len(self._ids)
        cache[..., :n, :] = self._cache[..., :n, :]
        self._cache = cache

    def _tree_rows(self, n: int, trie: MoveTrie) -> np.ndarray:
        """Logit rows of ``trie`` run after the first ``n`` cached tokens, as in `_evaluate`,
        leaving the cache as it is."""
        logits, _ = self._run(trie.chars, n + trie.depth - 1, n, trie.ancestors)
        return np.concatenate([self._logits[n - 1][None], logits])

    def _evaluate(self, text: str, trie: MoveTrie | None, first: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, int]:
        """Logit rows (row 0 after the prompt, row i + 1 after trie node i), the keys and
        values of the trie's nodes, and the number of tokens run. Caches the prompt, which
        starts ``first`` plies into the history."""
        ids = encode(text).astype(np.int64)
        n = len(ids)
        kept = _common_prefix(self._ids, ids)
        nodes = trie.n if trie is not None else 0
        plies = None
        if self.board_input:
            plies = self._prompt_plies(text, first)
            keys = np.array(self._ply_keys, dtype=np.int64)[plies]
            kept = min(kept, _common_prefix(self._keys, keys))
            # The trie's nodes read the current position, the last of the history.
            plies = np.concatenate([plies[kept:], np.full(nodes, len(self._ply_keys) - 1)])
        new = ids[kept:]
        if len(new) == 0 and nodes == 0:
            return self._logits[n - 1][None], self._cache[..., :0, :], 0
        t = len(new) + nodes
        tokens = np.concatenate([new, trie.chars]) if trie is not None else new
        positions = np.arange(kept, n, dtype=np.int64)
        mask = np.zeros((t, t), dtype=bool)
        mask[: len(new), : len(new)] = np.tril(np.ones((len(new), len(new)), bool))
        if trie is not None:
            positions = np.concatenate([positions, n + trie.depth - 1])
            mask[len(new) :, : len(new)] = True
            mask[len(new) :, len(new) :] = trie.ancestors
        logits, new_kv = self._run(tokens, positions, kept, mask, plies)
        self._reserve(n)
        self._cache[..., kept:n, :] = new_kv[..., : len(new), :]
        self._ids = ids
        if self.board_input:
            self._keys = keys
        self._logits = np.concatenate([self._logits[:kept], logits[: len(new)]])
        root = self._logits[n - 1][None]
        rows = np.concatenate([root, logits[len(new) :]]) if trie is not None else root
        return rows, new_kv[..., len(new) :, :], t

    def extend_cache(self, board: chess.Board) -> None:
        """Run ``board``'s prompt into the cache, with room for the next move or two.

        The engine calls it with its own move played, after ``bestmove``, while the opponent
        thinks: the next position then runs only the opponent's reply. The cache holds the
        same keys and values either way, so the moves and their probabilities are unchanged.
        """
        with self._lock:
            text, first = self._prompt(board)
            self._evaluate(text, None, first)
            self._reserve(len(text) + 4 * CHARS_PER_PLY)

    def _trie(self, board: chess.Board, moves: list[chess.Move] | None) -> MoveTrie:
        legal = list(board.legal_moves)
        if moves is not None:
            wanted = set(moves)
            legal = [m for m in legal if m in wanted]
        return MoveTrie(legal, legal_sans(board, legal))

    def score(self, board: chess.Board, moves: list[chess.Move] | None = None) -> MoveScores:
        """The model's logits for every legal move (or each of ``moves``) of ``board``, in one
        call: every temperature and mode of the position is computed from them."""
        with self._lock:
            trie = self._trie(board, moves)
            if not trie.moves:
                return MoveScores(trie, np.zeros((1, VOCAB_SIZE)))
            text, first = self._prompt(board)
            rows, _, _ = self._evaluate(text, trie, first)
            return MoveScores(trie, rows)

    def move_distribution(
        self,
        board: chess.Board,
        temperature: float,
        mode: str = "token",
        moves: list[chess.Move] | None = None,
    ) -> dict[chess.Move, float]:
        """Exact probability of each legal move (or of each of ``moves``) under ``token`` or
        ``move`` sampling at ``temperature``; at 0 a one-hot of the greedy choice.

        ``board`` carries its history in ``move_stack``; its root may be any FEN.
        """
        return self.score(board, moves).distribution(temperature, mode)

    def move_distributions(
        self,
        board: chess.Board,
        temperatures: list[float],
        mode: str = "token",
        moves: list[chess.Move] | None = None,
    ) -> list[dict[chess.Move, float]]:
        """:meth:`move_distribution` at each of ``temperatures``, from one model call: the
        logits do not depend on the temperature."""
        scores = self.score(board, moves)
        return [scores.distribution(t, mode) for t in temperatures]

    def move_log_probs(
        self, board: chess.Board, moves: list[chess.Move] | None = None
    ) -> dict[chess.Move, float]:
        """The model's untempered log-probability of each legal move's text (with its
        terminator), not renormalised over the legal moves."""
        return self.score(board, moves).log_probs()

    def choose(
        self,
        board: chess.Board,
        temperature: float,
        mode: str,
        rng: np.random.Generator,
        moves: list[chess.Move] | None = None,
        distribution: bool = True,
    ) -> Choice:
        """Sample a move for ``board`` (restricted to ``moves`` when given).

        With ``distribution=False`` the caller needs only the move: `token` mode then samples
        it character by character when that is cheaper (see ``token_steps``), from the same
        distribution and, for the same ``rng`` state, as the same move; ``probabilities`` then
        holds the chosen move's probability alone.
        """
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r} (choose from {', '.join(MODES)})")
        if temperature < 0 or not np.isfinite(temperature):
            raise ValueError(f"temperature must be a number >= 0, not {temperature}")
        with self._lock:
            text, first = self._prompt(board)
            trie = self._trie(board, moves)
            if not trie.moves:
                raise ValueError("no legal move in this position")
            if mode == "token" and not distribution and (
                self.token_path == "steps"
                or (self.token_path == "auto" and steps_are_cheaper(trie, len(text)))
            ):
                return self._choose_steps(text, first, trie, temperature, rng.random())
            rows, tree_kv, nodes = self._evaluate(text, trie, first)
            p = MoveScores(trie, rows).probabilities(
                temperature, "move" if mode == "move" else "token")
            probabilities = dict(zip(trie.moves, p.tolist(), strict=True))
            if mode == "paper":
                written, attempts, used = self._paper(board, text, trie, temperature, rng)
                illegal = len(attempts) - (written is not None)
                if written is None:  # every attempt illegal: the move comes from `token`
                    written = trie.moves[_sample_index(p, rng)]
                return Choice(written, probabilities, illegal, illegal == len(attempts),
                              attempts, nodes + used)
            u = rng.random()
            best = sample_in_order(p, trie.order, u) if mode == "token" else sample_index(p, u)
            self._keep_path(len(text), trie, best, tree_kv, rows)
            return Choice(trie.moves[best], probabilities, nodes=nodes)

    def _choose_steps(self, text: str, first: int, trie: MoveTrie, temperature: float,
                      u: float) -> Choice:
        """`token` sampling in one or two small calls. The first runs the new prompt characters
        and, as a tree, one node per distinct first character of the moves: its logits pick the
        first two characters. Only when several moves start with those two does a second call
        run their subtree. The cache keeps the prompt alone (the move's characters run with the
        next prompt)."""
        firsts = first_chars(trie)
        level = MoveTrie([], [VOCAB[c] for c in firsts])
        rows, _, nodes = self._evaluate(text, level, first)
        k, probability, u = step(rows[0], firsts, False, temperature, u)
        under = [m for m, san in enumerate(trie.sans) if STOI[san[0]] == firsts[k]]
        seconds = sorted({STOI[trie.sans[m][1]] for m in under})  # a SAN has 2 or more
        j, q, u = step(rows[k + 1], seconds, False, temperature, u)
        under = [m for m in under if STOI[trie.sans[m][1]] == seconds[j]]
        best, probability = under[0], probability * q
        if len(under) > 1:
            sub = MoveTrie([trie.moves[m] for m in under], [trie.sans[m] for m in under])
            i, q = walk(self._tree_rows(len(text), sub), sub, temperature, u)
            best, probability, nodes = under[i], probability * q, nodes + sub.n
        move = trie.moves[best]
        return Choice(move, {move: probability}, nodes=nodes, complete=False)

    def _keep_path(
        self, n: int, trie: MoveTrie, best: int, tree_kv: np.ndarray, rows: np.ndarray
    ) -> None:
        """Extend the cache, after its first ``n`` tokens (the prompt), with the chosen move's
        characters, already computed in the tree: the next position starts with them."""
        path = trie.paths[best][trie.paths[best] < trie.n]
        self._reserve(n + len(path))
        self._cache[..., n : n + len(path), :] = tree_kv[..., path, :]
        self._ids = np.concatenate([self._ids[:n], trie.chars[path]])
        if self.board_input:  # the move's characters read the current position
            self._keys = np.concatenate([self._keys[:n], np.full(len(path), self._ply_keys[-1])])
        self._logits = np.concatenate([self._logits[:n], rows[path + 1].astype(np.float32)])

    # -- the paper's protocol -----------------------------------------------------------------

    def _paper(
        self, board: chess.Board, text: str, trie: MoveTrie, temperature: float,
        rng: np.random.Generator,
    ) -> tuple[chess.Move | None, list[str], int]:
        """Up to PAPER_ATTEMPTS unconstrained samples of up to PAPER_MAX_CHARS characters from
        the prompt (for black without its trailing space: the model writes it), each cut at the
        first ``;`` or whitespace after the move.

        Returns the legal move written (None when no attempt gave one), the texts of the
        attempts, and the tokens run."""
        n = len(text) - 1 if text.endswith(" ") else len(text)
        allowed = set(trie.moves)
        attempts: list[str] = []
        nodes = 0
        for _ in range(PAPER_ATTEMPTS):
            generated, used = self._generate(n, temperature, rng)
            nodes += used
            attempts.append(generated)
            move = _parse_generated(board, generated)
            if move is not None and move in allowed:
                return move, attempts, nodes
            if temperature == 0:  # greedy: every attempt would write the same text
                attempts += [generated] * (PAPER_ATTEMPTS - len(attempts))
                break
        return None, attempts, nodes

    def _generate(self, n: int, temperature: float, rng: np.random.Generator) -> tuple[str, int]:
        """Characters sampled after the first ``n`` cached tokens, leaving the cache as it was
        (the positions they borrow are restored)."""
        self._reserve(n + PAPER_MAX_CHARS)
        borrowed = self._cache[..., n : n + PAPER_MAX_CHARS, :].copy()
        logits = self._logits[n - 1]
        out: list[int] = []
        used = 0
        try:
            for i in range(PAPER_MAX_CHARS):
                x = logits.astype(np.float64)
                c = int(np.argmax(x)) if temperature == 0 else _sample_index(
                    softmax(x / temperature), rng
                )
                out.append(c)
                written = decode(out)
                if ";" in written or (written.strip() and written[-1].isspace()):
                    break
                if i + 1 < PAPER_MAX_CHARS:
                    step, new_kv = self._run(
                        np.array([c], np.int64), np.array([n + i], np.int64), n + i,
                        np.ones((1, 1), bool),
                    )
                    self._cache[..., n + i, :] = new_kv[..., 0, :]
                    logits = step[0]
                    used += 1
        finally:
            self._cache[..., n : n + PAPER_MAX_CHARS, :] = borrowed
        return decode(out), used


def _parse_generated(board: chess.Board, text: str) -> chess.Move | None:
    """The move in a generated text: its first word before any ``;``, move number removed."""
    words = text.split(";")[0].split()
    if not words:
        return None
    word = words[0].rsplit(".", 1)[-1]
    try:
        move = board.parse_san(word)
    except ValueError:
        return None
    return move if move and board.is_legal(move) else None
