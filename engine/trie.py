"""The legal moves of a position as a tree of characters, and the move probabilities it gives.

A move's text is its SAN followed by a terminator (``" "`` or ``";"``). The SANs of the legal moves
form a tree (a trie) whose nodes are their distinct prefixes; run after the prompt with a
tree-shaped attention mask, one model call gives the logits after every node, from which every
move's probability under `token` or `move` sampling is exact.
"""

from __future__ import annotations

import chess
import numpy as np

from transcend.engine.transcript import MOVE_TERMINATORS, STOI, VOCAB_SIZE

_END = VOCAB_SIZE  # column of the "move complete" pseudo-character in the score tables
_TERMINATOR_IDS = [STOI[c] for c in MOVE_TERMINATORS]

class MoveTrie:
    """The legal moves' SANs as a tree of characters; node i stands for the prefix that ends
    with ``chars[i]``, and parents come before their children."""

    def __init__(self, moves: list[chess.Move], sans: list[str]) -> None:
        self.moves = moves
        self.sans = sans
        index: dict[str, int] = {}
        chars: list[int] = []
        parent: list[int] = []
        depth: list[int] = []
        paths: list[list[int]] = []
        for san in sans:
            path = []
            for d in range(1, len(san) + 1):
                prefix = san[:d]
                node = index.get(prefix)
                if node is None:
                    node = index[prefix] = len(chars)
                    chars.append(STOI[san[d - 1]])
                    parent.append(path[-1] if path else -1)
                    depth.append(d)
                path.append(node)
            paths.append(path)
        n = len(chars)
        self.n = n
        self.chars = np.array(chars, dtype=np.int64)
        self.parent = np.array(parent, dtype=np.int64)
        self.depth = np.array(depth, dtype=np.int64)
        self.end_node = np.array([p[-1] for p in paths], dtype=np.int64)
        width = max((len(p) for p in paths), default=1)
        # Padded with n: the extra slot of the per-node tables is zero.
        self.paths = np.full((len(paths), width), n, dtype=np.int64)
        for m, path in enumerate(paths):
            self.paths[m, : len(path)] = path
        # Each node sees itself and its ancestors: walk up the parent links, one level a step.
        self.ancestors = np.eye(n, dtype=bool)
        rows = np.arange(n)
        up = self.parent.copy()
        while (alive := up >= 0).any():
            self.ancestors[rows[alive], up[alive]] = True
            up[alive] = self.parent[up[alive]]
        # Row of the score table that holds each node's parent's logits (0 = the prompt's).
        self.parent_row = self.parent + 1
        self.end_row = self.end_node + 1
        # Depth-first order of the moves, a finished move before its continuations and children
        # by character id: sampling with one uniform number in this order can stop at any node
        # (see `token_steps`), so both ways of sampling pick the same move for the same number.
        self.order = np.array(sorted(range(len(sans)), key=lambda m: [STOI[c] for c in sans[m]]),
                              dtype=np.int64)


