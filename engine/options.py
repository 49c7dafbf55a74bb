"""The engine's UCI options: their values, their limits, and how option names and values from
the GUI or the command line are read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transcend.engine.convert import ConvertOptions

DEFAULT_TEMPERATURE = 0.01
SEED_MAX = 2**31 - 1
HASH_MAX = 33554432  # Stockfish's limit, so that any value a bot or GUI copies from it is taken
# Standard options that some GUIs send whether or not the engine declares them: accepted with a
# note, never an error.
IGNORED_OPTIONS = frozenset({
    "ponder", "ownbook", "uci_analysemode", "uci_opponent", "uci_engineabout",
    "uci_showcurrline", "uci_showrefutations", "uci_setpositionvalue", "syzygyprobedepth",
    "syzygy50moverule", "syzygyprobelimit", "nalimovpath", "nalimovcache",
})
# Other engines' spellings of this engine's options, after `option_key`.
OPTION_ALIASES = {"minimumthinkingtime": "minthinktime"}


class UciError(ValueError):
    """Bad input from the GUI; answered with ``info string error ...``."""


@dataclass
class Settings:
    """The option values; command-line flags set the initial ones."""

    model: str = ""
    temperature: float = DEFAULT_TEMPERATURE
    mode: str = "token"
    seed: int = 0  # 0: a fresh random seed
    device: str = "auto"
    threads: int = 0  # 0: onnxruntime's default (all cores)
    multipv: int = 1
    move_overhead: int = 30
    min_think: int = 0
    limit_strength: bool = False
    elo: int = 0
    chess960: bool = False
    hash_mb: int = 16  # declared for bots and GUIs; no effect
    syzygy_path: str = ""  # likewise
    show_wdl: bool = False  # likewise
    convert: ConvertOptions = field(default_factory=ConvertOptions)


def option_key(name: str) -> str:
    """How option names are matched: any case, spaces ignored, so Stockfish's `Move Overhead`
    and this engine's former `MoveOverhead` are the same option."""
    return "".join(name.lower().split())


def parse_temperature(text: str) -> float:
    """A temperature >= 0 from option or flag text."""
    try:
        value = float(text)
    except ValueError:
        raise UciError(f"temperature must be a number >= 0, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UciError(f"temperature must be a number >= 0, not {text!r}")
    return value


def parse_spin(name: str, value: str, low: int, high: int) -> int:
    """The value of a ``spin`` option, between ``low`` and ``high``."""
    try:
        number = int(value)
    except ValueError:
        raise UciError(f"option {name} takes an integer, not {value!r}") from None
    if not low <= number <= high:
        raise UciError(f"option {name} must be between {low} and {high}, not {number}")
    return number


def parse_check(name: str, value: str) -> bool:
    """The value of a ``check`` option."""
    if value.lower() not in ("true", "false"):
        raise UciError(f"option {name} takes true or false, not {value!r}")
    return value.lower() == "true"


def parse_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """The value of a ``combo`` option, one of ``choices``."""
    if value.lower() not in choices:
        raise UciError(f"option {name} takes one of {', '.join(choices)}, not {value!r}")
    return value.lower()


def check_text(value: bool) -> str:
    """A ``check`` option's value as UCI writes it."""
    return "true" if value else "false"


def with_value(choices: tuple[str, ...], value: str) -> tuple[str, ...]:
    """``choices`` plus ``value`` if missing (a flag may pick a device not offered here)."""
    return choices if value in choices else (*choices, value)
