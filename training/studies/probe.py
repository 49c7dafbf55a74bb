"""``transcend probe``: how well each layer of a model knows the board, read by linear probes.

For every position where the model decides a move, the residual stream after each layer (the
embeddings included) is taken from one pass over the game's transcript. A linear probe per
layer maps it to the 64 squares' contents (training/data/board.py's 13 classes, relative to the
side to move). Probes are fitted on the positions of some games and scored on those of other games.

The probe is a ridge least-squares fit of one-hot classes (the class read back by argmax): one
closed-form solve per layer, so probing every snapshot of a study takes seconds, and the same
data give the same probe every time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
import click
import numpy as np
import torch
from torch.nn import functional as F

from transcend.engine.files import write_atomic, write_figure
from transcend.engine.transcript import GAME_START, encode
from transcend.training.data.board import CLASSES, SQUARES, GameBoards, board_classes, replay_game
from transcend.training.model import GPT

PLY_BINS = ((0, 10), (11, 20), (21, 40), (41, None))
# L-BFGS iterations. On the bundled model's block 4, test accuracy was 0.7497 after 20, 0.7510
# after 40 and 0.7514 after 80: past 40 the fit costs more than it changes.
PROBE_STEPS = 40
L2 = 1e-4
MAX_FIT_POSITIONS = 6_000  # a sample of the fitting games' positions: the fit's cost
METHOD = ("multinomial logistic regression per square (13 classes relative to the side to "
          "move) on the standardised residual stream, full-batch L-BFGS; fitted on some games' "
          "positions, scored on other games'")


@dataclass
class Probe:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (d, 64 * classes)
    bias: np.ndarray  # (64, classes)


@dataclass
class ProbeData:
    """Features of every layer at the positions where the model decides a move."""

    features: list[np.ndarray]  # per layer (N, n_embd) float32
    targets: np.ndarray  # (N, 64) uint8
    plies: np.ndarray  # (N,) plies played before the decision
    games: np.ndarray  # (N,) index of the position's game


def load_probe_model(path: Path) -> GPT:
    """A model with hidden states: a training run folder, its ``ckpt.pt`` or a kept snapshot,
    a nanoGPT checkpoint, or an exported model whose weights read back from its graph (checked
    against the file's own logits)."""
    from transcend.training.export import CheckpointError, load_checkpoint

    if path.suffix == ".onnx":
        return _model_of_onnx(path)
    try:
        model, _ = load_checkpoint(path)
    except (FileNotFoundError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
    return model


def _model_of_onnx(path: Path) -> GPT:
    from transcend.engine.model_file import ModelError, read_metadata
    from transcend.engine.policy import Policy
    from transcend.training.upgrade import model_from_onnx

    instead = "pass its training run folder or checkpoint (ckpt.pt) instead"
    try:
        meta = read_metadata(path)
        model = model_from_onnx(path, meta)
        policy = Policy(path, threads=1)
    except (ModelError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(f"{path}: its weights cannot be read back ({reason}); "
                                   f"{instead}") from None
    text = GAME_START + "1.e4 e5 2.Nf3 Nc6 3.Bb5 a6 4."
    ids = encode(text).astype(np.int64)[None]
    with torch.no_grad():
        ours = model(torch.from_numpy(ids), model.board_of_text(text))[0].numpy()
    if np.abs(ours - policy.text_logits(text)).max() > 1e-3:
        raise click.ClickException(f"{path}: the weights read back from its graph do not "
                                   f"reproduce its logits; {instead}")
    return model


def read_games(pgns: Sequence[str], games: int) -> tuple[list[GameBoards], list[str], int]:
    """Up to ``games`` games of the PGN files (or prepared-data folders) that replay: their
    boards and transcripts, and how many did not replay."""
    from transcend.training.data.diversity import games_of_inputs

    boards, texts, failed = [], [], 0
    try:
        for text in games_of_inputs(pgns):
            if len(boards) >= games:
                break
            replayed = replay_game(GAME_START + text)
            if replayed is None or not len(replayed.starts):
                failed += 1
                continue
            boards.append(replayed)
            texts.append(GAME_START + text)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    return boards, texts, failed


@torch.no_grad()
def collect(model: GPT, boards: Sequence[GameBoards], texts: Sequence[str]) -> ProbeData:
    """One pass per game; the residual stream at each decision inside the context window."""
    model.eval()
    block = model.config.block_size
    per_layer: list[list[np.ndarray]] = [[] for _ in range(model.config.n_layer + 1)]
    targets, plies, games = [], [], []
    for index, (game, text) in enumerate(zip(boards, texts, strict=True)):
        ids = torch.from_numpy(encode(text[:block]).astype(np.int64))[None]
        decide = game.starts - 1
        keep = np.flatnonzero(decide < ids.shape[1])
        if not len(keep):
            continue
        states = model.hidden_states(ids, model.board_of_text(text[:block]))
        for layer, state in enumerate(states):
            per_layer[layer].append(state[0, decide[keep]].float().numpy())
        targets.append(game.boards[keep])
        plies.append(keep)
        games.append(np.full(len(keep), index))
    return ProbeData([np.concatenate(f) for f in per_layer], np.concatenate(targets),
                     np.concatenate(plies), np.concatenate(games))


def fit_probe(x: np.ndarray, y: np.ndarray, steps: int = PROBE_STEPS) -> Probe:
    """A multinomial logistic probe per square from features (N, d) to classes (N, 64): full
    batch L-BFGS on standardised features, from each square's class frequencies."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    z = torch.from_numpy((x - mean) / scale).float()
    target = torch.from_numpy(y.astype(np.int64))
    counts = np.stack([np.bincount(y[:, s], minlength=CLASSES) for s in range(SQUARES)])
    bias = torch.tensor(np.log((counts + 1) / (counts + 1).sum(1, keepdims=True)),
                        dtype=torch.float32).requires_grad_()
    weights = torch.zeros(x.shape[1], SQUARES * CLASSES, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=steps, history_size=10,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = (z @ weights).view(-1, SQUARES, CLASSES) + bias
        loss = F.cross_entropy(logits.reshape(-1, CLASSES), target.reshape(-1))
        loss = loss + L2 * weights.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Probe(mean, scale, weights.detach().numpy(), bias.detach().numpy())


def probe_logits(probe: Probe, x: np.ndarray) -> np.ndarray:
    """(N, 64, classes) logits of the probe on features (N, d)."""
    z = (x - probe.mean) / probe.scale
    return (z @ probe.weights).reshape(len(x), SQUARES, CLASSES) + probe.bias


def cross_entropy(logits: np.ndarray, truth: np.ndarray) -> float:
    """Mean cross-entropy (nats a square) of logits (N, 64, classes) against classes (N, 64)."""
    return float(F.cross_entropy(torch.from_numpy(logits).reshape(-1, CLASSES),
                                 torch.from_numpy(truth).reshape(-1)))


def accuracies(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(all squares, occupied squares) accuracy."""
    right = predicted == truth
    occupied = truth != 0
    return float(right.mean()), float(right[occupied].mean()) if occupied.any() else float("nan")


def _bin_name(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f"{low}+"


def probe_model(model: GPT, pgns: Sequence[str], games: int = 400,
                test_share: float = 0.25) -> dict[str, Any]:
    """Fit and score a probe per layer; the result that ``probe.json`` holds."""
    boards, texts, failed = read_games(pgns, games)
    if len(boards) < 2:
        raise click.ClickException(f"{', '.join(pgns)}: {len(boards)} game(s) that replay "
                               f"({failed} did not); a probe needs at least 2")
    data = collect(model, boards, texts)
    # Whole games go to one side, so no test position shares a game with a fitted one.
    test_games = max(1, round(len(boards) * test_share))
    test = data.games >= len(boards) - test_games
    fit = ~test
    if fit.sum() > MAX_FIT_POSITIONS:
        keep = np.random.default_rng(0).choice(np.flatnonzero(fit), MAX_FIT_POSITIONS,
                                               replace=False)
        fit = np.zeros_like(fit)
        fit[keep] = True
    truth = data.targets[test].astype(np.int64)
    start = board_classes(chess.Board())
    majority = np.array([np.bincount(data.targets[fit][:, s], minlength=CLASSES).argmax()
                         for s in range(SQUARES)])
    layers, predictions = [], []
    for layer, features in enumerate(data.features):
        logits = probe_logits(fit_probe(features[fit], data.targets[fit]), features[test])
        predicted = logits.argmax(axis=2)
        overall, occupied = accuracies(predicted, truth)
        layers.append({"layer": layer, "accuracy": overall, "occupied_accuracy": occupied,
                       "loss": cross_entropy(logits, truth)})
        predictions.append(predicted)
    best = max(range(len(layers)), key=lambda i: layers[i]["accuracy"])
    by_ply = []
    plies = data.plies[test]
    for low, high in PLY_BINS:
        inside = (plies >= low) & (plies <= (high if high is not None else plies.max()))
        if not inside.any():
            continue
        overall, occupied = accuracies(predictions[best][inside], truth[inside])
        by_ply.append({"plies": _bin_name(low, high), "positions": int(inside.sum()),
                       "accuracy": overall, "occupied_accuracy": occupied})
    return {
        "positions": int(test.sum()),
        "fit_positions": int(fit.sum()),
        "games": {"fit": len(boards) - test_games, "test": test_games, "not_replayed": failed},
        "layers": layers,
        "best_layer": best,
        "by_ply": by_ply,
        "baselines": {
            "start_position": accuracies(np.broadcast_to(start, truth.shape), truth)[0],
            "majority_per_square": accuracies(np.broadcast_to(majority, truth.shape), truth)[0],
        },
        "method": METHOD,
    }


def middlegame(result: dict[str, Any]) -> float | None:
    """Occupied-square accuracy at plies 21-40 of the best layer: the study's headline."""
    return next((row["occupied_accuracy"] for row in result["by_ply"]
                 if row["plies"] == "21-40"), None)


def write_report(result: dict[str, Any], out: Path, title: str) -> None:
    """probe.json, probe.md and probe.png in ``out``."""
    write_atomic(out / "probe.json", json.dumps(result, indent=2))
    base = result["baselines"]
    lines = [f"# Board probe: {title}", "",
             f"{result['positions']:,} test positions of {result['games']['test']} games "
             f"(probes fitted on {result['fit_positions']:,} of {result['games']['fit']} other "
             f"games). Method: {result['method']}.", "",
             "| layer | accuracy | occupied squares | cross-entropy |", "|---|---|---|---|"]
    for row in result["layers"]:
        mark = " (best)" if row["layer"] == result["best_layer"] else ""
        name = "embeddings" if row["layer"] == 0 else f"block {row['layer']}"
        lines.append(f"| {name}{mark} | {row['accuracy']:.3f} | "
                     f"{row['occupied_accuracy']:.3f} | {row['loss']:.3f} |")
    lines += ["", f"Baselines (every square as in the starting position; each square's most "
              f"common class): {base['start_position']:.3f} and "
              f"{base['majority_per_square']:.3f}.", "",
              "By plies played, best layer:", "",
              "| plies | positions | accuracy | occupied squares |", "|---|---|---|---|"]
    for row in result["by_ply"]:
        lines.append(f"| {row['plies']} | {row['positions']:,} | {row['accuracy']:.3f} | "
                     f"{row['occupied_accuracy']:.3f} |")
    write_atomic(out / "probe.md", "\n".join(lines) + "\n")
    _plot(result, out / "probe.png", title)


def _plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_layer, by_ply) = plt.subplots(1, 2, figsize=(10, 3.8))
    layers = [row["layer"] for row in result["layers"]]
    by_layer.plot(layers, [row["accuracy"] for row in result["layers"]], "o-", label="all squares")
    by_layer.plot(layers, [row["occupied_accuracy"] for row in result["layers"]], "s-",
                  label="occupied squares")
    by_layer.axhline(result["baselines"]["majority_per_square"], color="grey", ls="--",
                     label="majority per square")
    by_layer.set(xlabel="layer (0: embeddings)", ylabel="test accuracy", ylim=(0, 1),
                 title="by layer")
    by_layer.legend(fontsize=8)
    names = [row["plies"] for row in result["by_ply"]]
    by_ply.bar(np.arange(len(names)) - 0.2, [row["accuracy"] for row in result["by_ply"]], 0.4,
               label="all squares")
    by_ply.bar(np.arange(len(names)) + 0.2,
               [row["occupied_accuracy"] for row in result["by_ply"]], 0.4,
               label="occupied squares")
    by_ply.set_xticks(np.arange(len(names)), names)
    by_ply.set(xlabel="plies played", ylim=(0, 1),
               title=f"by ply, layer {result['best_layer']}")
    by_ply.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)


@click.command("probe")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--pgn", "pgns", multiple=True, required=True,
              help="Games to probe on: PGN files or `data prepare` folders (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--games", type=click.IntRange(min=2), default=400, show_default=True,
              help="Games to read; a quarter of them test the probes fitted on the rest.")
def probe_command(model: Path, pgns: tuple[str, ...], out: Path, games: int) -> None:
    """Linear probes of the board on every layer of MODEL (a run folder or checkpoint)."""
    net = load_probe_model(model)
    result = probe_model(net, list(pgns), games)
    write_report(result, out, model.name)
    best = result["layers"][result["best_layer"]]
    click.echo(f"{out / 'probe.json'}: best layer {result['best_layer']}, accuracy "
               f"{best['accuracy']:.3f}, occupied {best['occupied_accuracy']:.3f}; "
               f"baselines {result['baselines']['start_position']:.3f} / "
               f"{result['baselines']['majority_per_square']:.3f}")
