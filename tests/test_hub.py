"""Models named by their Hub name, read from a Hugging Face cache built in a temp dir (no
network), and sharded safetensors checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import build_bert
from huggingface_hub import ModelCard

from slimbert.cli import cli
from slimbert.compress.pretrain import mlm_student
from slimbert.compress.start import init_student
from slimbert.compress.students import StudentShape, build_student
from slimbert.errors import SlimbertError
from slimbert.hub import HUB_FILES, resolve_model, weight_files, weights_sha256
from slimbert.models import load_classifier, load_model_dir
from slimbert.teachers.load import load_teacher
from slimbert.training.logits_cache import model_fingerprint

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TRAIN_FLAGS = ["--max-length", "32", "--batch-size", "8", "--no-progress", "--seed", "0"]


def put_in_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT) -> Path:
    """Lay `folder`'s files out as huggingface_hub's cache does: blobs named by their sha256,
    snapshots/<commit>/ holding relative symlinks to them, refs/main naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(folder.iterdir()):
        if not file.is_file():
            continue
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache under HF_HOME, offline."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home / "hub"


def test_a_hub_name_resolves_to_its_cached_snapshot(hub_cache, tiny_base):
    snapshot = put_in_hub_cache(hub_cache, "tiny-org/tiny-bert", tiny_base)
    assert resolve_model("tiny-org/tiny-bert") == snapshot
    assert resolve_model(f"tiny-org/tiny-bert@{COMMIT}") == snapshot
    # a name without an organisation, as legacy Hub names are
    legacy = put_in_hub_cache(hub_cache, "tiny-bert-legacy", tiny_base)
    assert resolve_model("tiny-bert-legacy") == legacy


def test_hf_hub_cache_wins_over_hf_home(tmp_path, monkeypatch, tiny_base):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    snapshot = put_in_hub_cache(tmp_path / "cache", "tiny-org/tiny-bert", tiny_base)
    assert resolve_model("tiny-org/tiny-bert") == snapshot


def test_a_name_in_no_cache_is_one_line_saying_what_was_tried(hub_cache):
    with pytest.raises(SlimbertError) as excinfo:
        resolve_model("tiny-org/absent", "--teacher")
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("--teacher tiny-org/absent: not a directory, not bundled (minilm-l6)")
    assert f"not in the Hugging Face cache {hub_cache} (HF_HUB_OFFLINE is set)" in message
    assert "`hf download tiny-org/absent`" in message


def test_a_cached_repository_without_safetensors_is_refused(hub_cache, tmp_path, tiny_base):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_base / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded, ever")
    put_in_hub_cache(hub_cache, "tiny-org/pickled", pickled)
    with pytest.raises(SlimbertError, match="no model.safetensors .*safetensors only"):
        resolve_model("tiny-org/pickled")


def test_only_weights_config_and_tokenizer_files_are_fetched():
    import fnmatch

    wanted = ["config.json", "model.safetensors", "model-00001-of-00002.safetensors", "vocab.txt"]
    refused = ["pytorch_model.bin", "tf_model.h5", "modeling_custom.py", "onnx/model.onnx"]
    assert all(any(fnmatch.fnmatch(n, p) for p in HUB_FILES) for n in wanted)
    assert not any(fnmatch.fnmatch(n, p) for n in refused for p in HUB_FILES)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> tuple[Path, Path]:
    """The same random classifier saved whole and in shards of at most 40 kB."""
    from transformers import BertForSequenceClassification

    whole = build_bert(tmp_path_factory.mktemp("whole"), num_labels=2, seed=3)
    shards = tmp_path_factory.mktemp("shards")
    model = BertForSequenceClassification.from_pretrained(str(whole))
    model.save_pretrained(str(shards), safe_serialization=True, max_shard_size="40KB")
    for file in whole.iterdir():  # the tokenizer's files, whichever this transformers writes
        if not (shards / file.name).exists() and file.name != "model.safetensors":
            shutil.copy(file, shards / file.name)
    return whole, shards


def test_a_sharded_checkpoint_loads_with_the_same_weights(sharded):
    whole, shards = sharded
    files = weight_files(shards)
    index = json.loads((shards / "model.safetensors.index.json").read_text())
    assert not (shards / "model.safetensors").exists()
    assert len(files) >= 3 and {f.name for f in files} == set(index["weight_map"].values())
    one, many = load_classifier(whole).eval(), load_classifier(shards).eval()
    for key, value in one.state_dict().items():
        assert torch.equal(value, many.state_dict()[key]), key
    inputs = {"input_ids": torch.tensor([[2, 5, 9, 3]])}
    # Two model instances with equal weights (asserted above for the weights, which are data):
    # their logits agree to float32 rounding, not bit for bit, because a kernel's summation
    # order depends on memory alignment and on the CPU (AMD without AMX differs in the last bits).
    torch.testing.assert_close(one(**inputs).logits, many(**inputs).logits, rtol=1e-5, atol=1e-6)
    # a sharded checkpoint's weights hash is over every shard, so the logit cache tells them apart
    assert weights_sha256(shards) != weights_sha256(whole)
    assert model_fingerprint(shards) != model_fingerprint(whole)


