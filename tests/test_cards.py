"""README.md model cards: every model and export folder gets one, with the figures recorded
beside it."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

from slimbert.bench.config import BenchConfig
from slimbert.bench.run import bench
from slimbert.cards import CARD_FILE, add_bench, render_card, write_card
from slimbert.cli import cli
from slimbert.record import ModelRecord

FLAGS = ["--max-length", "32", "--batch-size", "8", "--no-progress", "--seed", "0"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_base, sst2_files):
    """A teacher, a kd and a textcnn student, and the kd student's ONNX export."""
    root = tmp_path_factory.mktemp("cards")
    train, dev = sst2_files
    made = {name: root / name for name in ("teacher", "kd1", "cnn", "kd1-onnx")}
    with pytest.MonkeyPatch.context() as patch:  # conftest's per-test settings, module-wide
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("SLIMBERT_CACHE", str(root / "cache"))
        invoke("train-teacher", "--base", tiny_base, "--train", train, "--eval", dev,
               "--out", made["teacher"], "--max-steps", 3, *FLAGS)  # fmt: skip
        invoke("compress", "kd", "--teacher", made["teacher"], "--train", train, "--eval", dev,
               "--out", made["kd1"], "--layers", 1, "--max-steps", 2, *FLAGS)  # fmt: skip
        invoke("compress", "textcnn", "--teacher", made["teacher"], "--train", train,
               "--eval", dev, "--out", made["cnn"], "--embedding-dim", 16, "--max-steps", 2,
               *FLAGS)  # fmt: skip
        invoke("export", "--model", made["kd1"], "--eval", dev, "--out", made["kd1-onnx"])
    return made, train, dev


def load(folder):
    card = ModelCard.load(folder / CARD_FILE)
    return card, json.loads((folder / "slimbert.json").read_text())


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_teacher_card_names_its_base_data_and_metrics(folders):
    made, train, dev = folders
    card, metadata = load(made["teacher"])
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.library_name == "transformers"
    assert card.data.tags == ["slimbert", "teacher"]
    assert card.data.base_model is None  # a local base directory is no Hub repository
    assert card.data.metrics == ["accuracy", "f1", "macro-f1", "mcc"]
    assert card.text.lstrip().startswith(f"# Teacher fine-tuned from {metadata['base']}\n")
    assert f"| train | `{train}` | 64 | {sha256(train)} |" in card.text
    assert f"| eval | `{dev}` | 24 | {sha256(dev)} |" in card.text
    assert f"| **f1** | {metadata['metric']['f1']:.2f} |" in card.text
    assert "| labels | 0: 0, 1: 1 |" in card.text
    assert f"| weights sha256 | {sha256(made['teacher'] / 'model.safetensors')} |" in card.text
    assert '"max_steps": 3' in card.text


def test_a_student_card_names_its_method_settings_and_teacher_figures(folders):
    made, _, _ = folders
    card, metadata = load(made["kd1"])
    assert card.data.tags == ["slimbert", "distillation", "kd"]
    assert card.data.library_name == "transformers"
    assert card.data.model_name == f"1-layer kd student of {made['teacher']}"
    assert f"| teacher | {made['teacher']} |" in card.text
    assert '"temperature": 2.0' in card.text and '"alpha": 0.5' in card.text
    student, teacher = metadata["metric"]["accuracy"], metadata["teacher_metric"]["accuracy"]
    assert f"| accuracy | {student:.2f} | {teacher:.2f} |" in card.text
    assert f"| parameters | {metadata['parameters']:,} |" in card.text


def test_a_non_transformer_student_card(folders):
    made, _, _ = folders
    card, metadata = load(made["cnn"])
    assert card.data.library_name == "slimbert"  # only slimbert loads a TextCNN
    assert card.data.tags == ["slimbert", "distillation", "textcnn"]
    assert card.data.model_name == f"textcnn student of {made['teacher']}"
    assert f"| weights sha256 | {metadata['weights_sha256']} |" in card.text


def test_the_export_card_carries_the_parity_figures(folders):
    made, _, dev = folders
    card = ModelCard.load(made["kd1-onnx"] / CARD_FILE)
    manifest = json.loads((made["kd1-onnx"] / "manifest.json").read_text())
    stage = manifest["stages"][-1]
    assert card.data.tags == ["slimbert", "distillation", "kd", "onnx", "fp32"]
    assert card.data.pipeline_tag == "text-classification"
    assert (
        f"| export | fp32 | {stage['max_abs_diff']:.3g} | {stage['label_agreement']:.2f} | "
        f"{stage['torch_metric']:.2f} | {stage['onnx_metric']:.2f} | {stage['delta_metric']:.2f} |"
    ) in card.text
    assert f"| validated on | `{dev}` (24 rows) |" in card.text
    assert f"| eval sha256 | {sha256(dev)} |" in card.text
    assert "ORTModelForSequenceClassification" in card.text


