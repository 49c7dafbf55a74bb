"""ONNX export of a trained model (with a KV cache), and import of nanoGPT checkpoints.

The graph and its metadata are specified in ``docs/onnx-model.md``; the engine needs nothing else.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from transcend.engine.features import FEATURES_VERSION, ROWS, WIDTHS
from transcend.engine.files import write_atomic
from transcend.engine.model_file import (
    BOARD_INPUT_NAMES,
    MODEL_FORMAT,
    cache_feed,
    cache_names,
    optional_field,
)
from transcend.engine.transcript import VOCAB, VOCAB_SIZE
from transcend.training.model import GPT, ModelConfig

INPUT_NAMES = ["input_ids", "position_ids", "attention_mask"]
OUTPUT_NAMES = ["logits", "new_kv"]
PARITY_TOLERANCE = 1e-4


class CheckpointError(ValueError):
    """A checkpoint that cannot be turned into a model."""


class _CachedGraph(torch.nn.Module):
    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_ids, attention_mask, *rest):  # type: ignore[no-untyped-def]
        board = None
        if self.model.config.board_input:  # board_features and board_index come first
            board, rest = (rest[0], rest[1]), rest[2:]
        return self.model.forward_cached(input_ids, position_ids, attention_mask, list(rest),
                                         board)


def input_names(config: ModelConfig) -> list[str]:
    """The graph's inputs in order (docs/onnx-model.md)."""
    board = BOARD_INPUT_NAMES if config.board_input else []
    return INPUT_NAMES + board + cache_names(config.n_layer)


def load_checkpoint(path: Path) -> tuple[GPT, dict[str, Any]]:
    """A model from a ``ckpt.pt`` (ours or nanoGPT's), loaded without unpickling any object."""
    if path.is_dir():
        path = path / "ckpt.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is not a loadable checkpoint: {reason}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise CheckpointError(f"{path} is not a nanoGPT checkpoint (no 'model'/'model_args')")
    args = dict(ckpt["model_args"])
    if int(args.get("vocab_size", -1)) != VOCAB_SIZE:
        raise CheckpointError(
            f"{path} has vocab_size {args.get('vocab_size')}, but the chess transcript "
            f"vocabulary has {VOCAB_SIZE} characters; this is not a chess character model"
        )
    fields = ModelConfig.__dataclass_fields__
    config = ModelConfig(**{k: v for k, v in args.items() if k in fields})
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    # Old nanoGPT versions saved the causal mask as a buffer named attn.bias.
    state = {k: v for k, v in state.items() if not (k.endswith("attn.bias") and v.dim() == 4)}
    model = GPT(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or "transformer.wte.weight" not in state]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.eval()
    return model, ckpt


