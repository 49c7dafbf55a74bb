"""Check the platform wheel table against PyPI with pip's own resolver.

``benchmarks/platform_wheels.json`` says, for each distribution the engine installs, on which
target (operating system and CPU) and Python version PyPI has a wheel that satisfies the
project's requirement, and which version pip picks there. ``tests/test_platforms.py`` checks
offline that the requirement markers in ``pyproject.toml`` only ever ask for distributions with
wheels; this script re-checks the table itself against the registry. For every distribution,
target and Python it runs

    pip install --dry-run --no-deps --only-binary=:all: --platform TAG --python-version V ...

(no download beyond the index and the wheels' metadata) and compares what pip would install
with the table. It needs network access, so it runs in ``make bench`` or by hand, never in the
offline tests.

    python benchmarks/verify_wheels.py            # compare; exit 1 when the table is stale
    python benchmarks/verify_wheels.py --write    # rewrite the table with today's findings
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
TABLE = Path(__file__).with_name("platform_wheels.json")
PYPI = "https://pypi.org/simple"

Key = tuple[str, str, str]  # distribution, target, Python version


def engine_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The package's own run-time requirements, markers included (no extras)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(pyproject, "rb") as fh:
        return [Requirement(r) for r in tomllib.load(fh)["project"]["dependencies"]]


def marker_environment(table: dict, target: str, python: str) -> dict[str, str]:
    """The PEP 508 marker environment of a CPython ``python`` on ``target``."""
    return {**table["targets"][target]["environment"], "python_version": python,
            "python_full_version": f"{python}.0", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "implementation_version": f"{python}.0",
            "platform_release": "", "platform_version": ""}


def selected_requirements(reqs: list[Requirement], env: dict[str, str]) -> list[Requirement]:
    """The requirements whose markers hold in ``env``."""
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def pip_dry_run(specs: list[str], platforms: list[str], python: str, index_url: str,
                deps: bool) -> dict[str, str] | None:
    """What pip would install for ``specs`` on that platform and Python, {name: version}; None
    when some distribution has no wheel there."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
               "--only-binary=:all:", "--ignore-installed", "--target", str(Path(tmp) / "t"),
               "--python-version", python, "--implementation", "cp", "--index-url", index_url,
               "--report", str(report)]
        if not deps:
            cmd.append("--no-deps")
        for tag in pip_platform_tags(platforms):
            cmd += ["--platform", tag]
        # Local pip configuration (mirrors, constraints) must not colour a registry check.
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_CONSTRAINT": ""}
        if cert := os.environ.get("PIP_CERT") or _configured_cert():
            cmd += ["--cert", cert]
        done = subprocess.run([*cmd, *specs], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            if "No matching distribution" in done.stderr or "from versions: none" in done.stderr:
                return None
            raise RuntimeError(f"pip failed for {specs} on {platforms} {python}: "
                               f"{done.stderr.strip().splitlines()[-1:]}")
        installs = json.loads(report.read_text())["install"]
        return {i["metadata"]["name"]: i["metadata"]["version"] for i in installs}


def resolve(spec: str, platforms: list[str], python: str, index_url: str) -> str | None:
    """The version pip would install for ``spec`` on that platform and Python; None: no wheel."""
    found = pip_dry_run([spec], platforms, python, index_url, deps=False)
    return next(iter(found.values()), None) if found else None


def pip_platform_tags(platforms: list[str]) -> list[str]:
    """The tags to give pip for a target: ``manylinux_2_28_x86_64`` stands for every glibc from
    2.17 to 2.28 (pip does not widen a manylinux ``--platform`` by itself; macOS it does)."""
    tags: list[str] = []
    for tag in platforms:
        if tag.startswith("manylinux_2_"):
            _, _, minor, arch = tag.split("_", 3)
            tags += [f"manylinux_2_{m}_{arch}" for m in range(int(minor), 16, -1)]
            tags.append(f"manylinux2014_{arch}")
        else:
            tags.append(tag)
    return tags


@functools.cache
def _configured_cert() -> str:
    """The CA bundle from the machine's pip configuration, if any (needed behind some proxies)."""
    done = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def survey(table: dict, index_url: str, jobs: int) -> dict[str, dict[str, dict[str, str]]]:
    """Every distribution x target x Python: the version with a wheel (absent when none)."""
    keys: list[Key] = []
    specs: dict[str, str] = {}
    for req in engine_requirements():
        specs[req.name] = f"{req.name}{req.specifier}"
        keys += [(req.name, t, py) for t in table["targets"] for py in table["pythons"]]
    with ThreadPoolExecutor(jobs) as pool:
        versions = pool.map(
            lambda k: resolve(specs[k[0]], table["targets"][k[1]]["pip_platforms"], k[2],
                              index_url), keys)
        found: dict[str, dict[str, dict[str, str]]] = {}
        for (dist, target, py), version in zip(keys, versions, strict=True):
            per_target = found.setdefault(dist, {}).setdefault(target, {})
            if version:
                per_target[py] = version
    return found


def whole_installs(table: dict, index_url: str, jobs: int) -> list[str]:
    """For each target and Python, everything ``pip install transcend`` would bring, resolved
    at once (dependencies of dependencies included); the targets where that fails.

    The project's own markers are evaluated here for the target: pip's ``--platform`` changes
    the wheels it accepts but evaluates markers for the machine it runs on. Markers inside the
    dependencies' own metadata are still evaluated for this machine, a limit of the method.
    """
    reqs = engine_requirements()
    keys = [(t, py) for t in table["targets"] for py in table["pythons"]]

    def one(key: tuple[str, str]) -> dict[str, str] | None:
        target, python = key
        chosen = selected_requirements(reqs, marker_environment(table, target, python))
        return pip_dry_run([f"{r.name}{r.specifier}" for r in chosen],
                           table["targets"][target]["pip_platforms"], python, index_url,
                           deps=True)

    failures = []
    with ThreadPoolExecutor(jobs) as pool:
        for (target, python), found in zip(keys, pool.map(one, keys), strict=True):
            if found is None:
                failures.append(f"{target} Python {python}: no complete set of wheels")
            else:
                print(f"whole install {target:15} {python:5} {len(found):2} distributions: "
                      + " ".join(f"{n}=={v}" for n, v in sorted(found.items())))
    return failures


def differences(old: dict, new: dict) -> list[str]:
    lines = []
    for dist in sorted(set(old) | set(new)):
        for target in sorted(set(old.get(dist, {})) | set(new.get(dist, {}))):
            was, now = old.get(dist, {}).get(target, {}), new.get(dist, {}).get(target, {})
            for py in sorted(set(was) | set(now)):
                if was.get(py) != now.get(py):
                    lines.append(f"{dist} {target} {py}: table {was.get(py, 'no wheel')}, "
                                 f"PyPI now {now.get(py, 'no wheel')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the table")
    parser.add_argument("--jobs", type=int, default=4, help="pip processes at once")
    parser.add_argument("--index-url", default=PYPI)
    args = parser.parse_args(argv)
    table = json.loads(TABLE.read_text())
    try:
        found = survey(table, args.index_url, max(1, args.jobs))
        incomplete = whole_installs(table, args.index_url, max(1, args.jobs))
    except (RuntimeError, OSError) as exc:
        print(f"verify_wheels: {exc}", file=sys.stderr)
        return 2
    changed = differences(table["wheels"], found)
    if incomplete:
        print("some targets cannot install the engine from wheels:", *incomplete, sep="\n  ")
    for dist, targets in sorted(found.items()):
        cells = [f"{t} {len(v)}/{len(table['pythons'])}" for t, v in targets.items()]
        print(f"{dist:16} " + ", ".join(cells))
    if args.write:
        from transcend.engine.files import write_atomic

        table["wheels"] = found
        table["verified"] = dt.date.today().isoformat()
        write_atomic(TABLE, json.dumps(table, indent=2) + "\n")
        print(f"wrote {TABLE} ({len(changed)} entries changed)")
        return 1 if incomplete else 0
    if changed:
        print(f"{TABLE.name} is stale (verified {table['verified']}):", *changed, sep="\n  ")
        print("rerun with --write, then check the markers in pyproject.toml (make test)")
    if changed or incomplete:
        return 1
    print(f"{TABLE.name} matches PyPI (table verified {table['verified']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
