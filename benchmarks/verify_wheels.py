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


def resolve(spec: str, platforms: list[str], python: str, index_url: str) -> str | None:
    """The version pip would install for ``spec`` on that platform and Python; None: no wheel."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
               "--only-binary=:all:", "--ignore-installed", "--target", str(Path(tmp) / "t"),
               "--python-version", python, "--implementation", "cp", "--index-url", index_url,
               "--report", str(report)]
        for tag in pip_platform_tags(platforms):
            cmd += ["--platform", tag]
        # Local pip configuration (mirrors, constraints) must not colour a registry check.
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_CONSTRAINT": ""}
        cert = os.environ.get("PIP_CERT") or _configured_cert()
        if cert:
            cmd += ["--cert", cert]
        done = subprocess.run([*cmd, spec], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            if "No matching distribution" in done.stderr or "from versions: none" in done.stderr:
                return None
            raise RuntimeError(f"pip failed for {spec} on {platforms} {python}: "
                               f"{done.stderr.strip().splitlines()[-1:]}")
        installs = json.loads(report.read_text())["install"]
        return installs[0]["metadata"]["version"] if installs else None


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
    except (RuntimeError, OSError) as exc:
        print(f"verify_wheels: {exc}", file=sys.stderr)
        return 2
    changed = differences(table["wheels"], found)
    for dist, targets in sorted(found.items()):
        cells = [f"{t} {len(v)}/{len(table['pythons'])}" for t, v in targets.items()]
        print(f"{dist:16} " + ", ".join(cells))
    if args.write:
        from transcend.engine.files import write_atomic

        table["wheels"] = found
        table["verified"] = dt.date.today().isoformat()
        write_atomic(TABLE, json.dumps(table, indent=2) + "\n")
        print(f"wrote {TABLE} ({len(changed)} entries changed)")
        return 0
    if changed:
        print(f"{TABLE.name} is stale (verified {table['verified']}):", *changed, sep="\n  ")
        print("rerun with --write, then check the markers in pyproject.toml (make test)")
        return 1
    print(f"{TABLE.name} matches PyPI (table verified {table['verified']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
