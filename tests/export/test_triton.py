"""The Triton repository `export --triton` writes: configs generated from the ONNX graph, a
Python-backend tokenizer equal to transformers', and a client whose --smoke passes against a
stand-in server running the ensemble."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import build_bert

from slimbert.errors import SlimbertError
from slimbert.export.onnx import ExportOptions, export
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.triton import TritonConfig, read_config
from slimbert.export.triton_config import onnx_config, tensor_specs
from slimbert.export.triton_deploy import DeployConfig, deploy_files, kubernetes_name


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("tiny3"), layers=3, hidden=32, heads=4)


@pytest.fixture(scope="module")
def fused(tmp_path_factory, tiny, sst2_files) -> tuple[Path, dict]:
    """--optimize for the CPU, with a Triton repository beside it."""
    root = tmp_path_factory.mktemp("fused")
    options = ExportOptions(
        optimize=OptimizeConfig.cpu(), triton=TritonConfig(root / "triton", smoke_examples=6)
    )
    return root / "out", export(tiny, sst2_files[1], root / "out", options=options)


SIGNATURE = {
    "inputs": [
        {"name": name, "dtype": "int64", "shape": ["batch_size", "sequence_length"]}
        for name in ("input_ids", "attention_mask")
    ],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch_size", 3]}],
}


def test_configs_read_back_as_written(tmp_path):
    """Batching drops the leading axis from dims; a graph with a fixed batch axis is not batched."""
    gpu = TritonConfig(tmp_path / "repo", kind="gpu", instances=2, max_batch_size=16)
    path = tmp_path / "config.pbtxt"
    path.write_text(onnx_config("m_onnx", SIGNATURE, gpu))
    assert read_config(path) == {
        "name": "m_onnx",
        "max_batch_size": 16,
        "input": [
            {"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]},
            {"name": "attention_mask", "data_type": "TYPE_INT64", "dims": [-1]},
        ],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [3]}],
    }
    text = path.read_text()
    assert "count: 2\n    kind: KIND_GPU" in text and "max_queue_delay_microseconds: 500" in text
    fixed = {
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [1, 8]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, 3]}],
    }
    path.write_text(onnx_config("m_onnx", fixed, gpu))
    unbatched = read_config(path)
    assert unbatched["max_batch_size"] == 0
    assert unbatched["input"][0]["dims"] == [1, 8] and "dynamic_batching" not in path.read_text()


def test_triton_config_refusals_name_the_fix(tmp_path):
    with pytest.raises(SlimbertError, match="--triton-name 'a b'"):
        TritonConfig(tmp_path, name="a b")
    with pytest.raises(SlimbertError, match="choose cpu or gpu"):
        TritonConfig(tmp_path, kind="tpu")
    with pytest.raises(SlimbertError, match="--triton-backend 'tensorrt': choose one of onnx"):
        TritonConfig(tmp_path, backend="tensorrt")
    with pytest.raises(SlimbertError, match="--triton-queue-delay-us must be ≥ 0"):
        TritonConfig(tmp_path, max_queue_delay_us=-1)
    with pytest.raises(SlimbertError, match="graph tensor type float64 has no Triton type"):
        tensor_specs([{"name": "x", "dtype": "float64", "shape": [1]}], batched=False)


def test_triton_configs_match_the_onnx_graph(fused):
    out, manifest = fused
    repo = Path(manifest["triton"]["repository"])
    graph = onnx.load(str(repo / "slimbert_onnx" / "1" / "model.onnx")).graph
    onnx_config = read_config(repo / "slimbert_onnx" / "config.pbtxt")
    graph_inputs = [(v.name, v.type.tensor_type.elem_type) for v in graph.input]
    assert [(i["name"], i["data_type"], i["dims"]) for i in onnx_config["input"]] == [
        (name, "TYPE_INT64", [-1])
        for name, dtype in graph_inputs
        if dtype == onnx.TensorProto.INT64
    ]
    assert len(onnx_config["input"]) == len(graph.input) == 3
    assert [(o["name"], o["data_type"], o["dims"]) for o in onnx_config["output"]] == [
        ("logits", "TYPE_FP32", [2])
    ]
    assert [o.name for o in graph.output] == ["logits"]
    assert onnx_config["max_batch_size"] == 32
    tokenizer = read_config(repo / "slimbert_tokenizer" / "config.pbtxt")
    ensemble = read_config(repo / "slimbert" / "config.pbtxt")
    assert tokenizer["output"] == onnx_config["input"]
    assert (
        ensemble["input"]
        == tokenizer["input"]
        == [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}]
    )
    assert ensemble["output"] == onnx_config["output"]
    assert (repo / "slimbert" / "1").is_dir() and (
        repo / "slimbert_onnx" / "1" / "model.onnx"
    ).read_bytes() == (out / "model.onnx").read_bytes()


def _load_python_model(repo: Path):
    """The tokenizer's model.py, with a stand-in for Triton's triton_python_backend_utils."""
    utils = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    utils.Tensor = Tensor
    utils.InferenceResponse = InferenceResponse
    utils.TritonError = RuntimeError
    utils.triton_string_to_numpy = {"TYPE_INT64": np.int64}.__getitem__
    utils.get_input_tensor_by_name = lambda request, name: request.get(name)
    sys.modules["triton_python_backend_utils"] = utils
    spec = importlib.util.spec_from_file_location(
        "slimbert_tokenizer_model", repo / "slimbert_tokenizer" / "1" / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = read_config(repo / "slimbert_tokenizer" / "config.pbtxt")
    parameters = {"max_length": {"string_value": "128"}, "padding": {"string_value": "longest"}}
    model.initialize(
        {
            "model_config": json.dumps(
                {"input": config["input"], "output": config["output"], "parameters": parameters}
            )
        }
    )
    return model, Tensor


def test_triton_ensemble_answers_the_client_smoke_test(fused, tiny):
    """The tokenizer model and the ONNX model chained as the ensemble does, behind a stand-in
    KServe v2 endpoint; the generated client's --smoke must pass against it."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    _, manifest = fused
    repo = Path(manifest["triton"]["repository"])
    model, tensor = _load_python_model(repo)
    texts = ["good great movie", "the worst and most boring plot"]
    response = model.execute(
        [{"TEXT": tensor("TEXT", np.array([[t.encode()] for t in texts], dtype=object))}]
    )[0]
    expected = AutoTokenizer.from_pretrained(str(tiny))(
        texts, padding=True, truncation=True, max_length=128, return_tensors="np"
    )
    for out in response.output_tensors:
        np.testing.assert_array_equal(out.array, expected[out.name])
    session = ort.InferenceSession(
        str(repo / "slimbert_onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/v2/models/slimbert/infer"
            text = body["inputs"][0]
            request = {
                "TEXT": tensor(
                    "TEXT",
                    np.array([[t.encode()] for t in text["data"]], dtype=object).reshape(
                        text["shape"]
                    ),
                )
            }
            features = {t.name: t.array for t in model.execute([request])[0].output_tensors}
            logits = session.run(["logits"], features)[0]
            payload = json.dumps(
                {
                    "outputs": [
                        {
                            "name": "logits",
                            "datatype": "FP32",
                            "shape": list(logits.shape),
                            "data": logits.reshape(-1).tolist(),
                        }
                    ]
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        spec = importlib.util.spec_from_file_location("triton_client", repo / "client.py")
        client = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(client)
        assert client.main(["--smoke", "--url", f"http://127.0.0.1:{server.server_port}"]) == 0
        assert len(json.loads((repo / "smoke.json").read_text())["texts"]) == 6
    finally:
        server.shutdown()
        sys.modules.pop("triton_python_backend_utils", None)


def test_deploy_manifests_name_the_repository_and_refuse_what_cannot_run(tmp_path):
    """--triton-deploy's files from the configs alone (the SDK check is in test_triton_server)."""
    config = DeployConfig("slimbert-sst2", "registry/slimbert:1", "pvc://models/sst2/triton")
    files = deploy_files(config, ["tokenizers==0.22.2", "numpy<2"])
    assert sorted(files) == ["Dockerfile", "kserve.yaml", "kubernetes.yaml"]
    service = yaml.safe_load(files["kserve.yaml"])
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"} and model["protocolVersion"] == "v2"
    assert (
        model["storageUri"] == "pvc://models/sst2/triton"
        and model["image"] == "registry/slimbert:1"
    )
    deployment, front = yaml.safe_load_all(files["kubernetes.yaml"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models"
    assert pod["containers"][0]["volumeMounts"][0]["subPath"] == "sst2/triton"
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert [p["port"] for p in front["spec"]["ports"]] == [8000, 8001, 8002]
    assert "&id" not in files["kubernetes.yaml"]  # no YAML anchors: plain for kubectl and diffs
    assert "'numpy<2'" in files["Dockerfile"]
    # another store: KServe reads it, a plain Deployment cannot mount it
    s3 = DeployConfig("slimbert-sst2", "registry/slimbert:1", "s3://bucket/triton")
    assert sorted(deploy_files(s3, [])) == ["Dockerfile", "kserve.yaml"]
    assert kubernetes_name("Slimbert_SST2") == "slimbert-sst2"
    with pytest.raises(SlimbertError, match="Kubernetes name 'Bad_Name'"):
        DeployConfig("Bad_Name", "i", "pvc://c/p")
    with pytest.raises(SlimbertError, match="--triton-storage-uri 'models/sst2'"):
        DeployConfig("ok", "i", "models/sst2")