def _masked_logsumexp(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    masked = np.where(mask, scores, -np.inf)
    top = masked.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (np.log(np.exp(masked - top).sum(axis=1, keepdims=True)) + top)[:, 0]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def token_log_probs(rows: np.ndarray, trie: MoveTrie, temperature: float) -> np.ndarray:
    """Log-probability of each move under `token` sampling at ``temperature`` > 0.

    ``rows``: (n + 1, vocab) logits; row 0 after the prompt, row i + 1 after trie node i. At
    each node the tempered softmax is restricted to the characters that continue a legal move,
    plus "end" (a space or ``;``) where a SAN is complete, and renormalised.
    """
    scaled = rows.astype(np.float64) / temperature
    table = np.empty((rows.shape[0], VOCAB_SIZE + 1))
    table[:, :VOCAB_SIZE] = scaled
    table[:, _END] = np.logaddexp(scaled[:, _TERMINATOR_IDS[0]], scaled[:, _TERMINATOR_IDS[1]])
    allowed = np.zeros(table.shape, dtype=bool)
    allowed[trie.parent_row, trie.chars] = True
    allowed[trie.end_row, _END] = True
    norm = _masked_logsumexp(table, allowed)
    edge = np.zeros(trie.n + 1)
    edge[: trie.n] = table[trie.parent_row, trie.chars] - norm[trie.parent_row]
    end = table[trie.end_row, _END] - norm[trie.end_row]
    return edge[trie.paths].sum(axis=1) + end


def move_log_probs(rows: np.ndarray, trie: MoveTrie) -> np.ndarray:
    """The model's own (untempered, unrestricted) log-probability of each move's full text."""
    x = rows.astype(np.float64)
    logp = x - np.logaddexp.reduce(x, axis=1, keepdims=True)
    end = np.logaddexp(logp[:, _TERMINATOR_IDS[0]], logp[:, _TERMINATOR_IDS[1]])
    edge = np.zeros(trie.n + 1)
    edge[: trie.n] = logp[trie.parent_row, trie.chars]
    return edge[trie.paths].sum(axis=1) + end[trie.end_row]


def legal_sans(board: chess.Board, moves: list[chess.Move]) -> list[str]:
    """SAN of each of ``moves`` (legal in ``board``), as ``board.san`` writes it.

    Written for all moves of a position at once: the disambiguation candidates are grouped in
    one pass and checks come from ``gives_check``, so it is several times faster than calling
    ``board.san`` per move, which plays every move to look for check.
    """
    rivals: dict[tuple[int, int], int] = {}  # (piece type, target) -> mask of origin squares
    for move in board.legal_moves:
        piece = board.piece_type_at(move.from_square)
        if piece != chess.PAWN and piece != chess.KING:
            key = (piece or 0, move.to_square)
            rivals[key] = rivals.get(key, 0) | chess.BB_SQUARES[move.from_square]
    king = board.king(not board.turn)
    sans = []
    for move in moves:
        frm, to = move.from_square, move.to_square
        if board.is_castling(move):
            san = "O-O-O" if chess.square_file(to) < chess.square_file(frm) else "O-O"
        else:
            piece = board.piece_type_at(frm) or chess.PAWN
            capture = board.is_capture(move)
            if piece == chess.PAWN:
                san = chess.FILE_NAMES[chess.square_file(frm)] + "x" if capture else ""
            else:
                san = chess.piece_symbol(piece).upper()
                others = rivals.get((piece, to), 0) & ~chess.BB_SQUARES[frm]
                if others:
                    file_needed = bool(others & chess.BB_RANKS[chess.square_rank(frm)])
                    rank_needed = bool(others & chess.BB_FILES[chess.square_file(frm)])
                    if file_needed or not rank_needed:
                        san += chess.FILE_NAMES[chess.square_file(frm)]
                    if rank_needed:
                        san += chess.RANK_NAMES[chess.square_rank(frm)]
                if capture:
                    san += "x"
            san += chess.SQUARE_NAMES[to]
            if move.promotion:
                san += "=" + chess.piece_symbol(move.promotion).upper()
        if _gives_check(board, move, king):
            board.push(move)
            mate = not any(board.generate_legal_moves())
            board.pop()
            san += "#" if mate else "+"
        sans.append(san)
    return sans


def _gives_check(board: chess.Board, move: chess.Move, king: int | None) -> bool:
    """``board.gives_check`` without playing the move, for ordinary moves (the rest ask it)."""
    if king is None or move.promotion or board.is_castling(move) or board.is_en_passant(move):
        return board.gives_check(move)
    frm, to = move.from_square, move.to_square
    occupied = (board.occupied & ~chess.BB_SQUARES[frm]) | chess.BB_SQUARES[to]
    # A piece left behind that now sees the king: a discovered check.
    if board.attackers_mask(board.turn, king, occupied) & ~chess.BB_SQUARES[frm]:
        return True
    piece = board.piece_type_at(frm)
    if piece == chess.PAWN:
        attacks = chess.BB_PAWN_ATTACKS[board.turn][to]
    elif piece == chess.KNIGHT:
        attacks = chess.BB_KNIGHT_ATTACKS[to]
    else:
        attacks = 0
        if piece in (chess.BISHOP, chess.QUEEN):
            attacks |= chess.BB_DIAG_ATTACKS[to][chess.BB_DIAG_MASKS[to] & occupied]
        if piece in (chess.ROOK, chess.QUEEN):
            attacks |= chess.BB_RANK_ATTACKS[to][chess.BB_RANK_MASKS[to] & occupied]
            attacks |= chess.BB_FILE_ATTACKS[to][chess.BB_FILE_MASKS[to] & occupied]
    return bool(attacks & chess.BB_SQUARES[king])
