"""The machine a result was measured on: CPU model and the instruction sets that matter for
inference, cores, memory, GPU, library versions, thread settings and the git revision. Every
result file starts with these (`machine_lines`), so that no number travels without its machine.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from slimbert.cpu import cpu_flags

# the CPU flags that decide which matmul kernels run (AVX-512 VNNI and AMX for int8, ...)
CPU_FLAGS = {
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
}
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "ORT_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)


def _cpu() -> tuple[str, set[str]]:
    """The CPU's model name and its flags from /proc/cpuinfo (x86 `flags`, ARM `Features`)."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu_model in ("unknown", "", platform.machine()):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu_model, set(cpu_flags())


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        return None


REVISION_FILE = Path(__file__).parents[1] / "REVISION"  # `$Format:%h$`, filled by git archive


def _archive_revision(path: Path = REVISION_FILE) -> str | None:
    """The revision `git archive` wrote into REVISION (.gitattributes: export-subst), with
    "(git archive)" after it; None in a checkout, where the file still holds its placeholder."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return f"{text} (git archive)" if text and not text.startswith("$Format") else None


def _git_revision() -> str | None:
    """The short revision of the checkout slimbert runs from, `-dirty` with uncommitted changes
    to tracked files; in a copy made by `git archive`, the revision it was made from; else
    None."""
    return _checkout_revision() or _archive_revision()


def _checkout_revision() -> str | None:
    here = Path(__file__).parent
    try:
        revision = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=here,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=here,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (revision + ("-dirty" if dirty else "")) if revision else None


def _gpu_record() -> dict | None:
    """GPU model, driver and memory from nvidia-smi, CUDA from torch; None without a GPU."""
    gpu = None
    if shutil.which("nvidia-smi"):
        query = [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ]
        try:
            lines = (
                subprocess.run(query, capture_output=True, text=True, timeout=10)
                .stdout.strip()
                .splitlines()
            )
            if lines:
                name, driver, memory = (part.strip() for part in lines[0].split(",", 2))
                gpu = {"name": name, "driver": driver, "memory": memory, "count": len(lines)}
        except (OSError, subprocess.SubprocessError, ValueError):
            gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = {**(gpu or {"name": torch.cuda.get_device_name(0)}), "cuda": torch.version.cuda}
    except Exception:  # pragma: no cover - a broken CUDA install must not stop a CPU report
        pass
    return gpu


def environment(threads: int | list[int] | None = None) -> dict:
    """Machine, libraries, thread settings and revision: what every result file must start with."""
    # provenance imports torch; importing this module for `machine_lines` (reports, renderers)
    # must not pay for it
    from slimbert.provenance import library_versions

    cpu_model, flags = _cpu()
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    except ImportError:  # pragma: no cover
        providers = []
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        torch_threads = None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["slimbert" if i == 0 else a for i, a in enumerate(sys.argv)]),
        "git_revision": _git_revision(),
        "cpu": cpu_model,
        "cpu_flags": sorted(flags & CPU_FLAGS),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpu": _gpu_record(),
        "threads": threads,
        "thread_settings": {
            "torch": torch_threads,
            **{name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        },
        "onnxruntime_providers": providers,
        "versions": library_versions(),
    }


def machine_lines(env: dict) -> list[str]:
    """An `environment()` record as the lines a result file opens with: command, revision,
    date, machine (CPU, flags, cores, memory, GPU), threads and library versions."""
    gpu = env.get("gpu")
    gpu_text = (
        "none"
        if not gpu
        else f"{gpu.get('name')}"
        + (f", driver {gpu['driver']}" if gpu.get("driver") else "")
        + (f", CUDA {gpu['cuda']}" if gpu.get("cuda") else "")
    )
    flags = ", ".join(env.get("cpu_flags") or []) or "no AVX-512"
    usable = (
        f" ({env['usable_cores']} usable)"
        if env.get("usable_cores") not in (None, env.get("cores"))
        else ""
    )
    settings = env.get("thread_settings") or {}
    return [
        f"Command: `{env.get('command')}`",
        f"Git revision: {env.get('git_revision')}",
        f"Date: {env.get('date')}",
        f"Machine: {env.get('cpu')} ({flags}), {env.get('cores')} cores{usable}, "
        f"{env.get('memory_gb')} GiB, GPU: {gpu_text}",
        f"Threads: {env.get('threads')}"
        + ("; " + ", ".join(f"{k}={v}" for k, v in settings.items()) if settings else ""),
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()),
    ]
