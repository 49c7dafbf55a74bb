"""Rating lists from PGN files: maximum-likelihood Elo and the paper's sequential Glicko-2.

Two methods, both on the Elo scale:

* ``bt``: Bradley-Terry maximum likelihood with draws counted as half a win, so the result does
  not depend on game order and files can be merged from several machines. A weak prior of
  ``prior_draws`` virtual draws between every pair of players who met keeps a 100% or 0% score
  finite. 95% intervals come from the curvature of the log-likelihood at its maximum (observed
  Fisher information). Anchored players are fixed; with no anchor the mean rating is 0.
* ``glicko``: the paper's sequential Glicko-2 (Glickman 2013): one game per rating period in PGN
  order, unknown players start at 1500 / RD 500 / volatility 0.06, tau 0.5, anchors are fixed
  with RD 0. The interval is rating +/- 1.96 RD. The result depends on game order.

With no ``--anchor``, Stockfish players written by ``transcend tournament`` as ``sf:skill=1``,
``3`` or ``5`` with a time limit and no noise get the paper's anchors 1552 / 1842 / 2142.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import chess.pgn
import click
import numpy as np

from transcend.evaluation.endings import endings_table, read_endings, tally

PAPER_ANCHORS = {1: 1552.0, 3: 1842.0, 5: 2142.0}
GLICKO_SCALE = 173.7178  # 400 / ln(10): Glicko-2's internal unit in Elo points
ELO_K = math.log(10) / 400  # logistic slope of the Elo curve
Z95 = 1.959964
SCORES = {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}


@dataclass(frozen=True)
class Outcome:
    """One finished game: the two players, White's score, and their specs when recorded."""

    white: str
    black: str
    score: float
    white_spec: str = ""
    black_spec: str = ""


@dataclass
class Rating:
    name: str
    elo: float
    lo95: float
    hi95: float
    games: int
    points: float
    draws: int
    anchored: bool = False

    @property
    def score(self) -> float:
        return self.points / self.games if self.games else 0.0


def read_outcomes(paths: Iterable[Path]) -> list[Outcome]:
    """Every finished game of the PGN files, in file order; unfinished (``*``) games are skipped."""
    outcomes: list[Outcome] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            while (headers := chess.pgn.read_headers(handle)) is not None:
                score = SCORES.get(headers.get("Result", "*"))
                white, black = headers.get("White", "?"), headers.get("Black", "?")
                if score is None or white == black:
                    continue
                outcomes.append(Outcome(white, black, score, headers.get("WhiteSpec", ""),
                                        headers.get("BlackSpec", "")))
    return outcomes


def _players(outcomes: Sequence[Outcome]) -> list[str]:
    seen: dict[str, None] = {}
    for game in outcomes:
        seen.setdefault(game.white)
        seen.setdefault(game.black)
    return list(seen)


def _tally(outcomes: Sequence[Outcome], names: Sequence[str]) -> tuple[list[int], list[float],
                                                                        list[int]]:
    index = {name: i for i, name in enumerate(names)}
    games, points, draws = [0] * len(names), [0.0] * len(names), [0] * len(names)
    for game in outcomes:
        w, b = index[game.white], index[game.black]
        games[w] += 1
        games[b] += 1
        points[w] += game.score
        points[b] += 1.0 - game.score
        if game.score == 0.5:
            draws[w] += 1
            draws[b] += 1
    return games, points, draws


def spec_anchors(outcomes: Sequence[Outcome], labels: bool = False) -> dict[str, float]:
    """Anchors read from the players' specs: the paper's Stockfish levels (time-limited, no
    noise), or with ``labels`` every ``elo=`` label instead."""
    anchors: dict[str, float] = {}
    for game in outcomes:
        for name, spec in ((game.white, game.white_spec), (game.black, game.black_spec)):
            if labels:
                if (match := re.search(r"(?:^|[:,])elo=(-?\d+)", spec.split("cmd=")[0])):
                    anchors[name] = float(match.group(1))
                continue
            head, _, rest = spec.partition(":")
            if head.lower() not in ("sf", "stockfish"):
                continue
            keys = dict(p.split("=", 1) for p in rest.split(",") if "=" in p)
            skill = keys.get("skill", "")
            if (skill.isdigit() and int(skill) in PAPER_ANCHORS and "nodes" not in keys
                    and "depth" not in keys and float(keys.get("eps", "0") or 0) == 0):
                anchors[name] = PAPER_ANCHORS[int(skill)]
    return anchors


