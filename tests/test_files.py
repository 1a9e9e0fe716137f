"""Atomic writes leave the old file or the new one, never half of one; hashes are sha256."""

from __future__ import annotations

import hashlib
import json

import pytest

from slimbert.files import atomic_dir, sha256_file, write_json_atomic, write_text_atomic


class FailsToRender:
    """write_json_atomic renders unknown objects with str(); this one fails there, after part of
    the payload is already written."""

    def __str__(self) -> str:
        raise OSError("disk full")


def test_sha256_of_a_known_string(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    # FIPS 180-2's first example message
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_sha256_reads_in_chunks_and_matches_hashlib(tmp_path):
    payload = bytes(range(256)) * 1000  # 256 kB, several 4 kB chunks with a short last one
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    assert sha256_file(path, chunk=4096) == hashlib.sha256(payload).hexdigest()


def test_json_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "nested" / "result.json"
    write_json_atomic(path, {"f1": 91.5, "rows": [1, 2]})
    write_json_atomic(path, {"f1": 92.0})
    assert json.loads(path.read_text()) == {"f1": 92.0}
    assert path.read_text().endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_failed_json_write_keeps_the_old_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"f1": 91.5})
    before = path.read_bytes()
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"f1": 10.0, "model": FailsToRender()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_failed_first_json_write_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "new.json", {1j: "complex keys are not JSON"})
    assert list(tmp_path.iterdir()) == []


def test_text_write_round_trips_unicode(tmp_path):
    path = tmp_path / "README.md"
    write_text_atomic(path, "Δlogit ≤ 1e-4\n")
    assert path.read_text(encoding="utf-8") == "Δlogit ≤ 1e-4\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_atomic_dir_replaces_the_folder_only_on_success(tmp_path):
    out = tmp_path / "export"
    with atomic_dir(out) as staging:
        assert staging.parent == tmp_path and staging != out and not out.exists()
        (staging / "model.onnx").write_text("first")
    assert (out / "model.onnx").read_text() == "first"

    with pytest.raises(RuntimeError, match="gate failed"), atomic_dir(out) as staging:
        (staging / "model.onnx").write_text("second, half written")
        raise RuntimeError("gate failed")
    assert (out / "model.onnx").read_text() == "first"  # the good result survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging left

    with atomic_dir(out) as staging:
        (staging / "manifest.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # old copy removed


def test_atomic_dir_failure_on_a_new_path_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "runs" / "kd3") as staging:
        (staging / "partial").write_text("x")
        raise KeyboardInterrupt
    assert [p.name for p in (tmp_path / "runs").iterdir()] == []
