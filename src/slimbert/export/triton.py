"""A Triton Inference Server model repository for an exported classifier: clients send raw text.

    REPO/
      README.md                  how to serve it and smoke-test it
      client.py                  stdlib-only client (KServe v2 HTTP/JSON); --smoke checks answers
      smoke.json                 a few eval texts and the logits the validated ONNX model gave them
      labels.json                class id → label
      <name>/                    ensemble: TEXT [, TEXT_PAIR] (BYTES) → logits (FP32)
        config.pbtxt
        1/                       (empty: Triton wants a version folder for ensembles too)
      <name>_tokenizer/          Python backend: tokenizers' Rust tokenizer, no transformers needed
        config.pbtxt
        1/model.py
        1/tokenizer.json
      <name>_onnx/               onnxruntime backend, or (--triton-backend python) the Python
        config.pbtxt             backend running the graph with ONNX Runtime; the config is
        1/model.onnx             generated from the graph's own inputs and outputs
        1/model.py               (python only)

With --triton-deploy, REPO-deploy/ beside it holds a Dockerfile and Kubernetes manifests
(export/triton_deploy.py).

The ensemble's output carries the labels (labels.txt, Triton's classification extension): ask
for `"parameters": {"classification": 1}` on it to get "score:index:label" strings.

Each client request is tokenised on its own and padded to its longest text (`padding: longest`
in the tokenizer's parameters); Triton's dynamic batcher only merges requests of the same
shape, so set `padding` to `max_length` to let it merge every request, at the cost of padded
compute.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from slimbert.data import REGRESSION, Examples
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier
from slimbert.export.triton_config import (
    LABELS_FILE,
    TEXT_INPUT,
    TEXT_PAIR_INPUT,
    TritonConfig,
    batchable,
    ensemble_config,
    onnx_config,
    read_config,
    tokenizer_config,
)
from slimbert.export.triton_deploy import DeployConfig, deploy_files, kubernetes_name
from slimbert.export.triton_templates import (
    CLIENT_PY,
    LOCAL_SERVER,
    MIN_ORT_FOR_OPSET,
    MODEL_PY,
    ONNX_MODEL_PY,
    README,
)
from slimbert.families import TOKENIZER_INPUTS
from slimbert.files import (
    ONNX_FILE,
    TOKENIZER_FILE,
    atomic_dir,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["TritonConfig", "describe", "read_config", "smoke_logits", "write_repository"]

# Logits a Triton server may differ by from the validated ones: other CPUs, other int8/fp16
# kernels.
SMOKE_TOLERANCE = {"int8": 0.1, "fp16": 0.05}


def smoke_logits(
    onnx_path: Path,
    tokenizer,
    examples: Examples,
    max_length: int,
    provider: str,
    runtime: dict,
    precision: str,
    count: int,
) -> dict:
    """The first `count` eval texts and the logits (count, C) this artifact gives them in one
    padded request: smoke.json, what the generated client's --smoke compares a server with."""
    picked = examples.subset(range(min(count, len(examples))))
    pairs = picked.text_pairs if picked.is_pair else None
    encoded = tokenizer(
        picked.texts,
        pairs,
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="np",
    )
    session = OnnxClassifier(
        onnx_path,
        provider,
        disabled_optimizers=runtime.get(provider, {}).get("disabled_optimizers", ()),
    )
    logits = session({k: v for k, v in encoded.items()})
    return {
        "texts": picked.texts,
        "text_pairs": pairs,
        "logits": logits.astype(float).round(6).tolist(),
        "tolerance": SMOKE_TOLERANCE.get(precision, 1e-3),
    }


def _hint_note(manifest: dict) -> str:
    """The manifest's session hints that Triton's backend cannot apply, and what that costs."""
    disabled = [
        name
        for hints in (manifest.get("runtime") or {}).values()
        for name in hints.get("disabled_optimizers", [])
    ]
    if not disabled:
        return ""
    return (
        f"\n- slimbert runs this graph with ONNX Runtime's {', '.join(disabled)} turned off "
        "(faster on the CPU; see slimbert/export/optimize.py). Triton's onnxruntime backend "
        "cannot turn off single optimizers, so it re-fuses them: expect the CPU latency "
        "slimbert measured for the default session, not the hinted one."
    )


