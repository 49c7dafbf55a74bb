"""The checks at the start of ``transcend gpu-run``: what the machine is and what pays on it.

Each returns a JSON-ready dict; none needs a GPU (on the CPU they measure the CPU), so the
rehearsal (``--dry-run``) runs them all.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transcend.training.model import CONFIGS, GPT, next_char_loss

H200_DATASHEET_TFLOPS = 989.0  # dense bf16, the vendor's figure (the same chip as the H100 SXM)


def versions(device: torch.device) -> dict[str, Any]:
    """The machine, the libraries and what onnxruntime can run on."""
    import onnxruntime as ort

    out: dict[str, Any] = {
        "python": sys.version.split()[0], "torch": torch.__version__,
        "cuda": torch.version.cuda, "numpy": np.__version__, "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(), "cpus": os.cpu_count(),
        "machine": platform.machine(), "device": str(device),
        # Where the project was imported from: docs/gpu-run.md links it in, unbuilt.
        "transcend": str(Path(__file__).parents[2]),
    }
    for name in ("onnx", "chess", "zstandard"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}",
                   multiprocessors=props.multi_processor_count)
    return out


def compile_blocker(backend: str | None, device: torch.device) -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot work on ``device`` for want of a compiler,
    or None. Inductor builds triton's CUDA launcher, a C extension, with ``$CC``, else gcc,
    else clang (as triton looks for them), against Python.h; on the CPU it compiles C++ (``$CXX``,
    else g++). Without them it fails only after minutes of tracing, so this looks first."""
    if backend != "inductor":
        return None
    if device.type == "cuda":
        variable, names, what = "CC", ("gcc", "clang"), "C compiler for triton's launcher"
    else:
        variable, names, what = "CXX", ("g++", "clang++"), "C++ compiler for inductor's kernels"
    given = os.environ.get(variable)
    if given:
        if not shutil.which(given):
            return f"${variable}={given} is not an executable: no {what}"
    elif not any(shutil.which(name) for name in names):
        return f"no {what} ({' or '.join(names)}, or ${variable})"
    if device.type == "cuda":
        # Triton's own choice of headers: Debian's `posix_local` scheme read as `posix_prefix`.
        scheme = sysconfig.get_default_scheme()
        scheme = "posix_prefix" if scheme == "posix_local" else scheme
        header = Path(sysconfig.get_paths(scheme=scheme)["include"]) / "Python.h"
        if not header.is_file():
            return f"no {header}: triton's launcher cannot be built (Python's headers missing)"
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, size: int = 8192, repeats: int = 10) -> float | None:
    """bf16 matrix-product TFLOP/s on random data: the ceiling MFU is also quoted against."""
    if device.type != "cuda":
        return None
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def _batch(config: str, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    block = CONFIGS[config].block_size
    xy = torch.randint(0, CONFIGS[config].vocab_size, (batch, block + 1), generator=gen)
    return xy[:, :-1].to(device), xy[:, 1:].to(device)


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
          dtype: torch.dtype) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        logits = model(x)
    return next_char_loss(logits, y)


def bf16_agrees(config: str, batch: int, device: torch.device) -> dict[str, Any]:
    """One training step's loss and gradients under bf16 autocast against fp32, same weights
    and batch. They agree when the loss is within 1% and the gradient within 5% (relative
    norm of the difference): bf16 keeps 8 bits of mantissa."""
    torch.manual_seed(0)
    model = GPT(CONFIGS[config]).to(device)
    x, y = _batch(config, batch, device)
    result: dict[str, Any] = {"config": config, "batch": batch}
    grads = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model.zero_grad(set_to_none=True)
        loss = _loss(model, x, y, dtype)
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten().float() for p in model.parameters()])
        result[f"loss_{name}"] = float(loss.detach())
    diff = float((grads["bf16"] - grads["fp32"]).norm() / grads["fp32"].norm())
    result["grad_relative_diff"] = diff
    result["loss_relative_diff"] = abs(result["loss_bf16"] / result["loss_fp32"] - 1)
    result["agrees"] = bool(result["loss_relative_diff"] < 0.01 and diff < 0.05)
    return result


def throughput(config: str, batch: int, steps: int, device: torch.device, dtype: torch.dtype,
               compile_backend: str | None, peak_tflops: float | None) -> dict[str, Any]:
    """Training tokens/s of ``config`` at ``batch`` x its window (fused AdamW on CUDA), with
    ``torch.compile`` when a backend is given; the first two steps (compilation, warm-up) are
    timed apart. MFU counts the PaLM-appendix FLOPs per token against ``peak_tflops``."""
    torch.manual_seed(0)
    model = GPT(CONFIGS[config]).to(device)
    optimizer = model.configure_optimizer(3e-4, 0.1, (0.9, 0.95), device.type)
    run = torch.compile(model, backend=compile_backend) if compile_backend else model
    x, y = _batch(config, batch, device)
    losses = []

    def one_step() -> None:
        loss = _loss(run, x, y, dtype)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    start = time.perf_counter()
    for _ in range(2):
        one_step()
    _sync(device)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(device)
    seconds = time.perf_counter() - start
    tokens_per_s = steps * batch * CONFIGS[config].block_size / seconds
    flops = model.flops_per_token()
    out: dict[str, Any] = {
        "config": config, "batch": batch, "block": CONFIGS[config].block_size, "steps": steps,
        "dtype": str(dtype).removeprefix("torch."), "compile": compile_backend,
        "warmup_s": round(warmup, 2), "tokens_per_s": tokens_per_s,
        "flops_per_token": flops, "first_loss": float(losses[0]),
        "finite": bool(all(torch.isfinite(v) for v in losses)),
    }
    if peak_tflops:
        out["mfu_vs_measured_peak"] = tokens_per_s * flops / (peak_tflops * 1e12)
        out["mfu_vs_datasheet"] = tokens_per_s * flops / (H200_DATASHEET_TFLOPS * 1e12)
    return out


def onnx_cuda(model_path: str, positions: int = 20) -> dict[str, Any]:
    """The exported model on onnxruntime's CUDA provider: parity of the move distributions with
    the CPU provider, and the engine's move latency; says plainly when there is no provider."""
    import chess
    import onnxruntime as ort

    from transcend.engine.policy import Policy

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return {"available": False,
                "note": f"onnxruntime {ort.__version__} here has no CUDA provider "
                        f"(providers: {', '.join(providers)}); nothing measured"}
    gpu = Policy(model_path, device="cuda")
    if gpu.info.provider == "CPUExecutionProvider":
        return {"available": False, "note": gpu.info.device_note}
    cpu = Policy(model_path, device="cpu")
    rng = np.random.default_rng(0)
    board = chess.Board()
    worst, times = 0.0, []
    for _ in range(positions):
        if board.is_game_over():
            board = chess.Board()
        want = cpu.move_distribution(board, 1.0, "token")
        got = gpu.move_distribution(board, 1.0, "token")
        worst = max(worst, max(abs(got[m] - p) for m, p in want.items()))
        start = time.perf_counter()
        move = gpu.choose(board, 0.01, "token", rng, distribution=False).move
        times.append(time.perf_counter() - start)
        board.push(move)
    return {"available": True, "provider": gpu.info.provider,
            "max_probability_diff": worst, "move_latency_ms_median": 1000 * np.median(times),
            "move_latency_ms_p95": 1000 * float(np.percentile(times, 95))}
