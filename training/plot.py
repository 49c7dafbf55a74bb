"""``transcend plot``: training curves of a run as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import click

from transcend.engine.files import write_figure


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        raise click.ClickException(f"{run} has no metrics.jsonl: not a training run")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    return records


def plot_run(run: Path, out: Path | None = None) -> Path:
    """Write loss (train and validation) and legal-move rate against tokens to ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run)
    train = [(r["tokens"], r["loss"]) for r in records if "loss" in r]
    val = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r]
    legal = [(r["tokens"], r["legal_rate"]) for r in records if "legal_rate" in r]
    fig, (ax_loss, ax_legal) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot(*zip(*train, strict=True), label="train", alpha=0.6)
    if val:
        ax_loss.plot(*zip(*val, strict=True), "o-", label="validation")
    ax_loss.set_xlabel("tokens")
    ax_loss.set_ylabel("loss (nats per character)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if legal:
        ax_legal.plot(*zip(*legal, strict=True), "o-", color="tab:green")
    ax_legal.set_ylim(0, 1)
    ax_legal.set_xlabel("tokens")
    ax_legal.set_ylabel("greedy unconstrained legal-move rate")
    ax_legal.grid(alpha=0.3)
    fig.suptitle(run.name)
    fig.tight_layout()
    return write_figure(fig, out or run / "curves.png", dpi=100)


@click.command("plot")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def plot_command(run: Path, out: Path | None) -> None:
    """Plot the training curves of RUN to RUN/curves.png."""
    click.echo(plot_run(run, out))