def metadata_for(model: GPT, ckpt: dict[str, Any]) -> dict[str, str]:
    """The self-description stored in the .onnx file."""
    data = ckpt.get("data") or {}
    meta = {
        "transcend_format": MODEL_FORMAT,
        "vocab": VOCAB,
        "block_size": str(model.config.block_size),
        "config": json.dumps(model.config.to_dict()),
        "n_params": str(model.num_params()),
        "n_layer": str(model.config.n_layer),
        "n_head": str(model.config.n_head),
        "head_dim": str(model.config.n_embd // model.config.n_head),
        "data": json.dumps(data),
        "training": json.dumps(ckpt.get("summary") or {}),
    }
    # Data without ratings (engine games) has none: the field is then left out, never "None".
    if data.get("max_rating") is not None:
        meta["max_rating"] = str(data["max_rating"])
    if model.config.board_input:
        meta["board_input"] = model.config.board_input
        meta["board_features_version"] = FEATURES_VERSION
    return meta


def _example_inputs(model: GPT, batch: int, past_len: int, new: int) -> tuple[torch.Tensor, ...]:
    c = model.config
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, c.vocab_size, (batch, new), generator=gen)
    pos = torch.arange(past_len, past_len + new).expand(batch, new).contiguous()
    mask = torch.ones(batch, new, past_len + new, dtype=torch.bool)
    mask[:, :, past_len:] = torch.tril(torch.ones(new, new, dtype=torch.bool))
    past = [torch.randn(batch, c.n_head, past_len, c.n_embd // c.n_head, generator=gen)
            for _ in cache_names(c.n_layer)]
    if c.board_input:
        return ids, pos, mask, *random_board(c, batch, 2, new, gen), *past
    return ids, pos, mask, *past


def random_board(config: ModelConfig, batch: int, positions: int, tokens: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Board-input features of ``positions`` random positions (any ids, padding included) and
    which of them each of ``tokens`` tokens is at."""
    kind = config.board_input
    features = torch.randint(0, ROWS[kind], (batch, positions, WIDTHS[kind]), generator=gen)
    return features, torch.randint(0, positions, (batch, tokens), generator=gen)


def export_onnx(model: GPT, out: Path, metadata: dict[str, str], fp16: bool = False) -> float:
    """Write the KV-cached graph to ``out``; returns the max logit difference against torch."""
    import onnx

    model = model.float().eval()
    graph = _CachedGraph(model)
    example = _example_inputs(model, batch=2, past_len=5, new=3)
    cache = cache_names(model.config.n_layer)
    dynamic = {
        "input_ids": {0: "batch", 1: "new"},
        "position_ids": {0: "batch", 1: "new"},
        "attention_mask": {0: "batch", 1: "new", 2: "total"},
        "board_features": {0: "batch", 1: "positions"},
        "board_index": {0: "batch", 1: "new"},
        **{name: {0: "batch", 2: "past"} for name in cache},
        "logits": {0: "batch", 1: "new"},
        "new_kv": {2: "batch", 4: "new"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        # The TorchScript-based exporter: it takes plain dynamic axes and gives a graph that
        # every onnxruntime provider runs; its deprecation notice is not for our users.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, example, str(raw), input_names=input_names(model.config),
                output_names=OUTPUT_NAMES,
                dynamic_axes={k: v for k, v in dynamic.items()
                              if k in input_names(model.config) + OUTPUT_NAMES},
                opset_version=17, dynamo=False,
            )
        proto = onnx.load(str(raw))
    if fp16:
        proto = _to_fp16(proto)
    for key, value in metadata.items():
        if optional_field(metadata, key) is None:  # e.g. an old file's "None", upgraded
            continue
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if fp16:
        entry = proto.metadata_props.add()
        entry.key, entry.value = "dtype", "float16"
    write_atomic(out, proto.SerializeToString())
    if fp16:  # compare with the weights the file really holds
        model = copy.deepcopy(model)
        with torch.no_grad():
            for p in model.parameters():
                if p.numel() >= 1024:
                    p.copy_(p.half().float())
    return verify_parity(model, out)


def _to_fp16(proto: Any) -> Any:
    """Store large weights in float16, cast back to float32 inside the graph.

    The file halves in size while every provider computes in float32 as before.
    """
    from onnx import helper, numpy_helper

    casts = []
    for init in proto.graph.initializer:
        if init.data_type == onnx_float32() and int(np.prod(init.dims)) >= 1024:
            name = init.name
            half = numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(half, name + "_fp16"))
            casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=onnx_float32()))
    for node in reversed(casts):
        proto.graph.node.insert(0, node)
    return proto


def onnx_float32() -> int:
    from onnx import TensorProto

    return TensorProto.FLOAT


def verify_parity(model: GPT, path: Path, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max |logit difference| between onnxruntime and torch, in one pass and token by token."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    c = model.config
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for length in (1, 7, 40):
        ids = torch.randint(0, c.vocab_size, (2, length), generator=gen)
        board = random_board(c, 2, 1 + length // 4, length, gen) if c.board_input else None
        with torch.no_grad():
            expected = model(ids, board).numpy()

        def board_feed(t: slice, board: tuple[torch.Tensor, ...] | None = board
                       ) -> dict[str, np.ndarray]:
            """The board inputs of the tokens in ``t``: every position, their rows."""
            if board is None:
                return {}
            return {"board_features": board[0].numpy(), "board_index": board[1][:, t].numpy()}

        shape = (c.n_layer, 2, 2, c.n_head, 0, c.n_embd // c.n_head)
        pos = np.broadcast_to(np.arange(length), (2, length)).astype(np.int64)
        mask = np.broadcast_to(np.tril(np.ones((length, length), bool)), (2, length, length))
        logits, _ = session.run(None, {"input_ids": ids.numpy(), "position_ids": pos,
                                       "attention_mask": mask.copy(),
                                       **board_feed(slice(None)),
                                       **cache_feed(np.zeros(shape, np.float32))})
        worst = max(worst, float(np.abs(logits - expected).max()))
        # The same prefix again, one token at a time through a cache buffer of spare capacity
        # whose unused positions hold noise: the mask alone must keep them out.
        rng = np.random.default_rng(1)
        cache = rng.normal(size=(*shape[:4], length + 3, shape[5])).astype(np.float32)
        for t in range(length):
            step_mask = np.zeros((2, 1, length + 4), bool)
            step_mask[:, :, :t] = step_mask[:, :, -1] = True
            logits, new = session.run(None, {
                "input_ids": ids[:, t:t + 1].numpy(), "position_ids": np.full((2, 1), t, np.int64),
                "attention_mask": step_mask, **board_feed(slice(t, t + 1)),
                **cache_feed(cache)})
            cache[..., t, :] = new[..., 0, :]
            worst = max(worst, float(np.abs(logits[:, 0] - expected[:, t]).max()))
    if worst > tolerance:
        raise RuntimeError(f"ONNX export differs from torch by {worst:.2e} (> {tolerance:g})")
    return worst


@click.command("export")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--fp16", is_flag=True, help="Store weights in float16 (half the file size).")
def export_command(source: Path, out: Path, fp16: bool) -> None:
    """Export a training run (its ckpt.pt) or a checkpoint file to ONNX."""
    model, ckpt = load_checkpoint(source)
    diff = export_onnx(model, out, metadata_for(model, ckpt), fp16=fp16)
    click.echo(f"wrote {out} ({model.num_params():,} parameters, parity {diff:.1e})")


@click.command("import-nanogpt")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--fp16", is_flag=True, help="Store weights in float16 (half the file size).")
def import_command(checkpoint: Path, out: Path, fp16: bool) -> None:
    """Convert a nanoGPT-format chess checkpoint (the paper's or Karvonen's) to ONNX."""
    model, ckpt = load_checkpoint(checkpoint)
    ckpt.setdefault("data", {"source": f"nanoGPT checkpoint {checkpoint.name}"})
    diff = export_onnx(model, out, metadata_for(model, ckpt), fp16=fp16)
    click.echo(f"wrote {out} ({model.num_params():,} parameters, parity {diff:.1e})")
