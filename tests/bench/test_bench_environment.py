"""The machine record every result starts with, and the lines it is rendered as."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from slimbert.bench import environment as environment_module
from slimbert.bench.environment import CPU_FLAGS, environment, machine_lines

CPUINFO = Path("/proc/cpuinfo")


def test_environment_records_what_a_result_needs():
    env = environment([1, 2])
    flags = CPUINFO.read_text() if CPUINFO.exists() else ""
    assert ("avx512_vnni" in env["cpu_flags"]) == (" avx512_vnni" in flags)
    assert env["threads"] == [1, 2] and env["thread_settings"]["torch"] >= 1
    assert {
        "git_revision",
        "cpu",
        "cores",
        "memory_gb",
        "gpu",
        "versions",
        "onnxruntime_providers",
    } <= set(env)
    assert (
        "onnxruntime" in env["versions"] and "CPUExecutionProvider" in env["onnxruntime_providers"]
    )


@pytest.mark.skipif(not CPUINFO.exists(), reason="needs /proc/cpuinfo")
def test_cpu_model_and_flags_come_from_cpuinfo():
    lines = CPUINFO.read_text().splitlines()
    model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    flags = next(
        set(line.split(":", 1)[1].split())
        for line in lines
        if line.startswith(("flags", "Features"))
    )
    env = environment(1)
    assert env["cpu"] == model
    # only the flags that pick kernels are kept, sorted
    assert env["cpu_flags"] == sorted(flags & CPU_FLAGS)
    assert machine_lines(env)[3].startswith(f"Machine: {model} (")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_revision_is_the_checkout_slimbert_runs_from():
    here = Path(environment_module.__file__).parent
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here
    ).stdout.strip()
    if not head:
        pytest.skip("slimbert is not installed from a git checkout")
    revision = environment()["git_revision"]
    assert revision in (head, f"{head}-dirty")


def test_a_git_archive_copy_names_the_revision_it_was_made_from(tmp_path):
    from slimbert.bench.environment import REVISION_FILE, _archive_revision

    # in the checkout the file holds git's placeholder, which `git archive` fills in
    assert REVISION_FILE.read_text().strip() == "$Format:%h$"
    assert _archive_revision(REVISION_FILE) is None
    attributes = (REVISION_FILE.parents[2] / ".gitattributes").read_text()
    assert "src/slimbert/REVISION export-subst" in attributes
    archived = tmp_path / "REVISION"
    archived.write_text("1bccc10\n")
    assert _archive_revision(archived) == "1bccc10 (git archive)"
    assert _archive_revision(tmp_path / "missing") is None


def test_machine_lines_name_the_machine_threads_and_libraries():
    env = {
        "date": "2026-01-02 03:04 UTC",
        "command": "slimbert bench --model m",
        "git_revision": "abc1234-dirty",
        "cpu": "Example CPU 9000",
        "cpu_flags": ["avx2", "avx512_vnni"],
        "cores": 16,
        "usable_cores": 4,
        "memory_gb": 62.5,
        "gpu": {"name": "Example GPU", "driver": "550.1", "cuda": "12.4"},
        "threads": [1, 4],
        "thread_settings": {"torch": 4, "OMP_NUM_THREADS": "4"},
        "versions": {"python": "3.11.7", "torch": "2.13.0"},
    }
    assert machine_lines(env) == [
        "Command: `slimbert bench --model m`",
        "Git revision: abc1234-dirty",
        "Date: 2026-01-02 03:04 UTC",
        "Machine: Example CPU 9000 (avx2, avx512_vnni), 16 cores (4 usable), 62.5 GiB, "
        "GPU: Example GPU, driver 550.1, CUDA 12.4",
        "Threads: [1, 4]; torch=4, OMP_NUM_THREADS=4",
        "Libraries: python 3.11.7, torch 2.13.0",
    ]
    # all cores usable, no GPU, no thread settings: nothing said about them beyond "none"
    bare = {**env, "usable_cores": 16, "gpu": None, "thread_settings": {}, "cpu_flags": []}
    assert machine_lines(bare)[3] == (
        "Machine: Example CPU 9000 (no AVX-512), 16 cores, 62.5 GiB, GPU: none"
    )
    assert machine_lines(bare)[4] == "Threads: [1, 4]"
