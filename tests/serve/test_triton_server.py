"""The repository `export --triton --triton-backend python` writes, on a real tritonserver (the
nvidia-pytriton wheel's, from the venv `make triton-env` makes): it loads, and the whole dev file
sent through tritonclient over HTTP (one request per text, in flight together, so the dynamic
batcher pads and merges them) and gRPC (requests of 8) gets the labels `slimbert serve` and the
PyTorch model give, with the logits within float32 reach of PyTorch's.

Skipped in one line where the environment is absent; SLIMBERT_REQUIRE_TRITON=1 (CI) fails instead.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_bert, sentiment_rows, write_sst2
from serving import serve

from slimbert.data import read_examples
from slimbert.errors import SlimbertError
from slimbert.export.onnx import ExportOptions, export
from slimbert.export.triton import TritonConfig, read_config
from slimbert.models import load_classifier, load_tokenizer
from slimbert.serve import ServedModel
from slimbert.serve.triton_server import TritonServer, find_server

pytestmark = pytest.mark.triton

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
ENV = Path(os.environ.get("SLIMBERT_TRITON_ENV", ROOT / ".venv-triton"))
MAX_LENGTH = 16
BATCH = 8


@pytest.fixture(scope="module")
def server_files():
    try:
        return find_server(ENV)
    except SlimbertError as error:
        if os.environ.get("SLIMBERT_REQUIRE_TRITON") == "1":
            pytest.fail(str(error))
        pytest.skip(str(error))


def _pairs_dev(path: Path) -> Path:
    rows = sentiment_rows(20, 5)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["sentence1", "sentence2", "label"])
        for (first, label), (second, _) in zip(rows, reversed(rows), strict=True):
            writer.writerow([first, second, label])
    return path


def _exported(root: Path, pair: bool) -> dict:
    """A 2-layer classifier exported in fp32 with a python-backend Triton repository."""
    dev = (
        _pairs_dev(root / "dev.tsv")
        if pair
        else write_sst2(root / "dev.tsv", sentiment_rows(40, 2))
    )
    model_dir = build_bert(root / "model", layers=2, hidden=32, num_labels=2, seed=3)
    (model_dir / "slimbert.json").write_text(
        json.dumps({"method": "kd", "data": {"pair": pair, "max_length": MAX_LENGTH}})
    )
    config = TritonConfig(
        root / "triton", backend="python", max_batch_size=BATCH, instances=2, deploy=True
    )
    export(
        model_dir, dev, root / "export", max_length=MAX_LENGTH, options=ExportOptions(triton=config)
    )
    return {"dev": dev, "model": model_dir, "export": root / "export", "repo": root / "triton"}


@pytest.fixture(scope="module", params=[False, True], ids=["single", "pairs"])
def exported(request, tmp_path_factory, server_files) -> dict:
    return _exported(tmp_path_factory.mktemp("triton-real"), request.param)


def _pytorch_logits(model_dir: Path, texts, pairs) -> np.ndarray:
    tokenizer, model = load_tokenizer(model_dir), load_classifier(model_dir).eval()
    rows = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            encoded = tokenizer(
                text,
                pairs[i] if pairs else None,
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            rows.append(model(**encoded).logits[0].numpy())
    return np.stack(rows)


def _serve_labels(export_dir: Path, texts, pairs) -> tuple[list[str], np.ndarray]:
    body = (
        {"pairs": [[t, p] for t, p in zip(texts, pairs, strict=True)]}
        if pairs
        else {"texts": texts}
    )

    async def scenario(client, app):
        return (await client.post("/v1/predict", json=body)).json()["predictions"]

    predictions = serve(ServedModel(export_dir, threads=1), scenario)
    scores = np.array([[p["scores"]["0"], p["scores"]["1"]] for p in predictions])
    return [p["label"] for p in predictions], scores


def _http(url: str, texts, pairs, classify: bool = False):
    """Every text its own request, all in flight at once; or, with `classify`, one request per
    BATCH asking for the top class (Triton's classification extension: "score:index:label")."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"), concurrency=16)

    def inputs(rows: slice):
        columns = [("TEXT", texts)] + ([("TEXT_PAIR", pairs)] if pairs else [])
        tensors = []
        for name, values in columns:
            chunk = np.array([[v.encode()] for v in values[rows]], dtype=object)
            tensor = httpclient.InferInput(name, list(chunk.shape), "BYTES")
            tensor.set_data_from_numpy(chunk)
            tensors.append(tensor)
        return tensors

    if classify:
        output = [httpclient.InferRequestedOutput("logits", class_count=1)]
        answers = [
            client.infer("slimbert", inputs(slice(s, s + BATCH)), outputs=output)
            for s in range(0, len(texts), BATCH)
        ]
        return [row[0].decode() for a in answers for row in a.as_numpy("logits")]
    pending = [client.async_infer("slimbert", inputs(slice(i, i + 1))) for i in range(len(texts))]
    logits = np.concatenate([p.get_result().as_numpy("logits") for p in pending])
    client.close()
    return logits


def _grpc(server: TritonServer, texts, pairs) -> np.ndarray:
    job = {
        "url": server.grpc_url,
        "model": "slimbert",
        "output": "logits",
        "texts": texts,
        "pairs": pairs,
        "batch": BATCH,
    }
    done = subprocess.run(
        [
            str(server.files.env / "bin" / "python"),
            str(TESTS / "triton_grpc_client.py"),
        ],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.array(json.loads(done.stdout)["logits"])


def test_the_repository_serves_the_dev_file_as_slimbert_serve_and_pytorch_do(
    exported, server_files
):
    examples = read_examples(exported["dev"])
    texts = list(examples.texts)
    pairs = list(examples.text_pairs) if examples.is_pair else None
    assert (
        read_config(exported["repo"] / "slimbert_onnx" / "config.pbtxt")["max_batch_size"] == BATCH
    )
    expected = _pytorch_logits(exported["model"], texts, pairs)
    serve_labels, serve_scores = _serve_labels(exported["export"], texts, pairs)
    assert serve_labels == [str(i) for i in expected.argmax(1)]
    with TritonServer(exported["repo"], ENV) as server:
        http = _http(server.http_url, texts, pairs)
        classes = _http(server.http_url, texts, pairs, classify=True)
        grpc = _grpc(server, texts, pairs)
    for name, logits in (("HTTP", http), ("gRPC", grpc)):
        worst = float(np.abs(logits - expected).max())
        print(f"{name}: {len(texts)} rows, max |Δlogit| vs PyTorch {worst:.2e}", file=sys.stderr)
        assert logits.shape == expected.shape
        assert [str(i) for i in logits.argmax(1)] == serve_labels
        # fp32 ONNX Runtime against PyTorch eager, and padded batches against one row alone
        assert worst < 1e-4, name
    probabilities = np.exp(http) / np.exp(http).sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, serve_scores, atol=1e-5)
    # "score:index:label": the label comes from the ensemble's labels.txt
    assert [c.split(":")[2] for c in classes] == serve_labels


def test_a_repository_the_server_cannot_load_is_reported_with_its_log(tmp_path, server_files):
    (tmp_path / "repo" / "broken" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "nope"\n')
    with pytest.raises(SlimbertError, match="exited .* before it was ready") as caught:
        TritonServer(tmp_path / "repo", ENV, ready_timeout=60).start()
    assert "broken" in str(caught.value)


def test_a_missing_environment_is_one_line(tmp_path):
    with pytest.raises(SlimbertError, match=r"no tritonserver in .*make triton-env") as caught:
        find_server(tmp_path)
    assert "\n" not in str(caught.value)


def _validate(files: list[Path]) -> dict:
    done = subprocess.run(
        [str(ENV.resolve() / "bin" / "python"), str(TESTS / "k8s_validate.py")]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_deploy_manifests_hold_to_the_kubernetes_and_kserve_schemas(exported, tmp_path):
    """Every field of deploy/'s manifests is one the SDKs' models (generated from the published
    OpenAPI schemas) know, and every required one is set; the check itself catches a misspelt
    field and a missing required one."""
    deploy = exported["repo"].parent / "triton-deploy"
    files = [deploy / "kserve.yaml", deploy / "kubernetes.yaml"]
    assert _validate(files) == {str(f): [] for f in files}
    broken = tmp_path / "broken.yaml"
    text = files[1].read_text()
    broken.write_text(
        text.replace("replicas: 1", "replica: 1").replace(
            "- name: tritonserver", "- nam: tritonserver"
        )
    )
    errors = _validate([broken])[str(broken)]
    assert any("spec.replica: not a field of V1DeploymentSpec" in e for e in errors), errors
    assert any("Field required" in e and "name" in e for e in errors), errors
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(files[0].read_text().replace("modelFormat:", "modelFormats:"))
    errors = _validate([wrong])[str(wrong)]
    assert any("model_format" in e for e in errors), errors
