"""A model card's measured rating list, and a new rating list read against it.

A card's figures live beside its model as ``<stem>.card.json`` (the bundled default model's
is ``models/default.card.json``; ``tests/test_card.py`` checks it against the card's own table).
:func:`reading` turns a tournament's list into a few lines: where the model stands here against
what its card measured, how it was trained (from the model file's metadata), and where to go
next. Every number in them comes from the two lists or the model file.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from transcend.evaluation.players import PlayerSpec
from transcend.evaluation.ratings import Rating

CARD_FORMAT = "transcend-card-1"


@dataclass(frozen=True)
class CardRating:
    """One line of the card's rating list; ``temperature`` only for the model's own lines."""

    name: str
    label: str  # as the card's table says it
    elo: float
    low: float | None  # None for the anchor
    high: float | None
    games: int
    score: float
    temperature: float | None = None


@dataclass(frozen=True)
class Card:
    path: Path
    model: Path  # the model file the card describes
    readme: Path  # the card itself
    games: int  # games in its rating list
    anchors: dict[str, float]
    players: list[CardRating]

    def model_at(self, temperature: float) -> CardRating | None:
        return next((p for p in self.players if p.temperature == temperature), None)

    def player(self, name: str) -> CardRating | None:
        return next((p for p in self.players if p.name == name and p.temperature is None), None)


def card_path(model: Path) -> Path:
    """Where the card figures of ``model`` are: ``<stem>.card.json`` beside it."""
    return model.with_name(f"{model.stem}.card.json")


def find_card(text: str) -> Card | None:
    """The card ``text`` names: a card's ``.json`` file, or a model (a file or a bundled model's
    name) whose card lies beside it; None for a model that has none."""
    from transcend.engine.model_file import resolve_model

    if text.endswith(".json"):
        return load_card(Path(text))
    path = card_path(resolve_model(text))
    return load_card(path) if path.is_file() else None


def load_card(path: Path) -> Card:
    """The figures of ``path``; ValueError (one line) when it is not a card file."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != CARD_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {CARD_FORMAT!r}")
        ratings = data["ratings"]
        players = [CardRating(p["name"], p["label"], float(p["elo"]), p.get("low"),
                              p.get("high"), int(p["games"]), float(p["score"]),
                              p.get("temperature")) for p in ratings["players"]]
        return Card(Path(path), Path(path).parent / data["model"],
                    Path(path).parent / data["card"], int(ratings["games"]),
                    {k: float(v) for k, v in ratings["anchors"].items()}, players)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a model card's figures ({exc})") from None


def _model_named(spec: PlayerSpec) -> str:
    """The model a transcend engine is told to play: its ``ModelFile`` option or ``--model``
    flag, as written; empty for none."""
    for key, value in spec.options.items():
        if key.lower() == "modelfile":
            return str(value)
    for i, word in enumerate(spec.command):
        flag, eq, value = word.partition("=")
        if flag == "--model":
            return value if eq else (spec.command[i + 1] if i + 1 < len(spec.command) else "")
    return ""


def _model_file(spec: PlayerSpec) -> Path | None:
    """The model file a transcend engine plays, found as the engine finds it; None for the
    bundled default."""
    from transcend.engine.model_file import ModelError, resolve_model

    named = _model_named(spec)
    if named in ("", "<empty>"):
        return None
    try:
        return resolve_model(named)
    except ModelError:
        return Path(named)  # the engine refuses it: no card's model either


def _plays(spec: PlayerSpec, model: Path) -> bool:
    from transcend.engine.model_file import default_model_path

    path = _model_file(spec) or default_model_path()
    return spec.temperature is not None and path.resolve() == model.resolve()


def _elo(value: float | None) -> str:
    return "-" if value is None else str(round(value))  # round(): never "-0"


def _interval(low: float | None, high: float | None) -> str:
    return f"({_elo(low)} to {_elo(high)})"


def _training(model: Path) -> str | None:
    """``a 2.9M-parameter model trained for 3.3 hours on 2 CPU cores (26.2M characters)``,
    from the model file's metadata; None when it does not say."""
    from transcend.engine.model_file import ModelError, read_metadata

    try:
        summary = json.loads(read_metadata(model).get("training", "{}"))
    except (OSError, ModelError, json.JSONDecodeError):
        return None
    try:
        params, hours = summary["n_params"] / 1e6, summary["elapsed_s"] / 3600
        tokens = summary["tokens"] / 1e6
        if summary.get("device") == "cpu":
            threads = summary["threads"]
            where = f"{threads} CPU core{'s' if threads != 1 else ''}"
        else:
            where = f"{summary.get('world_size', 1)} x {summary['device']}"
    except (KeyError, TypeError):
        return None
    return (f"a {params:.1f}M-parameter model trained for {hours:.1f} hours on {where} "
            f"({tokens:.1f}M characters)")


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def reading(ratings: Sequence[Rating], players: Sequence[PlayerSpec],
            anchors: Mapping[str, float], card: Card) -> list[str]:
    """Three paragraphs that read ``ratings`` (of the games between ``players``, anchored at
    ``anchors``) against ``card``, each wrapped at 100 columns."""
    name = card.model.name
    by_name = {r.name: r for r in ratings}
    lines = []
    models = [(s, by_name[s.name]) for s in players
              if s.name in by_name and _plays(s, card.model)]
    if dict(anchors) != card.anchors:
        scale = ", ".join(f"{k}={v:g}" for k, v in card.anchors.items())
        lines.append(f"Reading: this list is not on the scale of {name}'s card; give "
                     f"--anchor {scale} to compare.")
    elif not models:
        temps = ", ".join(f"{p.temperature:g}" for p in card.players if p.temperature is not None)
        lines.append(f"Reading: no player here is {name} at a temperature its card measured "
                     f"({temps}).")
    else:
        parts = []
        for spec, here in models:
            assert spec.temperature is not None
            there = card.model_at(spec.temperature)
            if there is None:
                parts.append(f"at T = {spec.temperature:g} rates {_elo(here.elo)} "
                             f"{_interval(here.lo95, here.hi95)} here; its card has no figure "
                             "at that temperature")
                continue
            assert there.low is not None and there.high is not None
            where = ("inside" if there.low <= here.elo <= there.high else
                     "above" if here.elo > there.high else "below")
            parts.append(f"at T = {spec.temperature:g} rates {_elo(here.elo)} "
                         f"{_interval(here.lo95, here.hi95)} over {here.games} games here, "
                         f"{where} the {_elo(there.elo)} {_interval(there.low, there.high)} "
                         f"its card measured over {there.games}")
        others = [(r, card.player(r.name)) for r in ratings
                  if card.player(r.name) is not None and r.name not in card.anchors]
        if others:
            parts.append("; ".join(f"{r.name} rates {_elo(r.elo)} here, {_elo(c.elo)} there"
                                   for r, c in others if c is not None))
        lines.append(f"Reading: {name} " + "; ".join(parts) + ".")
    training = _training(card.model)
    if training is not None:
        lines.append(f"{name} is {training}.")
    lines.append(f"Next: its card, {_shown(card.readme)}, says what it measured and why; "
                 "`make play` (or `transcend play`) plays it in the browser; `transcend "
                 "import-nanogpt` plays the paper's checkpoints.")
    return [textwrap.fill(line, 100) for line in lines]