def test_a_missing_shard_is_one_clear_error(sharded, tmp_path):
    _, shards = sharded
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    victim = sorted(broken.glob("model-*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(SlimbertError, match=f"shard {victim.name} listed in .* is missing"):
        load_model_dir(broken)


def test_a_sharded_teacher_loads_by_its_hub_name(hub_cache, sharded):
    whole, shards = sharded
    put_in_hub_cache(hub_cache, "tiny-org/sharded-teacher", shards)
    teacher = load_teacher("tiny-org/sharded-teacher")
    assert teacher.path.name == COMMIT
    assert teacher.fingerprint == model_fingerprint(shards)
    reference = load_classifier(whole).eval()
    inputs = {"input_ids": torch.tensor([[2, 7, 8, 3]])}
    # the same weights in two instances: equal to float32 rounding (see the test above)
    torch.testing.assert_close(
        teacher.model(**inputs).logits, reference(**inputs).logits, rtol=1e-5, atol=1e-6
    )


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_train_teacher_and_kd_take_hub_names(hub_cache, tmp_path, tiny_base, sst2_files):
    """`--base org/name` and `--teacher org/name` through the real CLI, from the cache."""
    train, dev = sst2_files
    put_in_hub_cache(hub_cache, "tiny-org/tiny-bert", tiny_base)
    teacher = tmp_path / "teacher"
    result = invoke(
        "train-teacher", "--base", "tiny-org/tiny-bert", "--train", train, "--eval", dev,
        "--out", teacher, "--max-steps", 2, *TRAIN_FLAGS,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metadata = json.loads((teacher / "slimbert.json").read_text())
    assert metadata["base"] == "tiny-org/tiny-bert"
    assert Path(metadata["base_dir"]).name == COMMIT
    assert metadata["steps"] == 2
    assert ModelCard.load(teacher / "README.md").data.base_model == "tiny-org/tiny-bert"

    # the fine-tuned teacher, published and cached under a Hub name, teaches a kd student
    put_in_hub_cache(hub_cache, "tiny-org/tiny-teacher", teacher)
    student = tmp_path / "kd1"
    result = invoke(
        "compress", "kd", "--teacher", "tiny-org/tiny-teacher", "--train", train, "--eval", dev,
        "--out", student, "--layers", 1, "--max-steps", 2, *TRAIN_FLAGS,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((student / "slimbert.json").read_text())
    assert record["teacher"] == "tiny-org/tiny-teacher"
    assert record["teacher_meta"]["base"] == "tiny-org/tiny-bert"
    assert record["layers"] == 1
    assert record["teacher_metric"] == metadata["metric"]
    assert ModelCard.load(student / "README.md").data.base_model == "tiny-org/tiny-teacher"


def test_an_uncached_base_fails_the_cli_in_one_line(hub_cache, tmp_path, sst2_files):
    train, dev = sst2_files
    result = CliRunner().invoke(
        cli,
        ["train-teacher", "--base", "tiny-org/absent", "--train", str(train), "--eval", str(dev),
         "--out", str(tmp_path / "t"), *TRAIN_FLAGS],
    )  # fmt: skip
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "not in the Hugging Face cache" in lines[0]
    assert not (tmp_path / "t").exists()


def test_student_init_takes_a_sharded_student_by_hub_name(hub_cache, tmp_path, tiny_teacher):
    """`--student-init org/name`: a masked-LM pre-trained student saved in shards, cached."""
    teacher = load_classifier(tiny_teacher)
    mlm, picked = mlm_student(teacher, 2)
    with torch.no_grad():
        for weight in mlm.parameters():
            weight.add_(0.5)  # unlike the teacher's, so a copy is told from no copy
    folder = tmp_path / "mlm-2L"
    mlm.save_pretrained(str(folder), safe_serialization=True, max_shard_size="30KB")
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    put_in_hub_cache(hub_cache, "tiny-org/mlm-2L", folder)

    student = build_student(teacher, StudentShape(2), picked, seed=None)[0]
    info = init_student(student, "tiny-org/mlm-2L")
    assert info["path"].endswith(COMMIT)
    prefix = student.base_model_prefix
    copied, source = student.state_dict(), mlm.state_dict()
    keys = [k for k in copied if k.startswith((f"{prefix}.embeddings.", f"{prefix}.encoder."))]
    assert info["copied_tensors"] == len(keys) > 0
    for key in keys:
        assert torch.equal(copied[key], source[key]), key
    assert torch.equal(copied["classifier.weight"], teacher.state_dict()["classifier.weight"])


def test_bench_times_a_model_named_by_its_hub_name(hub_cache, tmp_path, tiny_teacher, sst2_files):
    """`bench --model org/name` times the cached snapshot under the repository's name and leaves
    the snapshot (the Hub's files) untouched."""
    snapshot = put_in_hub_cache(hub_cache, "tiny-org/tiny-teacher", tiny_teacher)
    (snapshot / "README.md").symlink_to(snapshot / "config.json")  # a card the bench must not edit
    before = sorted((p.name, p.is_symlink()) for p in snapshot.iterdir())
    out = tmp_path / "bench"
    result = invoke(
        "bench", "--model", "tiny-org/tiny-teacher", "--eval", sst2_files[1], "--out", out,
        "--limit", 4, "--repeats", 1, "--warmup", 0, "--no-peak", "--in-process",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {(row["model"], row["runtime"]) for row in rows} == {
        ("tiny-teacher", "pytorch"),
        ("tiny-teacher", "onnx"),
    }
    assert sorted((p.name, p.is_symlink()) for p in snapshot.iterdir()) == before
    assert (out / "exports" / "tiny-teacher" / "model.onnx").is_file()

    absent = CliRunner().invoke(
        cli,
        ["bench", "--model", "tiny-org/absent", "--eval", str(sst2_files[1]),
         "--out", str(tmp_path / "b2")],
    )  # fmt: skip
    assert absent.exit_code != 0 and "not in the Hugging Face cache" in absent.output
