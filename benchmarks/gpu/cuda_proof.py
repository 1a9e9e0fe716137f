#!/usr/bin/env python3
"""Prove that ONNX Runtime computes on the GPU, from its own account rather than from a flag.

    python cuda_proof.py synthetic OUT_DIR [--expect-site DIR]
        a 2-layer MLP built here, (B=256, 1024) -> 4096 -> 1024, fp32
    python cuda_proof.py model MODEL.onnx OUT_DIR [--expect-site DIR]
        an exported classifier, fed random token ids (B=8, L=64)

For each it writes OUT_DIR/cuda-proof-<name>.json and ONNX Runtime's profile
(ort-profile-<name>.json), and checks:
  - the onnxruntime module loaded is the GPU build (from --expect-site when given);
  - CUDAExecutionProvider is first in the session's get_providers();
  - the profile's node events: how many ran on each provider, and which ops ran on the CPU
    (synthetic: none may; model: only shape arithmetic may, which ONNX Runtime keeps on the CPU);
  - whether the session still builds with CPU fallback disabled (session.disable_cpu_ep_fallback);
  - synthetic: |CUDA - CPU| of the fp32 output with TF32 at ONNX Runtime's default and with
    use_tf32=0, which tells whether fp32 parity gates can hold on this GPU.
Exit status 1 when any check fails. torch is not imported, so the CUDA libraries are found the
way `slimbert serve` finds them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROFILED_RUNS = 5  # keeps the profile to a few hundred kB


def synthetic_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((1024, 4096)) / 32).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(4096, np.float32), "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((4096, 1024)) / 64).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),  # (B, 4096)
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["o"]),  # (B, 1024)
        helper.make_node("Softmax", ["o"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "cuda_proof",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 1024])],
        [w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # readable by every onnxruntime this project supports
    onnx.save(model, str(path))


def feeds_for(session, batch: int, length: int) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.get_inputs():
        if spec.name == "input_ids":
            feeds[spec.name] = rng.integers(1000, 2000, (batch, length), dtype=np.int64)
        elif spec.name == "attention_mask":
            feeds[spec.name] = np.ones((batch, length), np.int64)
        elif spec.type == "tensor(int64)":
            feeds[spec.name] = np.zeros((batch, length), np.int64)
        else:
            feeds[spec.name] = rng.standard_normal((batch, 1024)).astype(np.float32)
    return feeds


def placement(profile_path: Path) -> dict:
    """Node events of an ONNX Runtime profile, by provider and by op type."""
    events = json.loads(profile_path.read_text())
    by_provider: Counter = Counter()
    cpu_ops: Counter = Counter()
    gpu_ops: Counter = Counter()
    kernels = 0
    for event in events:
        if event.get("cat") == "Kernel":
            kernels += 1  # CUDA kernel launches, where this build records them
        args = event.get("args") or {}
        if event.get("cat") != "Node" or "provider" not in args:
            continue
        if not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        by_provider[args["provider"]] += 1
        (gpu_ops if args["provider"] == CUDA else cpu_ops)[args.get("op_name", "?")] += 1
    return {
        "node_runs_by_provider": dict(by_provider),
        "ops_on_cuda": dict(gpu_ops),
        "ops_elsewhere": dict(cpu_ops),
        "kernel_events": kernels,
    }


def session(
    ort,
    path: Path,
    provider_options: dict | None = None,
    profile: Path | None = None,
    no_fallback: bool = False,
):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile)
    if no_fallback:
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    providers = [(CUDA, provider_options or {})] if provider_options is not None else [CUDA]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def timed_runs(sess, feeds: dict, runs: int) -> float:
    sess.run(None, feeds)
    start = time.perf_counter()
    for _ in range(runs):
        sess.run(None, feeds)
    return (time.perf_counter() - start) / runs * 1000


def prove(kind: str, model_path: Path, out: Path, expect_site: Path | None) -> dict:
    import onnxruntime as ort

    result: dict = {
        "kind": kind,
        "model": str(model_path),
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
        "device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
        "torch_imported": "torch" in sys.modules,
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
        "failures": [],
    }
    failures = result["failures"]
    if expect_site is not None and not Path(ort.__file__).resolve().is_relative_to(
        expect_site.resolve()
    ):
        failures.append(
            f"onnxruntime loaded from {ort.__file__}, not from {expect_site}: "
            "the image's CPU build shadows the GPU one"
        )
    if CUDA not in ort.get_available_providers():
        failures.append(f"{CUDA} is not available: {ort.get_available_providers()}")
        return result

    name = "synthetic" if kind == "synthetic" else model_path.parent.name
    prefix = out / f"ort-profile-{name}"
    sess = session(ort, model_path, profile=prefix)
    result["session_providers"] = sess.get_providers()
    if sess.get_providers()[0] != CUDA:
        failures.append(f"session providers {sess.get_providers()}: {CUDA} is not first")
    feeds = feeds_for(sess, 256 if kind == "synthetic" else 8, 64)
    for _ in range(PROFILED_RUNS):
        cuda_out = sess.run(None, feeds)[0]
    written = Path(sess.end_profiling())
    profile = out / f"ort-profile-{name}.json"
    os.replace(written, profile)
    result["profile"] = profile.name
    result.update(placement(profile))
    on_cuda = result["node_runs_by_provider"].get(CUDA, 0)
    if on_cuda == 0:
        failures.append("the profile shows no node run on CUDAExecutionProvider")
    result["cuda_ms_per_run"] = timed_runs(session(ort, model_path), feeds, 20)

    try:
        session(ort, model_path, no_fallback=True).run(None, feeds)
        result["builds_with_cpu_fallback_disabled"] = True
    except Exception as error:  # noqa: BLE001 - the answer is the finding
        result["builds_with_cpu_fallback_disabled"] = f"{type(error).__name__}: {str(error)[:300]}"

    if kind == "synthetic":
        if result["ops_elsewhere"]:
            failures.append(f"ops ran off the GPU: {result['ops_elsewhere']}")
        if result["builds_with_cpu_fallback_disabled"] is not True:
            failures.append("the all-CUDA graph does not build with CPU fallback disabled")
        cpu = ort.InferenceSession(str(model_path), providers=[CPU])
        reference = cpu.run(None, feeds)[0]
        result["cpu_ms_per_run"] = timed_runs(cpu, feeds, 5)
        result["max_abs_diff_vs_cpu_tf32_default"] = float(np.abs(cuda_out - reference).max())
        try:
            strict = session(ort, model_path, provider_options={"use_tf32": "0"})
            result["max_abs_diff_vs_cpu_tf32_off"] = float(
                np.abs(strict.run(None, feeds)[0] - reference).max()
            )
        except Exception as error:  # noqa: BLE001
            result["max_abs_diff_vs_cpu_tf32_off"] = f"use_tf32=0 refused: {error}"
    else:
        shape_ops = {
            "Shape",
            "Gather",
            "Unsqueeze",
            "Concat",
            "Slice",
            "Squeeze",
            "Reshape",
            "Cast",
            "ConstantOfShape",
            "Equal",
            "Where",
            "Expand",
            "Range",
            "Sub",
            "Mul",
            "Add",
            "Div",
        }
        heavy = {op: n for op, n in result["ops_elsewhere"].items() if op not in shape_ops}
        if heavy:
            failures.append(f"compute ops ran off the GPU: {heavy}")
        total = sum(result["node_runs_by_provider"].values())
        result["cuda_share_of_node_runs"] = on_cuda / total if total else 0.0

    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["synthetic", "model"])
    parser.add_argument(
        "paths", nargs="+", type=Path, help="synthetic: OUT_DIR; model: MODEL.onnx OUT_DIR"
    )
    parser.add_argument(
        "--expect-site", type=Path, help="the folder onnxruntime-gpu was installed into"
    )
    args = parser.parse_args()
    if len(args.paths) != (1 if args.kind == "synthetic" else 2):
        parser.error("synthetic takes OUT_DIR; model takes MODEL.onnx OUT_DIR")
    out = args.paths[-1]
    out.mkdir(parents=True, exist_ok=True)
    if args.kind == "synthetic":
        model_path = out / "synthetic.onnx"
        synthetic_model(model_path)
    else:
        model_path = args.paths[0]
    try:
        result = prove(args.kind, model_path, out, args.expect_site)
    finally:
        if args.kind == "synthetic":
            model_path.unlink(missing_ok=True)  # 32 MB of random weights: not a result
    name = "synthetic" if args.kind == "synthetic" else model_path.parent.name
    (out / f"cuda-proof-{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    summary = {
        k: result.get(k)
        for k in (
            "session_providers",
            "node_runs_by_provider",
            "ops_elsewhere",
            "builds_with_cpu_fallback_disabled",
            "max_abs_diff_vs_cpu_tf32_default",
            "max_abs_diff_vs_cpu_tf32_off",
            "cuda_ms_per_run",
            "cpu_ms_per_run",
        )
    }
    print(json.dumps({k: v for k, v in summary.items() if v is not None}))
    for failure in result["failures"]:
        print(f"cuda_proof: {failure}", file=sys.stderr)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
