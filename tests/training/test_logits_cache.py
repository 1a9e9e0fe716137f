"""The teacher's logits on the training set (training/logits_cache.py): computed once, read back,
keyed by what they depend on, and a transfer set's rows cached apart from the training rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import sentiment_rows

from slimbert.batches import DataSpec, make_loader, predict_logits, prepare
from slimbert.teachers.load import load_teacher
from slimbert.training import logits_cache as teacher_cache
from slimbert.training.logits_cache import cache_dir, teacher_logits


@pytest.fixture
def task_data(tiny_teacher, sst2_files):
    teacher = load_teacher(tiny_teacher)
    train, dev = sst2_files

    def at(max_length: int):
        return prepare(DataSpec(train, dev, max_length=max_length), teacher.tokenizer)

    return teacher, at


def cached_files():
    return sorted((cache_dir() / "logits").glob("*.safetensors"))


def test_logits_are_computed_once_then_read_back(task_data, monkeypatch):
    teacher, at = task_data
    data = at(16)
    first = teacher_logits(teacher.model, teacher.path, data)  # (N, C)
    assert first.shape == (64, 2) and len(cached_files()) == 1
    loader = make_loader(data.train_set, 64, shuffle=False)
    np.testing.assert_allclose(first.numpy(), predict_logits(teacher.model, loader), atol=1e-6)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(teacher_cache, "predict_logits", must_not_run)
    again = teacher_logits(teacher.model, teacher.path, data)
    assert torch.equal(again, first)
    assert len(cached_files()) == 1


def test_logits_are_computed_on_the_training_device_and_the_teacher_goes_back(
    task_data, monkeypatch
):
    # CI has no GPU, so the moves are recorded instead of made: the pass runs where it is
    # asked to (a GPU run's training device), and the teacher returns to where it was
    teacher, at = task_data
    moves, passes = [], []
    monkeypatch.setattr(teacher.model, "to", lambda where: moves.append(where) or teacher.model)

    def record(model, loader, device="cpu", progress=False):
        passes.append(device)
        return np.zeros((len(loader.dataset), 2), dtype=np.float32)

    monkeypatch.setattr(teacher_cache, "predict_logits", record)
    logits = teacher_logits(teacher.model, teacher.path, at(16), device=torch.device("cuda", 0))
    assert logits.shape == (64, 2)
    assert passes == [torch.device("cuda", 0)]
    assert moves == [torch.device("cuda", 0), torch.device("cpu")]


def test_the_cache_key_covers_max_length_and_the_fingerprint(task_data):
    teacher, at = task_data
    long = teacher_logits(teacher.model, teacher.path, at(16))
    short = teacher_logits(teacher.model, teacher.path, at(4))
    assert len(cached_files()) == 2
    # 4 tokens cut every sentence to [CLS] w w [SEP]: other inputs, other logits
    assert not torch.allclose(long, short)
    teacher_logits(teacher.model, teacher.path, at(16), fingerprint="another teacher")
    assert len(cached_files()) == 3


def test_a_transfer_set_reuses_the_training_rows_logits(
    task_data, sst2_files, tmp_path, monkeypatch
):
    teacher, at = task_data
    plain = teacher_logits(teacher.model, teacher.path, at(16))  # the training file alone
    transfer = tmp_path / "transfer.jsonl"
    rows = [(f"{text} again", label) for text, label in sentiment_rows(12, 7)]
    transfer.write_text("".join(json.dumps({"text": t, "label": str(y)}) + "\n" for t, y in rows))
    train, dev = sst2_files
    data = prepare(DataSpec(train, dev, max_length=16, transfer=transfer), teacher.tokenizer)
    assert len(data.train) == 64 + 12

    passes = []
    real = teacher_cache.predict_logits

    def counted(model, loader, *args, **kwargs):
        passes.append(len(loader.dataset))
        return real(model, loader, *args, **kwargs)

    monkeypatch.setattr(teacher_cache, "predict_logits", counted)
    logits = teacher_logits(teacher.model, teacher.path, data)  # (76, 2)
    assert passes == [12]  # only the transfer rows went through the teacher
    assert torch.equal(logits[:64], plain)
    loader = make_loader(data.train_set, 64, shuffle=False)
    # the same rows through the teacher in one pass: agreement to float32 batch noise
    np.testing.assert_allclose(logits.numpy(), predict_logits(teacher.model, loader), atol=1e-5)
    again = teacher_logits(teacher.model, teacher.path, data)
    assert passes == [12] and torch.equal(again, logits)
    assert len(cached_files()) == 2


def test_augment_leaves_its_logits_where_a_transfer_run_reads_them(
    task_data, sst2_files, tmp_path, monkeypatch
):
    """`slimbert augment` labels its rows with the teacher; a later run with them as its
    transfer set (same teacher, same max length) reads those logits instead of a second pass."""
    from slimbert.teachers.transfer import TransferConfig, build_transfer

    teacher, at = task_data
    train, dev = sst2_files
    transfer = tmp_path / "transfer.jsonl"
    build_transfer(
        teacher.path, DataSpec(train, dev, max_length=16), [], transfer, TransferConfig(copies=1)
    )
    stored = np.array([json.loads(line)["logits"] for line in transfer.read_text().splitlines()])
    teacher_logits(teacher.model, teacher.path, at(16))  # the training rows, as a kd run would

    passes = []
    real = teacher_cache.predict_logits

    def counted(model, loader, *args, **kwargs):
        passes.append(len(loader.dataset))
        return real(model, loader, *args, **kwargs)

    monkeypatch.setattr(teacher_cache, "predict_logits", counted)
    data = prepare(DataSpec(train, dev, max_length=16, transfer=transfer), teacher.tokenizer)
    logits = teacher_logits(teacher.model, teacher.path, data)
    assert passes == []  # neither part went through the teacher again
    np.testing.assert_allclose(logits[64:].numpy(), stored, rtol=1e-6)
    # at another max length the key differs: those rows pass through the teacher
    longer = prepare(DataSpec(train, dev, max_length=24, transfer=transfer), teacher.tokenizer)
    teacher_logits(teacher.model, teacher.path, longer)
    assert passes == [64, len(stored)]
