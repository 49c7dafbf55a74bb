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

import contextlib
import ctypes
import io
import json
import math
import os
import platform
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import chess
import numpy as np

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
# The ONNX interface this engine reads (docs/onnx-model.md); `transcend upgrade-model` converts
# a file of format 1 (one stacked cache in, the whole extended cache out).
MODEL_FORMAT = "2"
# `coreml` (macOS) is a choice, never picked by `auto`: it has not been measured against the CPU.
DEVICES = ("auto", "cpu", "cuda", "tensorrt", "coreml")
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


class ModelError(ValueError):
    """A model file that is missing, unreadable or not a chess character model."""


def cache_names(n_layer: int) -> list[str]:
    """The model's cache inputs, in order: each layer's keys, then its values."""
    return [f"past_{kind}_{layer}" for layer in range(n_layer) for kind in ("key", "value")]


def cache_feed(cache: np.ndarray) -> dict[str, np.ndarray]:
    """The cache inputs from a buffer shaped like the output ``new_kv``, (n_layer, 2, B,
    n_head, P, head_dim): each layer's keys or values are a contiguous view, passed uncopied."""
    return {name: cache[i // 2, i % 2] for i, name in enumerate(cache_names(len(cache)))}


def default_model_path() -> Path:
    """The bundled model, ``models/default.onnx`` inside the installed package."""
    return Path(str(resources.files("transcend.models"))) / "default.onnx"


@dataclass
class ModelInfo:
    """What the engine knows about a model: its metadata and where it runs."""

    path: Path
    block_size: int
    n_layer: int
    n_head: int
    head_dim: int
    n_params: int | None = None
    max_rating: int | None = None
    # (temperature, elo) points written by `transcend sweep`, sorted by temperature.
    calibration: list[tuple[float, float]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    provider: str = ""
    device_note: str = ""  # why the requested device was not used, when it was not


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


# ---------------------------------------------------------------------------------------------
# Model file and session


def _read_varint(fh: io.BufferedReader) -> int:
    shift = result = 0
    while True:
        byte = fh.read(1)
        if not byte:
            raise EOFError
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _parse_entry(data: bytes) -> tuple[str, str]:
    """A StringStringEntryProto: field 1 key, field 2 value."""
    fh = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    out = {1: "", 2: ""}
    while fh.peek(1):
        tag = _read_varint(fh)
        if tag & 7 != 2:
            raise ValueError("bad metadata entry")
        out[tag >> 3] = fh.read(_read_varint(fh)).decode("utf-8")
    return out[1], out[2]


def read_metadata(path: Path) -> dict[str, str]:
    """The ``custom_metadata_map`` of an ONNX file, read without loading the graph.

    Skims the top-level protobuf fields and seeks past the rest, so it takes milliseconds even
    for a large model: the engine answers ``uci`` (whose options depend on the metadata) at once.
    """
    meta: dict[str, str] = {}
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            while fh.tell() < size:
                tag = _read_varint(fh)  # type: ignore[arg-type]
                number, wire = tag >> 3, tag & 7
                if wire == 0:
                    _read_varint(fh)  # type: ignore[arg-type]
                elif wire == 1:
                    fh.seek(8, os.SEEK_CUR)
                elif wire == 5:
                    fh.seek(4, os.SEEK_CUR)
                elif wire == 2:
                    length = _read_varint(fh)  # type: ignore[arg-type]
                    if number == 14:  # ModelProto.metadata_props
                        key, value = _parse_entry(fh.read(length))
                        meta[key] = value
                    else:
                        fh.seek(length, os.SEEK_CUR)
                else:
                    raise ValueError(f"wire type {wire}")
                if fh.tell() > size:
                    raise EOFError
    except (EOFError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not a valid ONNX file ({exc or 'truncated'})") from None
    return meta


# What older exports wrote for a field they did not know (Python's str(None)): read as absent.
ABSENT_VALUES = ("", "None")


def optional_field(meta: dict[str, str], key: str) -> str | None:
    """A metadata value that may be missing; an empty or ``"None"`` value counts as missing."""
    value = meta.get(key)
    return None if value is None or value.strip() in ABSENT_VALUES else value


def _optional_number(meta: dict[str, str], key: str, path: Path) -> float | None:
    value = optional_field(meta, key)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ModelError(f"{path} has a bad {key} in its metadata: {value!r}")
    return number


def _whole(number: float | None) -> int | None:
    return None if number is None else int(number)


def _required_int(meta: dict[str, str], key: str, path: Path) -> int:
    number = _optional_number(meta, key, path)
    if number is None:
        raise ModelError(f"{path} has incomplete metadata: no {key} "
                         f"(export it again with `transcend export`)")
    if not number.is_integer() or number < 1:
        raise ModelError(f"{path} has a bad {key} in its metadata: {meta[key]!r}")
    return int(number)


def read_model_info(path: str | Path) -> ModelInfo:
    """Metadata of a model file, checked: it must be a transcend model with our vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no model file at {path}")
    meta = read_metadata(path)
    if "vocab" not in meta:
        raise ModelError(f"{path} has no transcend metadata (make it with `transcend export`)")
    if meta["vocab"] != VOCAB:
        raise ModelError(f"{path} has vocabulary {meta['vocab']!r}, the engine needs {VOCAB!r}")
    version = meta.get("transcend_format", "")
    if version == "1":
        raise ModelError(f"{path} is in model format 1; this engine reads format {MODEL_FORMAT}: "
                         f"convert it with `transcend upgrade-model {path}`")
    if version != MODEL_FORMAT:
        raise ModelError(f"{path} is in model format {version!r}; this engine reads format "
                         f"{MODEL_FORMAT} (a newer transcend may read it)")
    info = ModelInfo(
        path=path,
        block_size=_required_int(meta, "block_size", path),
        n_layer=_required_int(meta, "n_layer", path),
        n_head=_required_int(meta, "n_head", path),
        head_dim=_required_int(meta, "head_dim", path),
        n_params=_whole(_optional_number(meta, "n_params", path)),
        max_rating=_whole(_optional_number(meta, "max_rating", path)),
        metadata=meta,
    )
    # `transcend sweep` writes its curve next to the model; the metadata copy wins.
    sidecar = path.with_name(path.stem + ".calibration.json")
    text = optional_field(meta, "calibration") or (sidecar.read_text() if sidecar.is_file() else "")
    if text:
        try:
            info.calibration = sorted(
                (float(p["temperature"]), float(p["elo"])) for p in json.loads(text)
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"bad Elo calibration for {path}: {exc}") from None
    return info


def device_choices() -> tuple[str, ...]:
    """The `Device` values offered on this machine: `coreml` only on macOS, where onnxruntime's
    wheels carry that provider (known without importing onnxruntime, so `uci` stays instant)."""
    return DEVICES if sys.platform == "darwin" else tuple(d for d in DEVICES if d != "coreml")


def gpu_build_available() -> bool:
    """Whether onnxruntime-gpu publishes wheels for this machine (x86_64 Windows and Linux)."""
    return sys.platform in ("linux", "win32") and platform.machine().lower() in ("x86_64", "amd64")


def _cuda_driver_note() -> str:
    """Empty when an NVIDIA driver is present, else why CUDA cannot run."""
    library = "nvcuda.dll" if os.name == "nt" else "libcuda.so.1"
    try:
        ctypes.CDLL(library)
    except OSError:
        return f"no NVIDIA driver found ({library})"
    return ""


def create_session(path: Path, device: str, threads: int) -> tuple[object, str, str]:
    """An onnxruntime session on ``device``; returns (session, provider, fallback note).

    ``auto`` and ``cuda`` use the GPU when it works and fall back to the CPU otherwise, with the
    reason in the note; a missing CUDA library never raises and never writes to stderr.
    """
    import onnxruntime as ort

    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle worker threads sleep instead of spinning: the engine shares the machine with its
    # opponent (and a GUI), where spinning made calls about 2x slower here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    wanted: list[str] = []
    note = ""
    if device == "coreml":
        if "CoreMLExecutionProvider" in available:
            wanted = ["CoreMLExecutionProvider"]
        else:
            note = "CoreMLExecutionProvider is not in this onnxruntime build (macOS only)"
    elif device in ("auto", "cuda", "tensorrt"):
        gpu = ["CUDAExecutionProvider"]
        if device == "tensorrt":
            gpu.insert(0, "TensorrtExecutionProvider")
        missing = [p for p in gpu if p not in available]
        if missing:
            hint = ("install onnxruntime-gpu" if gpu_build_available()
                    else "onnxruntime-gpu has no wheels for this platform")
            note = f"{missing[0]} is not in this onnxruntime build ({hint})"
        elif driver := _cuda_driver_note():
            note = driver
        else:
            wanted = gpu
    if wanted:
        ort.set_default_logger_severity(4)  # a failed provider is reported below, not on stderr
        try:
            if wanted[0] != "CoreMLExecutionProvider":
                with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                    ort.preload_dlls()  # CUDA libraries installed as pip packages
            session = ort.InferenceSession(
                str(path), options, providers=[*wanted, "CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            kind = "CoreML" if wanted[0] == "CoreMLExecutionProvider" else "GPU"
            session, note = None, f"{kind} session failed: {str(exc).splitlines()[0][:200]}"
        finally:
            ort.set_default_logger_severity(3)
        if session is not None:
            used = session.get_providers()[0]
            if used != "CPUExecutionProvider":
                return session, used, ""
            note = ("CoreML could not take the model" if wanted[0].startswith("CoreML")
                    else "CUDA libraries could not be loaded (needs CUDA 12 and cuDNN 9)")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{path} cannot be loaded: {str(exc).splitlines()[0][:300]}") from None
    return session, "CPUExecutionProvider", note if device != "cpu" else ""


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
        for move in stack[same:]:
            self._sans.append(replay.san_and_push(move))
        return list(self._sans), self._first_ply, self._root_is_start

    def prompt_text(self, board: chess.Board) -> str:
        """The text the model sees before the move to play in ``board``.

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
            return text
        step = self.shift_plies
        absolute = (first_ply // step + 1) * step
        end = first_ply + len(sans)
        while True:
            if absolute > end:
                absolute = end - (end % 2)
            k = absolute - first_ply
            text = prompt(sans[k:], absolute, game_start=False)
            if len(text) <= budget:
                return text
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
        self, ids: np.ndarray, positions: np.ndarray, cached: int, new_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and new keys and values of ``ids`` run after the first ``cached`` tokens of the
        cache, with ``new_mask`` saying which new tokens each new token attends to."""
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
                **cache_feed(cache),
            },
        )
        return logits[0], new_kv

    def text_logits(self, text: str) -> np.ndarray:
        """Next-character logits (T, vocab) of every character of ``text``, in one causal pass
        from an empty cache: the plain reading of the graph, leaving the engine's cache alone."""
        info = self.info
        ids = encode(text).astype(np.int64)[None]
        n = ids.shape[1]
        empty = np.zeros((info.n_layer, 2, 1, info.n_head, 0, info.head_dim), np.float32)
        logits, _ = self.session.run(None, {  # type: ignore[attr-defined]
            "input_ids": ids, "position_ids": np.arange(n)[None],
            "attention_mask": np.tril(np.ones((n, n), bool))[None], **cache_feed(empty),
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

    def _evaluate(self, text: str, trie: MoveTrie | None) -> tuple[np.ndarray, np.ndarray, int]:
        """Logit rows (row 0 after the prompt, row i + 1 after trie node i), the keys and
        values of the trie's nodes, and the number of tokens run. Caches the prompt."""
        ids = encode(text).astype(np.int64)
        n = len(ids)
        kept = _common_prefix(self._ids, ids)
        new = ids[kept:]
        nodes = trie.n if trie is not None else 0
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
        logits, new_kv = self._run(tokens, positions, kept, mask)
        self._reserve(n)
        self._cache[..., kept:n, :] = new_kv[..., : len(new), :]
        self._ids = ids
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
            text = self.prompt_text(board)
            self._evaluate(text, None)
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
            rows, _, _ = self._evaluate(self.prompt_text(board), trie)
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
            text = self.prompt_text(board)
            trie = self._trie(board, moves)
            if not trie.moves:
                raise ValueError("no legal move in this position")
            if mode == "token" and not distribution and (
                self.token_path == "steps"
                or (self.token_path == "auto" and steps_are_cheaper(trie, len(text)))
            ):
                return self._choose_steps(text, trie, temperature, rng.random())
            rows, tree_kv, nodes = self._evaluate(text, trie)
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

    def _choose_steps(self, text: str, trie: MoveTrie, temperature: float, u: float) -> Choice:
        """`token` sampling in one or two small calls. The first runs the new prompt characters
        and, as a tree, one node per distinct first character of the moves: its logits pick the
        first two characters. Only when several moves start with those two does a second call
        run their subtree. The cache keeps the prompt alone (the move's characters run with the
        next prompt)."""
        firsts = first_chars(trie)
        level = MoveTrie([], [VOCAB[c] for c in firsts])
        rows, _, nodes = self._evaluate(text, level)
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
