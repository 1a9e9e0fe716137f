"""The GPU host's bundle, dry run on the CPU with tiny wheels: benchmarks/gpu/prepare.sh cuts them
into checksummed parts, run.sh takes the parts one command at a time, refuses a corrupted or
missing part, reassembles and installs into a temporary target. No network, no GPU."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "benchmarks" / "gpu"
PART_SIZE = 400_000


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    """A valid py3 wheel of `name` 1.0 holding `files`, with METADATA, WHEEL and RECORD."""
    dist_info = f"{name}-1.0.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    )
    contents[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = io.StringIO()
    for path, data in contents.items():
        record.write(f"{path},{_record_hash(data)},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    contents[f"{dist_info}/RECORD"] = record.getvalue().encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            archive.writestr(path, data)
    return wheel


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> dict:
    """prepare.sh over two tiny stages: incompressible 'weights', an 'ELF' library and Python."""
    tmp = tmp_path_factory.mktemp("gpu-bundle")
    rng = random.Random(0)
    wheels = tmp / "wheels"
    make_wheel(
        wheels / "train",
        "dummy_train",
        {
            "dummy_train/__init__.py": b"VALUE = 'train'\n",
            "dummy_train/weights.safetensors": rng.randbytes(1_200_000),
            "dummy_train/_native.so": b"\x7fELF" + rng.randbytes(200_000),
        },
    )
    make_wheel(
        wheels / "ort",
        "dummy_ort",
        {"dummy_ort/__init__.py": b"VALUE = 'ort'\n", "dummy_ort/lib.bin": rng.randbytes(300_000)},
    )
    data = tmp / "SST-2"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\na fine film \t1\n")
    (data / "dev.tsv").write_text("sentence\tlabel\na dull film \t0\n")
    out = tmp / "bundle"
    result = run(
        str(GPU / "prepare.sh"),
        "--from-dir",
        str(wheels),
        "--data",
        str(data),
        "--out",
        str(out),
        "--part-size",
        str(PART_SIZE),
        "--allow-small-parts",
        "--no-slimbert-wheel",
        "--level",
        "1",
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "meta" / "manifest.json").read_text())
    return {"tmp": tmp, "out": out, "manifest": manifest, "stdout": result.stdout, "data": data}


def host_env(tmp: Path, host_bundle: Path) -> dict:
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "WORK": str(tmp / "work"),
        "BUNDLE": str(host_bundle),
    }


def deliver(bundle: dict, host: Path, part: dict) -> None:
    """What one device command carries: the meta folder and one part (earlier parts gone, as
    on a host that kept only the stash)."""
    shutil.rmtree(host, ignore_errors=True)
    shutil.copytree(bundle["out"] / "meta", host / "meta")
    shutil.copytree(bundle["out"] / part["name"], host / part["name"])


def test_prepare_cuts_the_stream_into_checksummed_parts_and_plans_the_commands(bundle):
    manifest, out = bundle["manifest"], bundle["out"]
    parts = manifest["parts"]
    assert all(p["bytes"] <= PART_SIZE for p in parts)
    assert len(parts) == math.ceil(manifest["stream_bytes"] / PART_SIZE) >= 4
    stream = hashlib.sha256()
    for part in parts:
        data = (out / part["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"]
        stream.update(data)
    assert stream.hexdigest() == manifest["stream_sha256"]
    sums = (out / "meta" / "SHA256SUMS").read_text().split("\n")
    assert [line.split("  ")[1] for line in sums if line] == [p["path"] for p in parts]
    # one archive per stage and file kind, the training stage first in the stream
    assert [a["name"] for a in manifest["archives"]] == [
        "train-plain.tar.xz",
        "train-x86.tar.xz",
        "train-weights.tar.xz",
        "ort-plain.tar.xz",
    ]
    assert max(manifest["stages"]["train"]) <= min(manifest["stages"]["ort"])
    assert manifest["sizes"]["parts"] == len(parts)
    # every part travels once, each command with the meta folder; phases in run.sh's order
    plan = manifest["plan"]
    carried = [path for command in plan for path in command["carry"]]
    assert sorted(p for p in carried if not p.endswith("/meta")) == sorted(
        f"bundle/{p['name']}" for p in parts
    )
    assert all(command["carry"][0] == "bundle/meta" for command in plan)
    phases = [phase for command in plan for phase in command["phases"] if phase != "receive"]
    assert phases == [
        "env",
        "install-train",
        "train",
        "install-ort",
        "check",
        "tests",
        "export",
        "bench",
        "serve",
    ]
    train_ready = max(manifest["stages"]["train"])
    assert "install-train" in plan[train_ready - 1]["phases"]
    assert "install-ort" in plan[len(parts) - 1]["phases"]
    assert 'bash benchmarks/gpu/run.sh "$OUT" env' in bundle["stdout"]


def test_run_takes_one_part_per_command_then_reassembles_and_installs(bundle, tmp_path):
    host = tmp_path / "host-bundle"
    env = host_env(tmp_path, host)
    results = tmp_path / "results"
    parts = bundle["manifest"]["parts"]
    for part in parts:
        deliver(bundle, host, part)
        result = run(str(GPU / "run.sh"), str(results), "receive", env=env)
        assert result.returncode == 0, result.stderr
        assert f"{part['index']}/{len(parts)} parts in" in result.stdout
    assert "missing: none" in result.stdout
    result = run(str(GPU / "run.sh"), "--only-assemble", str(results), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "work" / "site"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dummy_train as t, dummy_ort as o; print(t.VALUE, o.VALUE, t.__file__)",
        ],
        env={**os.environ, "PYTHONPATH": f"{site / 'ort'}:{site / 'train'}"},
        capture_output=True,
        text=True,
    )
    assert probe.stdout.split()[:2] == ["train", "ort"] and str(site / "train") in probe.stdout
    weights = (site / "train" / "dummy_train" / "weights.safetensors").read_bytes()
    assert len(weights) == 1_200_000
    for name in ("train.tsv", "dev.tsv"):
        assert (tmp_path / "work" / "data" / "SST-2" / name).read_bytes() == (
            bundle["data"] / name
        ).read_bytes()
    assert sorted(p.name for p in results.iterdir()) == [
        "SUMMARY.md",
        "phases.tsv",
        "results.tar.gz",
    ]
    phases = (results / "phases.tsv").read_text()
    assert "install-train\tok" in phases and "install-ort\tok" in phases


def test_a_corrupted_part_is_refused_on_arrival_and_after_it(bundle, tmp_path):
    host = tmp_path / "host-bundle"
    env = host_env(tmp_path, host)
    results = tmp_path / "results"
    first = bundle["manifest"]["parts"][0]
    deliver(bundle, host, first)
    part_file = host / first["path"]
    data = bytearray(part_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part_file.write_bytes(bytes(data))
    result = run(str(GPU / "run.sh"), str(results), "receive", env=env)
    assert result.returncode != 0
    assert f"{first['path']}: sha256 mismatch" in result.stderr + result.stdout

    # a part that was fine on arrival and spoiled in the stash afterwards
    for part in bundle["manifest"]["parts"]:
        deliver(bundle, host, part)
        assert run(str(GPU / "run.sh"), str(results), "receive", env=env).returncode == 0
    stashed = next((tmp_path / "work" / "parts").glob(f"*/bundle.{first['name']}"))
    stashed.write_bytes(bytes(data))
    result = run(str(GPU / "run.sh"), "--only-assemble", str(results), env=env)
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr + result.stdout
    assert not (tmp_path / "work" / "site" / "train" / "dummy_train").exists()


def test_a_missing_part_names_the_command_to_run_again(bundle, tmp_path):
    host = tmp_path / "host-bundle"
    env = host_env(tmp_path, host)
    parts = bundle["manifest"]["parts"]
    for part in parts[1:]:
        deliver(bundle, host, part)
        assert (
            run(str(GPU / "run.sh"), str(tmp_path / "results"), "receive", env=env).returncode == 0
        )
    result = run(str(GPU / "run.sh"), "--only-assemble", str(tmp_path / "results"), env=env)
    assert result.returncode != 0
    assert f"{parts[0]['name']} (command 1)" in result.stderr + result.stdout


def test_a_file_that_differs_from_its_wheel_record_is_refused(bundle, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_bundle", GPU / "bundle.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    wheel = next((bundle["tmp"] / "wheels" / "ort").glob("*.whl"))
    unpacked = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    assert module.verify_wheel_dir(unpacked) == 5  # two files, METADATA, WHEEL, RECORD
    (unpacked / "dummy_ort" / "__init__.py").write_text("VALUE = 'tampered'\n")
    with pytest.raises(module.BundleError, match="does not match its RECORD"):
        module.verify_wheel_dir(unpacked)