def _python_backend_parameters(tokenizer_file: Path, manifest: dict, config: TritonConfig) -> dict:
    """What the Python backend's model.py needs to run the graph as slimbert validated it: the
    pad id requests are padded with, and the session hints of the manifest."""
    padding = json.loads(tokenizer_file.read_text()).get("padding") or {}
    provider = "cuda" if config.kind == "gpu" else "cpu"
    hints = (manifest.get("runtime") or {}).get(provider) or {}
    return {
        "pad_token_id": str(padding.get("pad_id", 0)),
        "disabled_optimizers": ",".join(hints.get("disabled_optimizers", [])),
    }


def _readme(config: TritonConfig, manifest: dict, batched: bool, smoke_count: int) -> str:
    """The repository's README.md: what each model is, how the graph was validated, how to serve."""
    validation = manifest["validation"]
    output = manifest["outputs"][0]
    contrib = sorted(set(manifest.get("contrib_ops", [])))
    python = config.backend == "python"
    return README.format(
        source=manifest["source"],
        name=config.name,
        graph_inputs=", ".join(r["name"] for r in manifest["inputs"]),
        backend=(
            "Python backend running the graph with ONNX Runtime"
            if python
            else "ONNX Runtime backend"
        ),
        kind="GPU" if config.kind == "gpu" else "CPU",
        output=output["name"],
        width=output["shape"][-1],
        opset=manifest["opset"],
        precision=manifest["precision"],
        contrib=f", contrib ops {', '.join(contrib)}" if contrib else "",
        ort_version=manifest["versions"].get("onnxruntime")
        or manifest["versions"].get("onnxruntime-gpu"),
        provider=validation["provider"],
        validation=(
            f"label agreement {validation['label_agreement']:.2f}%, "
            f"Δ{validation['metric_name']} {validation['delta_metric']:+.2f} "
            f"on {validation['examples']} examples"
        ),
        max_batch_size=config.max_batch_size if batched else 0,
        delay=config.max_queue_delay_us,
        instances=config.instances,
        max_length=manifest["max_length"],
        gpus="--gpus all " if config.kind == "gpu" else "",
        packages="tokenizers numpy onnxruntime" if python else "tokenizers numpy",
        min_ort=MIN_ORT_FOR_OPSET.get(manifest["opset"], "a release supporting it"),
        hint="" if python else _hint_note(manifest),
        local=LOCAL_SERVER.format(repo_name=config.repo.name) if python else "",
        repo_name=config.repo.name,
        smoke=smoke_count,
    )


def _deploy(config: TritonConfig, manifest: dict) -> dict[str, str]:
    """REPO-deploy/'s files: the image adds the versions slimbert validated the graph with."""
    name = kubernetes_name(config.name)
    deploy = DeployConfig(
        name=name,
        image=config.image or f"slimbert-triton-{name}:latest",
        storage_uri=config.storage_uri or f"pvc://slimbert-models/{config.repo.name}",
        gpu=config.kind == "gpu",
    )
    versions = manifest["versions"]
    packages = [f"tokenizers=={versions['tokenizers']}", "numpy<2"]
    if config.backend == "python":
        runtime = "onnxruntime-gpu" if config.kind == "gpu" else "onnxruntime"
        ort = versions.get("onnxruntime") or versions.get("onnxruntime-gpu")
        packages.append(f"{runtime}=={ort}")
    return deploy_files(deploy, packages)


