"""``transcend data prepare``: PGN files to the token streams the trainer reads.

Lichess PGN already holds every move in SAN, so a transcript is cut out of the text itself
(:mod:`transcend.training.data.pgn_text`), a whole chunk of games at once, and the white move
numbers are written back per game. No board is replayed unless ``--validate`` asks for it,
which is what makes this tens of times faster than ``chess.pgn.read_game``.

Outputs in ``--out DIR`` (see ``docs/transcript-format.md``):

- ``train.bin`` / ``val.bin``: the stream ``;game;game...`` as uint8 token ids (``numpy.memmap``);
  no ``val.bin`` when no game went to validation (``--val-fraction 0``, or a single game);
- ``manifest.json``: inputs, filters, games kept and skipped by reason, tokens, split, ratings.

A game goes to ``val.bin`` when a hash of its transcript falls below ``--val-fraction``, so the
split does not depend on the order of inputs, the chunking or the number of workers, and copies
of one game always land on the same side. When that leaves validation empty (a few dozen games),
the lowest-hashed game of at least 64 characters goes there with its copies, so that any two
distinct games give a validation set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import chess

from transcend.engine.files import write_atomic
from transcend.engine.transcript import GAME_START, VOCAB, encode
from transcend.training.data.pgn_text import (
    RESULTS,
    clean_movetexts,
    normalise,
    replay,
    separators_for,
    split_games,
)

FORMAT = "transcend-transcript-1"
CHUNK_BYTES = 1 << 20
READ_BYTES = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Why a game was left out; the manifest counts each of them (zero counts included).
SKIP_REASONS = (
    "unfinished",  # result `*`
    "setup_position",  # a FEN header: the game did not start from the standard position
    "variant",  # a Variant header other than standard chess
    "no_rating",  # an Elo filter is set and a player has no numeric rating
    "rating_above_max",
    "rating_below_min",
    "no_time_control",  # --min-base-time is set and TimeControl is missing or unreadable
    "base_time_below_min",
    "truncated",  # the movetext has no result at its end: a cut-off file
    "bad_san",  # a token that is not SAN, or a character outside the vocabulary
    "no_moves",
    "illegal_move",  # --validate only
    "not_pgn",  # text outside any game that is not a game either (e.g. binary junk)
)

# A tag pair line; python-chess's tag-name characters.
_TAG_LINE = re.compile(rb'\[[A-Za-z0-9][A-Za-z0-9_+#=:-]*[ \t]+"')
_WANTED_TAG = re.compile(
    rb'\[(Result|WhiteElo|BlackElo|TimeControl|FEN|SetUp|Variant)[ \t]+"([^"\n]*)"'
)
_STANDARD_VARIANTS = frozenset((b"standard", b"chess", b""))
_STANDARD_FEN = chess.STARTING_FEN.encode()


class InputError(ValueError):
    """An input that cannot be read to its end (a missing file, a broken zstd stream)."""


# A game held out so that validation is not empty must be long enough for the trainer's
# shortest validation window (16 tokens); a miniature would stop training instead.
HELD_OUT_MIN_CHARS = 64


class NoGamesKept(ValueError):
    """Not one game survived: nothing was written."""


@dataclass(frozen=True)
class Filters:
    """Which games to keep and how to split them."""

    max_elo: int | None = None
    min_elo: int | None = None
    min_base_time: float | None = None
    validate: bool = False
    val_fraction: float = 0.05

    def describe(self) -> dict[str, Any]:
        return {
            "max_elo": self.max_elo,
            "min_elo": self.min_elo,
            "min_base_time": self.min_base_time,
            "validate": self.validate,
            "always_skipped": ["unfinished", "setup_position", "variant"],
        }


@dataclass
class ChunkResult:
    """What one chunk of whole games turned into: token ids and counts."""

    train: bytes = b""
    val: bytes = b""
    seen: int = 0
    kept_train: int = 0
    kept_val: int = 0
    plies: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    ratings: tuple[int, int] | None = None  # (lowest, highest) among kept games
    ratings_seen: tuple[int, int] | None = None  # among all games read
    # The training game with the lowest split hash (of those at least HELD_OUT_MIN_CHARS long),
    # as (hash, token ids with its ';'): it goes
    # to validation when no game's hash fell below the threshold (see _hold_out).
    lowest_train: tuple[int, bytes] | None = None


def _span(values: list[int | None]) -> tuple[int, int] | None:
    known = [v for v in values if v is not None]
    return (min(known), max(known)) if known else None


def _merge(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


# ---------------------------------------------------------------------------------------------
# Per-game rules


def base_time(time_control: bytes | str | None) -> float | None:
    """Seconds on the clock at the start from a PGN ``TimeControl``; inf for none (``-``).

    Understands ``180+2``, ``40/7200:3600``, ``*60`` (sandclock) and ``300``; None for ``?``,
    a missing tag or anything unreadable.
    """
    if time_control is None:
        return None
    if isinstance(time_control, bytes):
        time_control = time_control.decode("ascii", "replace")
    text = time_control.strip()
    if text == "-":
        return math.inf
    first = text.split(":")[0].lstrip("*")
    if "/" in first:
        first = first.split("/", 1)[1]
    try:
        return float(first.split("+")[0])
    except ValueError:
        return None


def _rating(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def header_verdict(
    tags: dict[bytes, bytes], f: Filters
) -> tuple[str | None, int | None, int | None]:
    """(skip reason or None, white rating, black rating) from a game's headers alone."""
    white, black = _rating(tags.get(b"WhiteElo")), _rating(tags.get(b"BlackElo"))
    if tags.get(b"Result") == b"*":
        return "unfinished", white, black
    fen = tags.get(b"FEN")
    if fen is None:
        if tags.get(b"SetUp") == b"1":
            return "setup_position", white, black
    elif fen.strip() != _STANDARD_FEN:
        return "setup_position", white, black
    variant = tags.get(b"Variant")
    if variant is not None and variant.strip().lower() not in _STANDARD_VARIANTS:
        return "variant", white, black
    if f.max_elo is not None or f.min_elo is not None:
        if white is None or black is None:
            return "no_rating", white, black
        if f.max_elo is not None and max(white, black) > f.max_elo:
            return "rating_above_max", white, black
        if f.min_elo is not None and min(white, black) < f.min_elo:
            return "rating_below_min", white, black
    if f.min_base_time is not None:
        seconds = base_time(tags.get(b"TimeControl"))
        if seconds is None:
            return "no_time_control", white, black
        if seconds < f.min_base_time:
            return "base_time_below_min", white, black
    return None, white, black


