"""Convert a model file of an older format to the format the engine reads.

Format 1 took the whole cache as one stacked input and returned it extended by the new tokens,
so every call copied the cache several times over (docs/onnx-model.md). The weights are the same
in every format: they are read back out of the file's graph into a :class:`GPT`, exported again,
and the new file is checked against the old one on the same inputs before it is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import torch

from transcend.engine.model_file import MODEL_FORMAT, ModelError, read_metadata
from transcend.training.export import PARITY_TOLERANCE, CheckpointError, export_onnx
from transcend.training.model import GPT, ModelConfig


def _constants(proto) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Every tensor the graph holds as a constant, by the names nodes use: initializers, and
    what Identity and Cast nodes (float16 weights are cast to float32) make of them."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("Identity", "Cast") and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def model_from_onnx(path: Path, meta: dict[str, str]) -> GPT:
    """The model whose weights ``path`` holds; ``meta`` is the file's metadata.

    Weights are found by the graph's structure, not by their names (the exporter renames and
    merges equal constants): the layer norms and the weighted matrix products in graph order,
    which is the model's module order, each product with the bias added to it, if any.
    """
    import onnx

    try:
        fields = ModelConfig.__dataclass_fields__
        config = ModelConfig(**{k: v for k, v in json.loads(meta["config"]).items()
                                if k in fields})
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} has no usable model config in its metadata ({exc})") from None
    proto = onnx.load(str(path))
    values = _constants(proto)
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    norms, linears = [], []
    for node in proto.graph.node:
        if node.op_type == "LayerNormalization":
            norms.append([values[name] for name in node.input[1:] if name in values])
        elif node.op_type == "MatMul" and node.input[1] in values:
            bias = [values[name] for add in consumers.get(node.output[0], [])
                    if add.op_type == "Add" for name in add.input if name in values]
            linears.append([values[node.input[1]].T, *bias[:1]])
    model = GPT(config)
    state = model.state_dict()
    norm_keys = [k[: -len(".weight")] for k in state if k.endswith(".weight") and "ln_" in k]
    linear_keys = [k[: -len(".weight")] for k in state
                   if k.endswith(".weight") and state[k].dim() == 2 and ".h." in k]
    # The last product is the output head, tied to the token embedding.
    if len(norms) != len(norm_keys) or len(linears) != len(linear_keys) + 1:
        raise ModelError(f"{path}: its graph is not a transcend model of config {config}")
    loaded = {"transformer.wte.weight": values.get("model.transformer.wte.weight"),
              "transformer.wpe.weight": values.get("model.transformer.wpe.weight")}
    if config.board_input:
        loaded["transformer.bte.weight"] = values.get("model.transformer.bte.weight")
    for key, tensors in [*zip(norm_keys, norms, strict=True),
                         *zip(linear_keys, linears[:-1], strict=True)]:
        loaded[f"{key}.weight"] = tensors[0]
        if len(tensors) > 1:
            loaded[f"{key}.bias"] = tensors[1]
    loaded["lm_head.weight"] = loaded["transformer.wte.weight"]
    missing = [k for k in state if loaded.get(k) is None]
    if missing:
        raise ModelError(f"{path}: no weights found for {', '.join(missing[:3])}")
    try:
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(loaded[k]))
                               for k in state})
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights of unexpected shapes ({str(exc)[:200]})") from None
    return model.eval()


def format1_logits(path: Path, ids: np.ndarray, meta: dict[str, str]) -> np.ndarray:
    """Logits of ``ids`` (B, T) from a format-1 file whose metadata is ``meta``, in one pass
    from an empty cache."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    b, t = ids.shape
    empty = np.zeros((int(meta["n_layer"]), 2, b, int(meta["n_head"]), 0,
                      int(meta["head_dim"])), np.float32)
    mask = np.broadcast_to(np.tril(np.ones((t, t), bool)), (b, t, t)).copy()
    positions = np.broadcast_to(np.arange(t), (b, t)).copy()
    (logits,) = session.run(["logits"], {"input_ids": ids, "position_ids": positions,
                                         "attention_mask": mask, "past": empty})
    return logits


def upgrade(source: Path, out: Path) -> float:
    """Write ``source`` (format 1) to ``out`` in the current format; returns the largest logit
    difference between the two files' models, checked before anything is written."""
    meta = read_metadata(source)
    version = meta.get("transcend_format", "")
    if version == MODEL_FORMAT:
        raise ModelError(f"{source} is already in model format {MODEL_FORMAT}")
    if version != "1" or "vocab" not in meta:
        raise ModelError(f"{source} is not a transcend model of format 1 "
                         f"(transcend_format {version or 'missing'})")
    model = model_from_onnx(source, meta)
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 64))
    with torch.no_grad():
        ours = model(torch.from_numpy(ids)).numpy()
    worst = float(np.abs(format1_logits(source, ids, meta) - ours).max())
    if worst > PARITY_TOLERANCE:
        raise ModelError(f"{source}: the weights read back differ from the file's model by "
                         f"{worst:.1e}; not converted")
    kept = {k: v for k, v in meta.items() if k not in ("transcend_format", "dtype")}
    kept["transcend_format"] = MODEL_FORMAT
    try:
        export_onnx(model, out, kept, fp16=meta.get("dtype") == "float16")
    except RuntimeError as exc:
        raise CheckpointError(str(exc)) from None
    return worst


@click.command("upgrade-model")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it (default: replace SOURCE, keeping SOURCE.format1).")
def upgrade_command(source: Path, out: Path | None) -> None:
    """Convert a model file of format 1 to the format the engine reads."""
    target = out or source
    if target.resolve() == source.resolve():
        backup = source.with_name(source.name + ".format1")
        if backup.exists():
            raise click.ClickException(f"{backup} exists already; move it, or pass --out")
        worst = upgrade(source, target.with_name(target.name + ".new"))
        source.replace(backup)
        target.with_name(target.name + ".new").replace(target)
        click.echo(f"upgraded {source} to format {MODEL_FORMAT} (parity {worst:.1e}); "
                   f"the original is {backup}")
        return
    worst = upgrade(source, target)
    click.echo(f"wrote {target} in format {MODEL_FORMAT} (parity {worst:.1e})")
