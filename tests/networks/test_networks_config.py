"""TextCNN, BiLSTM and soft-tree students name a registered `model_type` in config.json:
transformers' AutoConfig reads them (sizes and labels included) and optimum's ORTModel runs
their ONNX export with slimbert's own logits, while the PyTorch AutoModel classes, which have
no class for them, refuse them; slimbert itself still loads students saved before the key."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from slimbert.cli import cli
from slimbert.models import load_model_dir
from slimbert.networks.configs import (
    BiLSTMPretrainedConfig,
    TextCNNPretrainedConfig,
    TreePretrainedConfig,
)

SIZES = {
    "textcnn": ["--embedding-dim", "16", "--filters", "4", "--kernel-sizes", "2,3"],
    "bilstm": ["--embedding-dim", "16", "--hidden-size", "6", "--fc-size", "8"],
    "tree": ["--embedding-dim", "8", "--depth", "2"],
}
CONFIGS = {
    "textcnn": TextCNNPretrainedConfig,
    "bilstm": BiLSTMPretrainedConfig,
    "tree": TreePretrainedConfig,
}


@pytest.fixture(scope="module")
def students(tmp_path_factory, tiny_teacher, sst2_files):
    root = tmp_path_factory.mktemp("networks")
    train, dev = sst2_files
    for method, sizes in SIZES.items():
        args = ["compress", method, "--teacher", tiny_teacher, "--train", train, "--eval", dev,
                "--out", root / method, "--max-steps", "1", "--no-progress", *sizes]  # fmt: skip
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("method", list(SIZES))
def test_autoconfig_reads_a_student_config(students, method):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(students / method))
    assert type(config) is CONFIGS[method]
    assert config.model_type == f"slimbert-{method}" and config.slimbert_architecture == method
    assert config.num_labels == 2 and config.id2label == {0: "0", 1: "1"}
    saved = json.loads((students / method / "config.json").read_text())
    assert config.vocab_size == saved["vocab_size"] == 41
    if method == "textcnn":
        assert (config.kernel_sizes, config.filters) == ([2, 3], 4)
    if method == "tree":
        assert config.depth == 2


def test_the_pytorch_automodel_refuses_them(students):
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(ValueError, match="Unrecognized configuration class .*TextCNNPretrained"):
        AutoModelForSequenceClassification.from_pretrained(str(students / "textcnn"))


def test_a_student_saved_before_model_type_still_loads_in_slimbert(students, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(students / "bilstm", old)
    config = json.loads((old / "config.json").read_text())
    del config["model_type"]
    (old / "config.json").write_text(json.dumps(config))
    model, tokenizer, _ = load_model_dir(old)
    current, _, _ = load_model_dir(students / "bilstm")
    batch = tokenizer(["good movie", "the plot was awful"], padding=True, return_tensors="pt")
    # two instances of the same weights: equal to float32 rounding (kernels may sum in another
    # order by alignment and CPU)
    torch.testing.assert_close(model(**batch).logits, current(**batch).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", list(SIZES))
def test_ortmodel_runs_the_export_with_slimbert_logits(students, method, sst2_files, tmp_path):
    onnxruntime = pytest.importorskip("optimum.onnxruntime")
    from slimbert.export.onnx import export

    out = tmp_path / f"{method}-onnx"
    export(students / method, sst2_files[1], out)
    assert json.loads((out / "config.json").read_text())["model_type"] == f"slimbert-{method}"
    ort = onnxruntime.ORTModelForSequenceClassification.from_pretrained(str(out))
    model, tokenizer, _ = load_model_dir(students / method)
    texts = ["good movie", "the plot was awful and boring", "a lovely story"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    expected = model(**batch).logits.detach()
    got = ort(**batch).logits
    assert got.shape == (3, 2)
    assert float((torch.as_tensor(got) - expected).abs().max()) < 1e-4