def process_chunk(chunk: bytes, f: Filters) -> ChunkResult:
    """Turn a chunk of whole PGN games into token ids for train and val, with counts."""
    out = ChunkResult()
    games = split_games(normalise(chunk))
    out.seen = len(games)
    survivors: list[tuple[bool, int | None, int | None]] = []
    bodies: list[bytes] = []
    skipped = out.skipped
    seen_ratings: list[int | None] = []
    for head, body in games:
        reason, white, black = header_verdict(dict(_WANTED_TAG.findall(head)), f)
        seen_ratings.append(white)
        seen_ratings.append(black)
        if reason is not None:
            skipped[reason] += 1
            continue
        survivors.append((not head, white, black))
        bodies.append(body)
    out.ratings_seen = _span(seen_ratings)
    if not bodies:
        return out
    threshold = int(f.val_fraction * 2**64)
    train: list[bytes] = []
    val: list[bytes] = []
    ratings: list[int | None] = []
    start = GAME_START.encode()
    blake2b = hashlib.blake2b
    lowest: tuple[int, bytes] | None = None
    token_lists, bad = clean_movetexts(bodies)
    for (headless, white, black), tokens in zip(survivors, token_lists, strict=True):
        reason = None
        if not tokens or tokens[-1] not in RESULTS:
            reason = "truncated"
        elif tokens[-1] == b"*":
            reason = "unfinished"
        else:
            tokens.pop()
            if not tokens:
                reason = "no_moves"
            elif not bad.isdisjoint(tokens):
                reason = "bad_san"
        if reason is None:
            n = len(tokens)
            parts: list[bytes] = [b""] * (2 * n)
            parts[0::2] = separators_for(n)[:n]
            parts[1::2] = tokens
            line = b"".join(parts)
            if f.validate:
                replayed = replay(tokens)
                if replayed is None:
                    reason = "illegal_move"
                else:
                    line = replayed.encode("ascii")
        if reason is not None:
            skipped["not_pgn" if headless and reason != "no_moves" else reason] += 1
            continue
        out.plies += len(tokens)
        rank = int.from_bytes(blake2b(line, digest_size=8).digest(), "big")
        if rank < threshold:
            val.append(start + line)
        else:
            train.append(start + line)
            if len(line) >= HELD_OUT_MIN_CHARS and (lowest is None or rank < lowest[0]):
                lowest = (rank, start + line)
        ratings.append(white)
        ratings.append(black)
    out.kept_train, out.kept_val = len(train), len(val)
    out.ratings = _span(ratings)
    if lowest is not None:
        out.lowest_train = (lowest[0], encode(lowest[1].decode("ascii")).tobytes())
    # Every character already passed the SAN pattern, so encoding cannot fail here.
    out.train = encode(b"".join(train).decode("ascii")).tobytes()
    out.val = encode(b"".join(val).decode("ascii")).tobytes()
    return out