def student_record(**changes) -> ModelRecord:
    record = {
        "role": "student",
        "method": "tinybert",
        "teacher": "tiny-org/teacher",
        "teacher_meta": {"method": "teacher", "base": "google-bert/bert-base-uncased"},
        "method_config": {"layers": 4, "temperature": 1.0},
        "data": {
            "train": {"path": "hf:nyu-mll/glue:sst2:train", "sha256": "ab" * 32, "rows": 9},
            "eval": {"path": "dev.parquet", "sha256": "cd" * 32, "rows": 3},
            "task": "classification",
            "max_length": 64,
            "pair": True,
        },
        "metric": {"accuracy": 91.25, "f1": 90.5},
        "metric_name": "f1",
        "teacher_metric": {"accuracy": 92.0, "f1": 91.75},
        "layers": 4,
    }
    record.update(changes)
    return ModelRecord.from_json(record)


def test_card_data_from_a_record(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for repo in ("models--tiny-org--teacher", "models--google-bert--bert-base-uncased"):
        (tmp_path / "hub" / repo / "snapshots").mkdir(parents=True)
    card = render_card(student_record(), {"id2label": {"0": "negative", "1": "positive"}})
    data = card.data.to_dict()
    assert data["base_model"] == "tiny-org/teacher"  # the teacher named by its Hub name
    assert data["datasets"] == ["nyu-mll/glue"]
    assert data["tags"] == ["slimbert", "distillation", "tinybert"]
    assert "| labels | 0: negative, 1: positive |" in card.text
    assert "| task | classification of text pairs |" in card.text
    assert "| **f1** | 90.50 | 91.75 |" in card.text
    assert f"| train | `hf:nyu-mll/glue:sst2:train` | 9 | {'ab' * 32} |" in card.text
    # a local teacher: the base it was fine-tuned from is the Hub model this derives from
    local = render_card(student_record(teacher="runs/teacher"))
    assert local.data.base_model == "google-bert/bert-base-uncased"
    # names the cache does not hold are local paths, not Hub repositories
    unknown = {"method": "teacher", "base": "tiny-org/gone"}
    orphan = render_card(student_record(teacher="runs/teacher", teacher_meta=unknown))
    assert orphan.data.base_model is None
    snapshot = tmp_path / "hub" / "models--tiny-org--base" / "snapshots" / ("0" * 40)
    recorded = {"role": "teacher", "method": "teacher", "base": "b", "base_dir": str(snapshot)}
    assert render_card(ModelRecord.from_json(recorded)).data.base_model == "tiny-org/base"
    bundled = render_card(ModelRecord(role="teacher", method="teacher", base="minilm-l6"))
    assert bundled.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    mlm = render_card(ModelRecord(role="pretrained-student", method="mlm", source="runs/teacher"))
    assert mlm.data.pipeline_tag == "fill-mask"
    professor = render_card(
        # a version-0 record: its boost_config is the method's settings
        ModelRecord.from_json(
            {"role": "professor", "method": "boost", "members": 3, "boost_config": {"rounds": 4}}
        ),
        {"id2label": {"0": "0", "1": "1"}},
    )
    assert professor.data.model_name == "Boosted professor ensemble of 3 members"
    assert 'Boosting settings:\n\n```json\n{\n  "rounds": 4\n}' in professor.text


def test_write_card_is_atomic_and_reads_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "no", "1": "yes"}}))
    (tmp_path / CARD_FILE).write_text("old card")
    path = write_card(tmp_path, student_record())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json"]
    assert "| labels | 0: no, 1: yes |" in path.read_text()
    with pytest.raises(AttributeError):
        write_card(tmp_path, student_record(data="not a dict"))
    assert "| labels | 0: no, 1: yes |" in path.read_text()  # the old card stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json"]


def test_bench_puts_its_latest_figures_into_the_card(folders, tmp_path):
    made, _, dev = folders
    student = tmp_path / "kd1"
    shutil.copytree(made["kd1"], student)
    config = BenchConfig(
        runtimes=("pytorch",), warmup=1, repeats=1, limit=6, isolate=False, peak=False
    )
    report = bench([student], dev, tmp_path / "bench", config=config)
    (row,) = report.rows
    text = (student / CARD_FILE).read_text()
    expected = (
        f"| pytorch | cpu | fp32 | 1 | own | {row.threads} | {row.p50_ms:.2f} | {row.p99_ms:.2f} "
        f"| {row.qps:.2f} | {row.metric_name} {row.metric:.2f} |"
    )
    assert expected in text
    # a second bench replaces the figures instead of adding a second section
    assert add_bench(student, [asdict(row)], dev, "later")
    text = (student / CARD_FILE).read_text()
    assert text.count("## Latest bench") == 1 and ", later (bench's" in text
    assert text.startswith((made["kd1"] / CARD_FILE).read_text().rstrip("\n"))
    assert ModelCard.load(student / CARD_FILE).data.tags == ["slimbert", "distillation", "kd"]
    assert not add_bench(tmp_path, [asdict(row)], dev, "now")  # no card: nothing written
    assert not (tmp_path / CARD_FILE).exists()
