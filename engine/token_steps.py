"""`token` sampling character by character: the model runs only where a character is drawn.

Scoring every legal move (the whole tree of their characters in one call) gives the exact
distribution that MultiPV and the `move` mode need, but a sampled move needs far less: one call
runs the new prompt characters and one node per distinct first character, which gives the
logits for the first two characters; one more call, over the moves that share those two (a
small subtree, run as a tree like the whole one), is needed only when there are several. For a
large model this costs well under half of the one big call (`paper-50m`: 24 against 58 ms).

Both ways draw a single uniform number ``u`` and walk the moves in the trie's depth-first order
(:attr:`MoveTrie.order`): flat, as an inverse CDF over the moves' exact probabilities; here,
node by node, choosing the option whose share of the remaining mass holds ``u`` and rescaling
``u`` into it. The two give the same move for the same ``u``, so a seeded game plays the same
moves whichever way each move was sampled.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from transcend.engine.trie import _TERMINATOR_IDS, MoveTrie, softmax

# A model call costs about as much as CALL_COST_TOKENS new tokens (onnxruntime's per-call and
# per-layer overhead, and reading every weight once), a little more with a long cache; and each
# new token costs more with a long cache too (it attends to every cached one). Measured with
# `paper-50m` on 2 quiet cores: a call of t new tokens took about 11.7 + 0.52 t ms after 128
# cached tokens and 13 + 0.85 t ms after 1,000. The step-by-step path, which makes one call
# more, is taken when the tree nodes it skips cost more than that call.
CALL_COST_TOKENS = 22
CACHED_PER_CALL_TOKEN = 400  # a call costs one token's worth more per this many cached tokens
CACHED_PER_TOKEN_COST = 1600  # a new token costs this much more (x2) after this many cached


def sample_index(p: np.ndarray, u: float) -> int:
    """The index where ``u`` (uniform in [0, 1)) falls in the cumulative sum of ``p``."""
    cum = np.cumsum(p)
    return int(min(np.searchsorted(cum, u * cum[-1], side="right"), len(p) - 1))


def sample_in_order(p: np.ndarray, order: np.ndarray, u: float) -> int:
    """The index drawn by ``u`` from ``p`` laid out in ``order`` (a move's index in ``p``)."""
    return int(order[sample_index(p[order], u)])


def first_chars(trie: MoveTrie) -> list[int]:
    """The distinct first characters of the moves, by character id."""
    return sorted({int(c) for c in trie.chars[trie.parent < 0]})


def steps_are_cheaper(trie: MoveTrie, cached: int) -> bool:
    """Whether sampling step by step costs less than scoring the whole tree after ``cached``
    prompt tokens. It runs one node per first character, then at worst the largest subtree of
    the moves that share their first two characters, in one more call."""
    moves = Counter(san[:2] for san in trie.sans)
    prefixes: dict[str, set[str]] = {}
    for san in trie.sans:
        prefixes.setdefault(san[:2], set()).update(san[:d] for d in range(1, len(san) + 1))
    largest = max((len(p) for two, p in prefixes.items() if moves[two] > 1), default=0)
    call = ((CALL_COST_TOKENS + cached / CACHED_PER_CALL_TOKEN)
            / (1 + cached / CACHED_PER_TOKEN_COST))
    return trie.n - len(first_chars(trie)) - largest > (call if largest else 0)


def step(row: np.ndarray, chars: list[int], can_end: bool, temperature: float,
         u: float) -> tuple[int, float, float]:
    """One character of `token` sampling from the logits ``row``.

    The options are "end" (when a SAN is complete here) and then ``chars`` in id order, as in
    the depth-first order. Returns (option index, its probability, ``u`` rescaled into it).
    At temperature 0 the greedy rule: the best allowed character (the lowest id on a tie), and
    "end" only when strictly better.
    """
    x = row.astype(np.float64)
    options = len(chars) + can_end
    if options == 1:
        return 0, 1.0, u
    if temperature == 0:
        best = max(range(len(chars)), key=lambda k: (x[chars[k]], -chars[k]))
        if can_end and max(x[_TERMINATOR_IDS[0]], x[_TERMINATOR_IDS[1]]) > x[chars[best]]:
            return 0, 1.0, u
        return best + can_end, 1.0, u
    scores = x[chars] / temperature
    if can_end:
        end = np.logaddexp(x[_TERMINATOR_IDS[0]] / temperature, x[_TERMINATOR_IDS[1]] / temperature)
        scores = np.concatenate([[end], scores])
    q = softmax(scores)
    cum = np.cumsum(q)
    target = u * cum[-1]
    k = int(min(np.searchsorted(cum, target, side="right"), options - 1))
    below = cum[k - 1] if k else 0.0
    return k, float(q[k]), float(min(max((target - below) / q[k], 0.0), np.nextafter(1.0, 0.0)))


def walk(rows: np.ndarray, trie: MoveTrie, temperature: float, u: float) -> tuple[int, float]:
    """Sample down ``trie`` from its root, with ``rows[i + 1]`` the logits after node ``i``
    (row 0 after the prompt). Returns the move's index and its probability."""
    children: dict[int, list[int]] = {}
    for node in range(trie.n):
        children.setdefault(int(trie.parent[node]), []).append(node)
    complete = {int(node): m for m, node in enumerate(trie.end_node)}
    node, probability = -1, 1.0
    while True:
        kids = sorted(children.get(node, []), key=lambda i: int(trie.chars[i]))
        can_end = node in complete
        k, q, u = step(rows[node + 1], [int(trie.chars[i]) for i in kids], can_end,
                       temperature, u)
        probability *= q
        if can_end and k == 0:
            return complete[node], probability
        node = kids[k - can_end]