# ---------------------------------------------------------------------------------------------
# Reading inputs


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a PGN file")
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None


def _blocks(fh: BinaryIO, read_bytes: int = READ_BYTES) -> Iterator[tuple[bytes, int]]:
    """(decompressed bytes, raw bytes consumed) of a PGN or zstd-compressed PGN stream.

    Compression is recognised by the zstd magic number, not the file name, so a compressed
    stream on stdin works too. Nothing is decompressed to disk.
    """
    head = fh.read(4)
    if head != ZSTD_MAGIC:
        if head:
            yield head, len(head)
        while raw := fh.read(read_bytes):
            yield raw, len(raw)
        return
    import zstandard

    # Frames written with `zstd --long` need a window above the default limit to decode.
    dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
    dobj = dctx.decompressobj()
    pending, consumed, in_frame = head, len(head), False
    while True:
        if not pending:
            # PGN compresses about 7:1; smaller reads keep the chunks near their target size.
            pending = fh.read(read_bytes // 8)
            if not pending:
                break
            consumed = len(pending)
        try:
            data = dobj.decompress(pending)
        except zstandard.ZstdError as exc:
            raise InputError(f"corrupt zstd data: {exc}") from None
        in_frame, pending = True, b""
        yield data, consumed
        consumed = 0
        if dobj.eof:
            # Concatenated frames: whatever follows this one starts the next.
            pending, in_frame = dobj.unused_data, False
            dobj = dctx.decompressobj()
    if in_frame:
        raise InputError("truncated zstd stream (the file ends inside a compressed frame)")


def last_game_start(buf: bytes) -> int:
    """Offset of the last tag line in ``buf`` that begins a game (0 when there is none).

    A game begins at a tag line whose previous line is blank or movetext; cutting there keeps
    every game whole, exactly as :func:`process_chunk` separates them.
    """
    pos = len(buf)
    while (pos := buf.rfind(b"\n[", 0, pos)) >= 0:
        prev = buf[buf.rfind(b"\n", 0, pos) + 1 : pos].strip()
        headerish = _TAG_LINE.match(prev) is not None or prev.startswith(b"%")
        if (not prev or not headerish) and _TAG_LINE.match(buf, pos + 1):
            return pos + 1
    return 0


def game_chunks(
    blocks: Iterator[tuple[bytes, int]], target: int, errors: list[str]
) -> Iterator[tuple[bytes, int]]:
    """(chunk of whole games of about ``target`` bytes, raw input bytes it took).

    A read error ends the input: it goes to ``errors`` and what was read before still comes out
    (a game cut off by it is then skipped as truncated). Text with no game start in 64 chunks'
    worth (binary junk, say) is passed on as it is rather than held in memory.
    """
    pieces: list[bytes] = []
    size = raw = 0
    check_at = target
    try:
        for data, consumed in blocks:
            pieces.append(data)
            size += len(data)
            raw += consumed
            if size < check_at:
                continue
            buf = b"".join(pieces)
            cut = last_game_start(buf)
            if cut == 0 and size >= 64 * target:
                cut = size
            if cut > 0:
                yield buf[:cut], raw
                buf, raw = buf[cut:], 0
            pieces, size = [buf], len(buf)
            # A long game (or junk) is searched again only after half a chunk more.
            check_at = max(target, size + target // 2)
    except InputError as exc:
        errors.append(str(exc))
    if size:
        yield b"".join(pieces), raw


# ---------------------------------------------------------------------------------------------
# Running it


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` with the permissions a plain open() would give it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


class _TempOutput:
    """A file written in pieces next to its final path and moved there only on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, tmp = _mkstemp(path)
        self.tmp = Path(tmp)
        self.fh = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.size += len(data)

    def finish(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Remove the temporary file; harmless after finish() or a second call."""
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back while something that needs cleaning up is created; a Ctrl-C that came
    meanwhile lands when the block ends (so it must end inside the try that cleans up)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; only the parent should react (and clean up).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ordered_results(
    chunks: Iterator[tuple[bytes, int]], f: Filters, workers: int
) -> Iterator[tuple[ChunkResult, int]]:
    """process_chunk over the chunks, in input order, with at most a few chunks in flight."""
    if workers <= 1:
        for chunk, raw in chunks:
            yield process_chunk(chunk, f), raw
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = None
    try:
        # A Ctrl-C while the pool starts would leave workers the interpreter waits for at exit.
        with _sigint_held():
            pool = ctx.Pool(workers, initializer=_ignore_sigint)
        # Bounded look-ahead: Pool.imap would read a whole 30 GB dump into memory ahead.
        pending: deque[tuple[Any, int]] = deque()
        for chunk, raw in chunks:
            pending.append((pool.apply_async(process_chunk, (chunk, f)), raw))
            if len(pending) >= 2 * workers:
                result, size = pending.popleft()
                yield result.get(), size
        while pending:
            result, size = pending.popleft()
            yield result.get(), size
        pool.close()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


@dataclass
class Totals:
    seen: int = 0
    kept_train: int = 0
    kept_val: int = 0
    plies: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    ratings: tuple[int, int] | None = None
    ratings_seen: tuple[int, int] | None = None
    lowest_train: tuple[int, bytes] | None = None

    def add(self, r: ChunkResult) -> None:
        self.seen += r.seen
        self.kept_train += r.kept_train
        self.kept_val += r.kept_val
        self.plies += r.plies
        self.skipped.update(r.skipped)
        self.ratings = _merge(self.ratings, r.ratings)
        self.ratings_seen = _merge(self.ratings_seen, r.ratings_seen)
        if r.lowest_train and (not self.lowest_train or r.lowest_train < self.lowest_train):
            self.lowest_train = r.lowest_train

    @property
    def kept(self) -> int:
        return self.kept_train + self.kept_val


def _hold_out(game: bytes, train: _TempOutput, val: _TempOutput, totals: Totals) -> int:
    """Move ``game`` (token ids) and its copies from training to validation; returns the games
    moved (0 when every training game is a copy of it: nothing would be left).

    The game is the lowest-hashed one long enough to evaluate on: the hash rule with its
    threshold raised just enough, so the split still does not depend on order or chunking. This
    runs only when no game fell below the threshold, which at the default 5% means a few dozen
    games at most: reading the whole train.bin back is cheap then.
    """
    train.fh.flush()
    data = train.tmp.read_bytes()
    sep = encode(GAME_START).tobytes()
    games = [sep + g for g in data.split(sep)[1:]]
    kept = [g for g in games if g != game]
    moved = len(games) - len(kept)
    if not kept:
        return 0
    train.fh.seek(0)
    train.fh.truncate()
    train.size = 0
    train.write(b"".join(kept))
    val.write(game * moved)
    totals.kept_train -= moved
    totals.kept_val += moved
    return moved


def prepare(
    inputs: list[str],
    out: Path,
    filters: Filters = Filters(),
    workers: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
    on_progress: Callable[[int, Totals], None] | None = None,
) -> dict[str, Any]:
    """Read ``inputs`` (paths, ``-`` for stdin), write ``out``/train.bin, val.bin and
    manifest.json, and return the manifest.

    Raises NoGamesKept (a ValueError) when not one game was kept, and then replaces nothing;
    otherwise the files are replaced manifest-last, so a manifest always describes the .bin
    files beside it. An input that breaks off (a truncated .zst) is noted in the manifest and
    what was read before the break is kept.
    """
    out.mkdir(parents=True, exist_ok=True)
    totals = Totals()
    input_rows: list[dict[str, Any]] = []
    temporary: list[_TempOutput] = []
    try:
        with _sigint_held():
            train = _TempOutput(out / "train.bin")
            temporary.append(train)
            val = _TempOutput(out / "val.bin")
            temporary.append(val)
        for path in inputs:
            errors: list[str] = []
            before = (totals.seen, totals.kept)
            raw_total = 0
            try:
                fh = _open(path)
            except InputError as exc:
                errors.append(str(exc).removeprefix(f"{path}: "))
                fh = None
            if fh is not None:
                try:
                    chunks = game_chunks(_blocks(fh), chunk_bytes, errors)
                    for result, raw in _ordered_results(chunks, filters, workers):
                        train.write(result.train)
                        val.write(result.val)
                        totals.add(result)
                        raw_total += raw
                        if on_progress is not None:
                            on_progress(raw, totals)
                except OSError as exc:
                    errors.append(f"read error: {exc.strerror or exc}")
                finally:
                    if fh is not sys.stdin.buffer:
                        fh.close()
            row: dict[str, Any] = {
                "path": path,
                "bytes": raw_total,
                "games": totals.seen - before[0],
                "kept": totals.kept - before[1],
            }
            if errors:
                row["error"] = "; ".join(errors)
            input_rows.append(row)
        held_out = 0
        if (totals.kept_val == 0 and totals.kept_train >= 2 and filters.val_fraction > 0
                and totals.lowest_train is not None):
            held_out = _hold_out(totals.lowest_train[1], train, val, totals)
        manifest = {
            "format": FORMAT,
            "vocab": VOCAB,
            "dtype": "uint8",
            # No val.bin when no game went to validation (the trainer then runs without one).
            "files": {"train": "train.bin", "val": "val.bin" if val.size else None},
            "inputs": input_rows,
            "filters": filters.describe(),
            "games": {
                "seen": totals.seen,
                "kept": totals.kept,
                "train": totals.kept_train,
                "val": totals.kept_val,
                "skipped": totals.seen - totals.kept,
            },
            "skipped": {reason: totals.skipped.get(reason, 0) for reason in SKIP_REASONS},
            "tokens": {"train": train.size, "val": val.size},
            "plies": totals.plies,
            "val_fraction": filters.val_fraction,
            "split": {
                "by": "game",
                "method": "blake2b-64 of the transcript < val_fraction * 2**64; when no game "
                          "is below, the game with the lowest hash (and its copies)",
                "val_fraction": filters.val_fraction,
                "lowest_hash_held_out": held_out,
                "no_validation": None if totals.kept_val else (
                    "--val-fraction 0" if filters.val_fraction == 0 else
                    "only one game kept" if totals.kept < 2 else
                    f"no game to hold out: every game of at least {HELD_OUT_MIN_CHARS} "
                    "characters is a copy of one (or there is none)"),
            },
            "rating_range": list(totals.ratings) if totals.ratings else None,
            "rating_range_seen": list(totals.ratings_seen) if totals.ratings_seen else None,
            "max_rating": totals.ratings[1] if totals.ratings else None,
        }
        if totals.kept == 0:
            problems = [f"{r['path']}: {r['error']}" for r in input_rows if "error" in r]
            skipped = ", ".join(f"{k} {v}" for k, v in manifest["skipped"].items() if v)
            raise NoGamesKept(
                f"no games kept from {totals.seen} read "
                f"({'; '.join([*problems, skipped or 'no games'])}); nothing written"
            )
        # Manifest last: a crash in between leaves no manifest rather than a stale one.
        (out / "manifest.json").unlink(missing_ok=True)
        train.finish()
        if val.size:
            val.finish()
        else:
            val.discard()
            (out / "val.bin").unlink(missing_ok=True)
        write_atomic(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        return manifest
    except BaseException:
        for output in temporary:
            output.discard()
        raise
