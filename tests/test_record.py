"""slimbert.json through one record: folders written before the schema version read (migrated,
nothing dropped) and give the card they gave then; a record reads back as written; a newer
file is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slimbert.cards import render_card
from slimbert.errors import SlimbertError
from slimbert.files import RECORD_FILE
from slimbert.record import SCHEMA_VERSION, ModelRecord, migrate, read_record, write_record

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# committed cells (a model's slimbert.json as its run left it, schema version 0) and the card
# the code before ModelRecord rendered from each, config {"id2label": {"0": "0", "1": "1"}},
# with an empty Hugging Face cache (.txt: `ruff format` would reformat a .md file's code blocks)
CELLS = {
    "kd": "base-teacher/cells/mrpc-kd-6L-seed1.json",
    "teacher": "base-teacher/cells/mrpc-teacher.json",
    "tinybert": "quality-mrpc/transfer/cells/tinybert-3L-transfer-c8-p0.4-seed1.json",
    "minilm": "quality-sst2/cells/minilm-2L-seed1.json",
    "textcnn": "textcnn-transfer-mrpc/cells/hard-seed1.json",
}
CARDS = Path(__file__).resolve().parent / "data" / "cards-v0"
VERSION_0_SETTINGS = ("kd_config", "boost_config", "pretrain_config", "general_config")


def committed_records() -> list[Path]:
    """Every committed JSON file that is a model's slimbert.json (it has a role and a method)."""
    found = []
    for path in sorted(RESULTS.rglob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(payload, dict) and "role" in payload and "method" in payload:
            found.append(path)
    return found


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_version_0_folder_gives_the_card_it_gave_before(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(RESULTS / CELLS[name], folder / RECORD_FILE)
    record = read_record(folder)
    assert record.schema_version == SCHEMA_VERSION
    card = render_card(record, {"id2label": {"0": "0", "1": "1"}})
    assert str(card) == (CARDS / f"{name}.txt").read_text()


def test_every_committed_record_reads_with_nothing_dropped():
    paths = committed_records()
    assert len(paths) >= 60  # the cells of benchmarks/results/
    for path in paths:
        old = json.loads(path.read_text())
        # written before the version existed (read as 0), or through the record since
        assert old.get("schema_version", 0) in (0, SCHEMA_VERSION), path
        written = ModelRecord.from_json(old, path).to_json()
        assert written["schema_version"] == SCHEMA_VERSION
        for key, value in old.items():
            if key in VERSION_0_SETTINGS:
                assert written["method_config"] == value, (path, key)
            else:
                assert written[key] == value, (path, key)
        # every key it gained is a field the old file did not set
        gained = set(written) - set(old) - {"schema_version", "method_config"}
        assert all(written[key] in (None, {}, []) for key in gained), (path, gained)


def test_version_0_settings_are_the_method_config():
    old = json.loads((RESULTS / "foundation-sst2" / "training-kd-1L.json").read_text())
    record = ModelRecord.from_json(old)
    assert (
        record.method_config == old["kd_config"] == {"layers": 1, "temperature": 2.0, "alpha": 0.5}
    )
    assert "kd_config" not in record.details and "kd_config" not in record.to_json()
    professor = migrate({"role": "professor", "method": "boost", "boost_config": {"rounds": 4}})
    assert professor == {
        "role": "professor",
        "method": "boost",
        "method_config": {"rounds": 4},
        "schema_version": 1,
    }


def test_a_written_record_reads_back_equal(tmp_path):
    record = ModelRecord(
        role="student",
        method="tinybert",
        teacher="runs/teacher",
        teachers=["runs/teacher", "runs/other"],
        teacher_meta={"method": "teacher", "base": "bert-base-uncased", "metric": {"f1": 90.0}},
        teacher_metric={"f1": 90.0},
        data={"train": {"path": "train.tsv", "sha256": "ab" * 32, "rows": 9}, "pair": False},
        metric={"accuracy": 88.5, "f1": 87.25},
        metric_name="f1",
        steps=12,
        best_step=10,
        history=[{"step": 10, "f1": 87.25}],
        first_losses={"intermediate": [{"step": 1, "loss": 0.5}], "prediction": []},
        train_config={"lr": 5e-5},
        method_config={"layers": 2},
        layer_map=[0, 3],
        parameters=1234,
        layers=2,
        versions={"python": "3.11"},
        details={"stages": {"prediction": {"steps": 12}}, "route": None, "new_key": [1, 2]},
    )
    path = write_record(tmp_path, record)
    assert path == tmp_path / RECORD_FILE
    on_disk = json.loads(path.read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION
    assert on_disk["new_key"] == [1, 2] and "details" not in on_disk  # beside the fields
    assert read_record(tmp_path) == record
    assert record.data_file("train").rows == 9 and record.data_file("eval") is None
    assert record.pair is False and record.teacher_base == "bert-base-uncased"


def test_a_folder_without_a_record_reads_empty(tmp_path):
    record = read_record(tmp_path)
    assert record.empty and record.role is None and record.metric == {}


def test_a_newer_schema_is_refused_in_one_line(tmp_path):
    (tmp_path / RECORD_FILE).write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SlimbertError) as error:
        read_record(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / RECORD_FILE) in message and "upgrade slimbert" in message
    (tmp_path / RECORD_FILE).write_text("{not json")
    with pytest.raises(SlimbertError, match="not JSON"):
        read_record(tmp_path)


def test_details_cannot_shadow_a_field():
    with pytest.raises(ValueError, match="metric"):
        ModelRecord(role="student", details={"metric": {}})
