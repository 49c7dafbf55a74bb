"""The ``transcend`` command: data, training, export, tournaments, ratings and experiments.

Subcommands are imported only when they run, so ``transcend ratings`` works without torch and
``transcend --help`` answers at once.
"""

from __future__ import annotations

import importlib
import sys

import click

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("transcend.training.train:train_command", "Train a model on prepared data."),
    "export": ("transcend.training.export:export_command", "Export a run or checkpoint to ONNX."),
    "import-nanogpt": (
        "transcend.training.export:import_command",
        "Convert a nanoGPT chess checkpoint (ckpt.pt) to ONNX.",
    ),
    "upgrade-model": (
        "transcend.training.upgrade:upgrade_command",
        "Convert a model file of an older format to the engine's.",
    ),
    "probe": (
        "transcend.training.studies.probe:probe_command",
        "How well each layer knows the board: linear probes.",
    ),
    "plot": ("transcend.training.plot:plot_command", "Plot the training curves of a run."),
    "tournament": (
        "transcend.evaluation.tournament:tournament_command",
        "Play a gauntlet or round robin of UCI engines.",
    ),
    "ratings": ("transcend.evaluation.ratings:ratings_command", "A rating list from PGN files."),
    "sweep": (
        "transcend.evaluation.sweep:sweep_command",
        "Rate a model at several temperatures (the paper's Figure 1).",
    ),
    "advantage": (
        "transcend.evaluation.advantage:advantage_command",
        "Per-move expected win probability of a model against its experts.",
    ),
    "frontier": (
        "transcend.training.studies.frontier.stages:frontier_command",
        "Where the model transcends, by familiarity, and how compute moves it.",
    ),
    "play": (
        "transcend.play.server:play_command",
        "Play the model in the browser and see its move probabilities.",
    ),
    "gpu-pack": (
        "transcend.training.gpu.pack:gpu_pack_command",
        "Pack data, held-out analysis and wheels for a GPU run.",
    ),
    "gpu-run": (
        "transcend.training.gpu.run:gpu_run_command",
        "Train, export and evaluate a model in one short GPU window.",
    ),
    "experiment": (
        "transcend.training.studies.experiment:experiment_command",
        "The whole study: experts, data, training, export, sweep and report.",
    ),
}
DATA_COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": (
        "transcend.training.data.prepare_cli:prepare_command",
        "Turn PGN files into train.bin/val.bin token streams.",
    ),
    "experts": (
        "transcend.training.data.experts_cli:experts_command",
        "Play games between noisy expert engines and write them as PGN.",
    ),
    "diversity": (
        "transcend.training.data.diversity:diversity_command",
        "The paper's diversity measure of prepared data or PGN files.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, attr = self.lazy[name][0].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help lists the short descriptions without importing every module.
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        rows += [(name, cmd.get_short_help_str()) for name, cmd in self.commands.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="transcend")
def cli() -> None:
    """transcend: transformers trained on weak players' games that play better than them."""


@cli.group(cls=LazyGroup, lazy=DATA_COMMANDS)
def data() -> None:
    """Make and prepare training data."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes end with a one-line error, never a traceback."""
    try:
        cli.main(args=argv, prog_name="transcend", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except (OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
