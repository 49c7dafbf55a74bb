"""`pip install transcend` works on every platform chess players use, and the engine does not
care which onnxruntime build it got.

The requirement markers of pyproject.toml are evaluated with `packaging` for each target
(operating system, CPU, Python); every distribution they select there must publish a wheel for
it, according to benchmarks/platform_wheels.json. That table is re-checked against PyPI by
benchmarks/verify_wheels.py (`make bench`), which needs the network; these tests do not.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from transcend.engine import model_file
from transcend.engine.model_file import create_session, device_choices, gpu_build_available
from transcend.engine.uci import Output

ROOT = Path(__file__).resolve().parents[1]
TABLE = json.loads((ROOT / "benchmarks" / "platform_wheels.json").read_text())
TARGETS = ["windows-x86_64", "macos-arm64", "macos-x86_64", "linux-x86_64", "linux-aarch64"]
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
GPU_TARGETS = {"windows-x86_64", "linux-x86_64"}

# The registry check is a script, not a package; its requirement and marker helpers are shared.
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from verify_wheels import (
        engine_requirements,
        marker_environment,
        pip_platform_tags,
        selected_requirements,
    )
finally:
    sys.path.pop(0)


def requirements() -> list[Requirement]:
    return engine_requirements(ROOT / "pyproject.toml")


def selected(reqs: list[Requirement], target: str, python: str) -> list[Requirement]:
    return selected_requirements(reqs, marker_environment(TABLE, target, python))


def missing_wheels(reqs: list[Requirement]) -> list[str]:
    """(target, Python, requirement) wherever the table has no wheel that satisfies it."""
    problems = []
    for target in TARGETS:
        for python in PYTHONS:
            for req in selected(reqs, target, python):
                version = TABLE["wheels"].get(req.name, {}).get(target, {}).get(python)
                if version is None or not req.specifier.contains(version, prereleases=True):
                    problems.append(f"{target} Python {python}: {req} (table: {version})")
    return problems


def test_the_table_covers_the_targets_and_is_dated() -> None:
    assert TABLE["pythons"] == PYTHONS
    assert sorted(TABLE["targets"]) == sorted(TARGETS)
    dt.date.fromisoformat(TABLE["verified"])
    for req in requirements():
        assert req.name in TABLE["wheels"], f"{req.name} was never checked against PyPI"


def test_every_target_gets_only_distributions_with_wheels() -> None:
    assert missing_wheels(requirements()) == []


def test_the_check_fails_for_an_unconditional_gpu_build() -> None:
    """What pyproject.toml said before the markers: no wheel on macOS and ARM Linux."""
    problems = missing_wheels([Requirement("onnxruntime-gpu>=1.17")])
    broken = {p.split()[0] for p in problems}
    assert broken == {"macos-arm64", "macos-x86_64", "linux-aarch64"}


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("target", TARGETS)
def test_exactly_one_onnxruntime_build_per_target(target: str, python: str) -> None:
    names = {r.name for r in selected(requirements(), target, python)}
    builds = names & {"onnxruntime", "onnxruntime-gpu"}
    # Both install the `onnxruntime` module: two of them would overwrite each other's files.
    assert builds == ({"onnxruntime-gpu"} if target in GPU_TARGETS else {"onnxruntime"})
    assert {"chess", "numpy", "click"} <= names


@pytest.mark.parametrize("target", TARGETS)
def test_the_engine_agrees_with_the_markers(target: str, monkeypatch) -> None:
    """The engine's own idea of where the GPU build exists (for its hints) matches pyproject."""
    env = TABLE["targets"][target]["environment"]
    monkeypatch.setattr(sys, "platform", env["sys_platform"])
    monkeypatch.setattr(platform, "machine", lambda: env["platform_machine"])
    assert gpu_build_available() == (target in GPU_TARGETS)
    assert ("coreml" in device_choices()) == target.startswith("macos")


def test_the_engine_docs_name_the_verification_date() -> None:
    docs = " ".join((ROOT / "docs" / "engine.md").read_text().split())  # across line breaks
    assert f"verified against PyPI on {TABLE['verified']}" in docs


def test_coreml_elsewhere_falls_back_to_the_cpu(tiny_onnx: Path) -> None:
    _, provider, note = create_session(tiny_onnx, "coreml", 1)
    assert provider == "CPUExecutionProvider"
    assert "CoreMLExecutionProvider is not in this onnxruntime build" in note


def test_missing_cuda_provider_hint_depends_on_the_platform(tiny_onnx: Path, monkeypatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(model_file, "gpu_build_available", lambda: False)
    _, provider, note = create_session(tiny_onnx, "auto", 1)
    assert provider == "CPUExecutionProvider"
    assert "onnxruntime-gpu has no wheels for this platform" in note
    monkeypatch.setattr(model_file, "gpu_build_available", lambda: True)
    assert "install onnxruntime-gpu" in create_session(tiny_onnx, "cuda", 1)[2]


class _ClosedPipe:
    def write(self, text: str) -> int:
        raise OSError(22, "Invalid argument")  # what Windows raises for a closed pipe

    def flush(self) -> None:
        pass


def test_output_to_a_gone_gui_goes_quiet() -> None:
    out = Output(_ClosedPipe())  # type: ignore[arg-type]
    out.send("bestmove e2e4")
    assert out.broken
    out.send("bestmove e2e4")  # and stays quiet


def test_pip_platform_tags_widen_manylinux() -> None:
    tags = pip_platform_tags(["manylinux_2_28_aarch64", "win_amd64"])
    assert tags[0] == "manylinux_2_28_aarch64"
    assert {"manylinux_2_17_aarch64", "manylinux2014_aarch64", "win_amd64"} <= set(tags)
    assert "manylinux_2_16_aarch64" not in tags


def test_write_atomic_waits_out_a_briefly_locked_file(tmp_path: Path, monkeypatch) -> None:
    from transcend.engine import files

    real = files.os.replace
    calls = []

    def locked_twice(src: str, dst: Path) -> None:
        calls.append(dst)
        if len(calls) <= 2:
            raise PermissionError(13, "The process cannot access the file")  # Windows, opened
        real(src, dst)

    monkeypatch.setattr(files.os, "replace", locked_twice)
    target = tmp_path / "out.json"
    files.write_atomic(target, "{}")
    assert target.read_text() == "{}" and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(files, "REPLACE_RETRIES", 2)
    with pytest.raises(PermissionError):
        files.write_atomic(target, "[]")
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left