def parse_anchor(text: str) -> tuple[str, float]:
    """``NAME=ELO`` -> (name, elo); the name may itself contain ``=``, the last one splits."""
    name, eq, value = text.rpartition("=")
    try:
        if not eq or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise ValueError(f"anchor {text!r} must look like NAME=ELO, "
                         "e.g. sf-skill1-t0.1=1552") from None


def _components(n: int, pairs: Iterable[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[find(a)] = find(b)
    return [find(i) for i in range(n)]


def _maximise(elo: np.ndarray, free: np.ndarray, scored: np.ndarray, played: np.ndarray,
              anchors: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method on the free ratings; returns them and their covariance."""
    elo = elo.copy()
    if not free.size:
        return elo, np.zeros((0, 0))

    def loglik(r: np.ndarray) -> float:
        p = 1.0 / (1.0 + np.exp(-ELO_K * (r[:, None] - r[None, :])))
        return float(np.sum(scored * np.log(p)))

    def derivatives(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-ELO_K * (r[:, None] - r[None, :])))
        grad = ELO_K * np.sum(scored - played * p, axis=1)
        w = ELO_K**2 * played * p * (1 - p)
        hess = w - np.diag(np.sum(w, axis=1))
        return grad[free], hess[np.ix_(free, free)]

    elo[free] = np.mean(list(anchors.values())) if anchors else 0.0
    for _ in range(200):
        grad, hess = derivatives(elo)
        # Steps are capped so a far start cannot overshoot into a flat, underflowing region.
        step = np.clip(np.linalg.solve(-hess, grad), -400.0, 400.0)
        before = loglik(elo)
        scale = 1.0
        while True:  # Newton with step halving: the log-likelihood is concave
            trial = elo.copy()
            trial[free] += scale * step
            if loglik(trial) >= before - 1e-12 or scale < 1e-6:
                break
            scale /= 2
        elo = trial
        if np.max(np.abs(scale * step)) < 1e-7:
            break
    else:  # still climbing: the likelihood keeps growing as some rating runs off to infinity
        raise np.linalg.LinAlgError("no finite maximum")
    covariance = np.linalg.inv(-derivatives(elo)[1])
    if not np.all(np.isfinite(elo)) or not np.all(np.isfinite(covariance)):
        raise np.linalg.LinAlgError("no finite maximum")
    return elo, covariance


def bradley_terry(outcomes: Sequence[Outcome], anchors: dict[str, float] | None = None,
                  prior_draws: float = 1.0) -> list[Rating]:
    """Maximum-likelihood Elo ratings with 95% intervals, best first (see the module docstring)."""
    anchors = dict(anchors or {})
    names = _players(outcomes)
    if not names:
        raise ValueError("no finished games to rate")
    for name in anchors:
        if name not in names:
            raise ValueError(f"anchor {name!r} is not a player in these games "
                             f"(players: {', '.join(names)})")
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    played = np.zeros((n, n))
    scored = np.zeros((n, n))  # scored[i, j]: i's points against j
    for game in outcomes:
        w, b = index[game.white], index[game.black]
        played[w, b] += 1
        played[b, w] += 1
        scored[w, b] += game.score
        scored[b, w] += 1.0 - game.score
    met = played > 0
    played = played + prior_draws * met
    scored = scored + 0.5 * prior_draws * met

    roots = _components(n, zip(*np.nonzero(met), strict=True))
    fixed = np.zeros(n, dtype=bool)
    elo = np.zeros(n)
    for name, value in anchors.items():
        fixed[index[name]] = True
        elo[index[name]] = value
    groups = sorted(set(roots))
    centre = not anchors
    if centre and len(groups) == 1:
        fixed[0] = True  # the gauge: player 0 at 0 while fitting, then the mean is moved to 0
    else:
        loose = [g for g in groups if not any(fixed[i] for i in range(n) if roots[i] == g)]
        if loose:
            members = [names[i] for i in range(n) if roots[i] == loose[0]]
            raise ValueError("ratings are not comparable: no games connect "
                             f"{', '.join(members[:4])} to the other players; give each group an "
                             "--anchor")
    free = np.flatnonzero(~fixed)
    try:
        with np.errstate(all="ignore"):  # a diverging fit overflows on its way to the error
            elo, cov_free = _maximise(elo, free, scored, played, anchors)
    except np.linalg.LinAlgError:
        raise ValueError("the ratings have no finite maximum (a player won or lost every game): "
                         "use --prior-draws above 0") from None
    cov = np.zeros((n, n))
    cov[np.ix_(free, free)] = cov_free
    if centre:
        # Report every rating relative to the mean, and its uncertainty relative to the mean too.
        elo = elo - elo.mean()
        centring = np.eye(n) - 1.0 / n
        cov = centring @ cov @ centring.T
    spread = Z95 * np.sqrt(np.clip(np.diag(cov), 0, None))
    games, points, draws = _tally(outcomes, names)
    ratings = [Rating(name, float(elo[i]), float(elo[i] - spread[i]), float(elo[i] + spread[i]),
                      games[i], points[i], draws[i], name in anchors)
               for i, name in enumerate(names)]
    return sorted(ratings, key=lambda r: -r.elo)


def glicko2_update(rating: float, rd: float, volatility: float,
                   results: Sequence[tuple[float, float, float]], tau: float = 0.5
                   ) -> tuple[float, float, float]:
    """One Glicko-2 rating period (Glickman, "Example of the Glicko-2 system", 2013).

    ``results`` holds (opponent rating, opponent RD, score) on the Glicko scale; returns the new
    (rating, RD, volatility).
    """
    mu, phi = (rating - 1500.0) / GLICKO_SCALE, rd / GLICKO_SCALE
    if not results:
        return rating, math.hypot(phi, volatility) * GLICKO_SCALE, volatility
    total_v, total_d = 0.0, 0.0
    for opp_rating, opp_rd, score in results:
        mu_j, phi_j = (opp_rating - 1500.0) / GLICKO_SCALE, opp_rd / GLICKO_SCALE
        g = 1.0 / math.sqrt(1.0 + 3.0 * phi_j**2 / math.pi**2)
        expected = 1.0 / (1.0 + math.exp(-g * (mu - mu_j)))
        total_v += g * g * expected * (1.0 - expected)
        total_d += g * (score - expected)
    v = 1.0 / total_v
    delta = v * total_d
    a = math.log(volatility**2)

    def f(x: float) -> float:
        ex = math.exp(x)
        return (ex * (delta**2 - phi**2 - v - ex) / (2.0 * (phi**2 + v + ex) ** 2)
                - (x - a) / tau**2)

    # The Illinois variant of regula falsi, as in step 5 of Glickman's description.
    lo = a
    if delta**2 > phi**2 + v:
        hi = math.log(delta**2 - phi**2 - v)
    else:
        k = 1
        while f(a - k * tau) < 0:
            k += 1
        hi = a - k * tau
    f_lo, f_hi = f(lo), f(hi)
    while abs(hi - lo) > 1e-6:
        mid = lo + (lo - hi) * f_lo / (f_hi - f_lo)
        f_mid = f(mid)
        if f_mid * f_hi <= 0:
            lo, f_lo = hi, f_hi
        else:
            f_lo /= 2.0
        hi, f_hi = mid, f_mid
    new_vol = math.exp(lo / 2.0)
    phi_star = math.sqrt(phi**2 + new_vol**2)
    new_phi = 1.0 / math.sqrt(1.0 / phi_star**2 + 1.0 / v)
    new_mu = mu + new_phi**2 * total_d
    return new_mu * GLICKO_SCALE + 1500.0, new_phi * GLICKO_SCALE, new_vol


def sequential_glicko(outcomes: Sequence[Outcome], anchors: dict[str, float] | None = None,
                      prior: tuple[float, float, float] = (1500.0, 500.0, 0.06),
                      tau: float = 0.5) -> list[Rating]:
    """The paper's rating: one game per Glicko-2 period, in order; anchors fixed with RD 0."""
    anchors = dict(anchors or {})
    names = _players(outcomes)
    if not names:
        raise ValueError("no finished games to rate")
    state: dict[str, tuple[float, float, float]] = {
        name: (anchors[name], 0.0, 0.0) if name in anchors else prior for name in names}
    for game in outcomes:
        white, black = state[game.white], state[game.black]
        if game.white not in anchors:
            state[game.white] = glicko2_update(*white, [(black[0], black[1], game.score)], tau)
        if game.black not in anchors:
            state[game.black] = glicko2_update(*black, [(white[0], white[1], 1 - game.score)],
                                               tau)
    games, points, draws = _tally(outcomes, names)
    ratings = [Rating(name, state[name][0], state[name][0] - Z95 * state[name][1],
                      state[name][0] + Z95 * state[name][1], games[i], points[i], draws[i],
                      name in anchors) for i, name in enumerate(names)]
    return sorted(ratings, key=lambda r: -r.elo)


def format_table(ratings: Sequence[Rating], title: str) -> str:
    """A rating list for people."""
    width = max([len(r.name) for r in ratings] + [6])
    lines = [title, f"{'#':>3}  {'player':<{width}}  {'elo':>7}  {'95% interval':>17}  "
             f"{'games':>5}  {'score':>6}  {'draws':>5}"]
    for rank, r in enumerate(ratings, 1):
        interval = "anchor" if r.anchored else f"[{r.lo95:7.1f},{r.hi95:7.1f}]"
        draws = 100.0 * r.draws / r.games if r.games else 0.0
        elo = round(r.elo, 1) + 0.0  # + 0.0: a rating a hair below zero shows as 0.0, not -0.0
        lines.append(f"{rank:>3}  {r.name:<{width}}  {elo:7.1f}  {interval:>17}  {r.games:>5}  "
                     f"{100 * r.score:5.1f}%  {draws:4.0f}%")
    return "\n".join(lines)


def rate(outcomes: Sequence[Outcome], method: str, anchors: dict[str, float] | None,
         prior_draws: float = 1.0) -> list[Rating]:
    """Ratings by ``method`` (``bt`` or ``glicko``)."""
    if method == "glicko":
        return sequential_glicko(outcomes, anchors)
    return bradley_terry(outcomes, anchors, prior_draws)


@click.command("ratings")
@click.argument("pgn", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False,
                                                                  path_type=Path))
@click.option("--anchor", "anchor_texts", multiple=True, metavar="NAME=ELO",
              help="Fix a player's rating (repeatable). Default: the paper's Stockfish anchors "
                   "when sf:skill=1/3/5 players are found.")
@click.option("--anchor-labels", is_flag=True,
              help="Anchor every player whose spec carries an elo= label.")
@click.option("--method", type=click.Choice(["bt", "glicko", "both"]), default="bt",
              show_default=True, help="Maximum-likelihood Elo, the paper's Glicko-2, or both.")
@click.option("--prior-draws", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Virtual draws added between every pair that met (bt only).")
@click.option("--endings", is_flag=True,
              help="Also say why each player's games ended, with draws while ahead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ratings_command(pgn: tuple[Path, ...], anchor_texts: tuple[str, ...], anchor_labels: bool,
                    method: str, prior_draws: float, endings: bool, as_json: bool) -> None:
    """A rating list from PGN files (merged in the order given)."""
    outcomes = read_outcomes(pgn)
    if not outcomes:
        raise click.ClickException("no finished games in " + ", ".join(map(str, pgn)))
    anchors = dict(parse_anchor(text) for text in anchor_texts)
    if not anchors:
        anchors = spec_anchors(outcomes, labels=anchor_labels)
    methods = ["bt", "glicko"] if method == "both" else [method]
    results = {m: rate(outcomes, m, anchors, prior_draws) for m in methods}
    ended = tally(read_endings(pgn), _players(outcomes)) if endings else []
    if as_json:
        payload = {"games": len(outcomes), "anchors": anchors,
                   **{m: [{**asdict(r), "score": r.score} for r in rs] for m, rs in
                      results.items()},
                   **({"endings": [row.as_dict() for row in ended]} if endings else {})}
        click.echo(json.dumps(payload, indent=2))
        return
    titles = {"bt": "Maximum-likelihood Elo (Bradley-Terry, draws = half wins)",
              "glicko": "Sequential Glicko-2 (the paper's method; depends on game order)"}
    anchor_text = (", ".join(f"{k}={v:g}" for k, v in anchors.items())
                   or "none (bt: mean 0; glicko: start 1500)")
    click.echo(f"{len(outcomes)} games; anchors: {anchor_text}")
    for m, rs in results.items():
        click.echo()
        click.echo(format_table(rs, titles[m]))
    if endings:
        click.echo()
        click.echo(endings_table(ended))