def _write_onnx_model(folder: Path, export_dir: Path, config: TritonConfig, manifest: dict) -> None:
    """<name>_onnx/: the graph, its config.pbtxt and, for the Python backend, its model.py."""
    (folder / "1").mkdir(parents=True)
    shutil.copy2(export_dir / ONNX_FILE, folder / "1" / ONNX_FILE)
    parameters = None
    if config.backend == "python":
        parameters = _python_backend_parameters(export_dir / TOKENIZER_FILE, manifest, config)
        write_text_atomic(folder / "1" / "model.py", ONNX_MODEL_PY)
    signature = {"inputs": manifest["inputs"], "outputs": manifest["outputs"]}
    write_text_atomic(
        folder / "config.pbtxt", onnx_config(folder.name, signature, config, parameters)
    )


def write_repository(config: TritonConfig, export_dir: Path, manifest: dict, smoke: dict) -> Path:
    """Write the repository for the export in `export_dir` (model.onnx, tokenizer.json, manifest).

    `smoke` holds {"texts", "text_pairs" (or None), "logits", "tolerance"} from the validated model.
    """
    tokenizer_file = export_dir / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise SlimbertError(
            f"--triton needs a fast tokenizer (tokenizer.json) in {export_dir}; "
            "save the model with a *TokenizerFast"
        )
    signature = {"inputs": manifest["inputs"], "outputs": manifest["outputs"]}
    graph_inputs = [r["name"] for r in signature["inputs"]]
    unknown = set(graph_inputs) - set(TOKENIZER_INPUTS)  # the graph's: what the model reads
    if unknown:
        raise SlimbertError(
            f"--triton: the tokenizer model cannot produce graph inputs {sorted(unknown)}"
        )
    batched = config.max_batch_size > 0 and batchable(signature)
    text_inputs = (
        [TEXT_INPUT, TEXT_PAIR_INPUT] if smoke.get("text_pairs") is not None else [TEXT_INPUT]
    )
    onnx_name, tokenizer_name = f"{config.name}_onnx", f"{config.name}_tokenizer"
    output = signature["outputs"][0]
    # made before anything is written: a bad --triton-storage-uri leaves no repository behind
    deploy = _deploy(config, manifest) if config.deploy else None
    with atomic_dir(config.repo) as repo:
        (repo / config.name / "1").mkdir(parents=True)
        (repo / tokenizer_name / "1").mkdir(parents=True)
        _write_onnx_model(repo / onnx_name, export_dir, config, manifest)
        shutil.copy2(tokenizer_file, repo / tokenizer_name / "1" / "tokenizer.json")
        labelled = manifest["task"] != REGRESSION
        if labelled:
            labels = manifest["id2label"]
            write_text_atomic(
                repo / config.name / LABELS_FILE,
                "".join(f"{labels[str(i)]}\n" for i in range(len(labels))),
            )
        write_text_atomic(
            repo / tokenizer_name / "config.pbtxt",
            tokenizer_config(
                tokenizer_name, text_inputs, signature, config, manifest["max_length"], batched
            ),
        )
        write_text_atomic(repo / tokenizer_name / "1" / "model.py", MODEL_PY)
        write_text_atomic(
            repo / config.name / "config.pbtxt",
            ensemble_config(
                config.name,
                tokenizer_name,
                onnx_name,
                text_inputs,
                signature,
                config,
                batched,
                labelled,
            ),
        )
        write_text_atomic(repo / "client.py", CLIENT_PY)
        (repo / "client.py").chmod(0o755)
        write_json_atomic(
            repo / "labels.json",
            {"model": config.name, "output": output["name"], "id2label": manifest["id2label"]},
        )
        write_json_atomic(repo / "smoke.json", smoke)
        write_text_atomic(
            repo / "README.md", _readme(config, manifest, batched, len(smoke["texts"]))
        )
    if deploy is not None:
        # beside the repository, not in it: Triton takes every folder in it for a model
        with atomic_dir(deploy_dir(config)) as folder:
            for file, text in deploy.items():
                write_text_atomic(folder / file, text)
    return config.repo


def deploy_dir(config: TritonConfig) -> Path:
    """Where --triton-deploy's files go: REPO-deploy/, beside REPO."""
    return config.repo.parent / f"{config.repo.name}-deploy"


def describe(config: TritonConfig) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
