"""The model file: its metadata, what the engine knows of it, and the onnxruntime session.

Read without torch; ``transcend export`` writes what is read here (``docs/onnx-model.md``).
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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from transcend.engine.features import FEATURE_SETS, FEATURES_VERSION
from transcend.engine.transcript import VOCAB

# The ONNX interface this engine reads (docs/onnx-model.md); `transcend upgrade-model` converts
# a file of format 1 (one stacked cache in, the whole extended cache out).
MODEL_FORMAT = "2"
# `coreml` (macOS) is a choice, never picked by `auto`: it has not been measured against the CPU.
DEVICES = ("auto", "cpu", "cuda", "tensorrt", "coreml")
# A board-input model's extra inputs, after attention_mask: the positions' feature ids and, for
# each new token, which of those positions it is at.
BOARD_INPUT_NAMES = ["board_features", "board_index"]


class ModelError(ValueError):
    """A model file that is missing, unreadable or not a chess character model."""


def cache_names(n_layer: int) -> list[str]:
    """The model's cache inputs, in order: each layer's keys, then its values."""
    return [f"past_{kind}_{layer}" for layer in range(n_layer) for kind in ("key", "value")]


def cache_feed(cache: np.ndarray) -> dict[str, np.ndarray]:
    """The cache inputs from a buffer shaped like the output ``new_kv``, (n_layer, 2, B,
    n_head, P, head_dim): each layer's keys or values are a contiguous view, passed uncopied."""
    return {name: cache[i // 2, i % 2] for i, name in enumerate(cache_names(len(cache)))}


def models_folder() -> Path:
    """Where the bundled models are: ``models/`` inside the installed package."""
    return Path(str(resources.files("transcend.models")))


def default_model_path() -> Path:
    """The bundled model played when none is named, ``models/default.onnx``."""
    return models_folder() / "default.onnx"


def bundled_models() -> dict[str, Path]:
    """The bundled models by name (the file's stem), in name order."""
    return {path.stem: path for path in sorted(models_folder().glob("*.onnx"))}


def resolve_model(text: str | Path) -> Path:
    """The model a user names: an existing file as is, else the bundled model of that name
    (``paper`` or ``paper.onnx``); ModelError (one line) naming the bundled ones otherwise."""
    path = Path(text).expanduser()
    if path.is_file():
        return path
    bundled = bundled_models()
    found = bundled.get(str(text).removesuffix(".onnx"))
    if found is None:
        names = ", ".join(bundled) or "none"
        raise ModelError(f"no model {str(text)!r}: not a file, and the bundled models are {names}")
    return found


def click_model(ctx: object, param: object, value: str | None) -> Path | None:
    """A click callback for a ``--model`` option: the model it names, or a one-line error."""
    import click  # here: the engine itself starts without click

    try:
        return None if value is None else resolve_model(value)
    except ModelError as exc:
        error = click.ClickException(str(exc))  # not BadParameter: no usage block around it
        error.exit_code = 2
        raise error from None


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
    # The feature set the model reads at each character (engine/features.py), None for none.
    board_input: str | None = None


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


def _board_input(meta: dict[str, str], path: Path) -> str | None:
    """The model's board input, checked: a feature set or version this engine does not compute
    would feed the model ids it was not trained on."""
    kind = optional_field(meta, "board_input")
    if kind is None:
        return None
    version = meta.get("board_features_version", "")
    if kind not in FEATURE_SETS or version != FEATURES_VERSION:
        raise ModelError(f"{path} reads board input {kind!r} (features version {version!r}); "
                         f"this engine computes {', '.join(FEATURE_SETS)} at version "
                         f"{FEATURES_VERSION} (a newer transcend may read it)")
    return kind


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
        board_input=_board_input(meta, path),
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
