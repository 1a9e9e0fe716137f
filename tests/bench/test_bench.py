"""The benchmark harness on tiny random BERTs, in-process: the sweep, FLOPs and peak, IO binding,
and `bench compare` catching a deliberately slowed export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import build_bert, sentiment_rows, write_sst2
from onnx import helper, numpy_helper

from slimbert.bench.config import BenchConfig
from slimbert.bench.flops import TransformerShape, measure_peak, precision_of, transformer_shape
from slimbert.bench.render import write_report
from slimbert.bench.run import bench
from slimbert.bench.timing import BoundSession
from slimbert.cli import cli
from slimbert.errors import SlimbertError
from slimbert.export.onnx import export
from slimbert.export.runtime import OnnxClassifier
from slimbert.files import ONNX_FILE

# Every dev row of the fixture is 5 in-vocabulary words: [CLS] + 5 + [SEP] = 7 tokens.
OWN_LENGTH = 7


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 4-layer teacher (HF directory) and a 2-layer student exported to ONNX, hidden 32."""
    root = tmp_path_factory.mktemp("bench")
    dev = write_sst2(root / "dev.tsv", sentiment_rows(24, 2))
    teacher = build_bert(root / "teacher", layers=4, seed=0)
    (teacher / "slimbert.json").write_text(
        json.dumps(
            {"name": "teacher", "method": "teacher", "role": "teacher", "data": {"max_length": 32}}
        )
    )
    student = build_bert(root / "student", layers=2, seed=1)
    (student / "slimbert.json").write_text(
        json.dumps({"name": "kd-2L", "method": "kd", "role": "student", "data": {"max_length": 32}})
    )
    student_onnx = root / "exports" / "kd-2L"
    export(student, dev, student_onnx)
    return {
        "root": root,
        "dev": dev,
        "teacher": teacher,
        "student": student,
        "student_onnx": student_onnx,
    }


# ---------------------------------------------------------------------------------------------
# FLOPs and peak


def test_flops_match_a_hand_count_and_torch_flop_counter(models):
    config = json.loads((models["student"] / "config.json").read_text())
    shape = transformer_shape(config)
    assert shape == TransformerShape(layers=2, hidden=32, heads=4, intermediate=64, num_labels=2)
    # N=2, H=32, I=64, C=2, L=10, by hand:
    #   per layer: QKV+out 4·2·10·32·32 = 81920, scores+context 2·2·10·10·32 = 12800,
    #              FFN 2·2·10·32·64 = 81920                          -> 176640
    #   head: pooler 2·32·32 = 2048, classifier 2·32·2 = 128         -> 2176
    assert shape.flops(10) == 2 * 176640 + 2176 == 355456
    assert shape.request_flops(4, 10) == 4 * 355456

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from slimbert.models import load_classifier

    model = load_classifier(models["student"]).eval()
    ids = torch.randint(5, 30, (3, 7))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert counter.get_total_flops() == shape.request_flops(3, 7) == 732288


def test_flops_read_other_bert_family_spellings():
    distilbert = {
        "model_type": "distilbert",
        "n_layers": 2,
        "dim": 32,
        "n_heads": 4,
        "hidden_dim": 64,
        "id2label": {"0": "a", "1": "b"},
    }
    assert transformer_shape(distilbert).flops(10) == 355456
    assert transformer_shape({"model_type": "textcnn", "embed_dim": 64}) is None
    assert precision_of({"precision": "int8 dynamic (QOperator)"}) == "int8"
    assert precision_of({}) == "fp32" and precision_of({"precision": "fp16"}) == "fp16"
    assert (
        precision_of(
            {
                "precision": "fp32",
                "optimizations": [{"step": "onnxruntime.quantization.quantize_dynamic"}],
            }
        )
        == "int8"
    )


def test_peak_is_measured_at_each_precision():
    fp32 = measure_peak("fp32", "cpu", threads=1, size=256, repeats=3)
    int8 = measure_peak("int8", "cpu", threads=1, size=256, repeats=3)
    # 2·256³ = 33.5 MFLOP per call; any CPU of the last 15 years does more than 0.5 GFLOP/s
    # the best of torch.mm and ONNX Runtime's MatMul, whichever is faster here
    assert fp32.gflops > 0.5 and ("torch.mm fp32 256³" in fp32.method or "MatMul" in fp32.method)
    assert int8.gflops > 0.5 and "MatMulInteger" in int8.method and int8.threads == 1
    with pytest.raises(SlimbertError, match="precision 'int4'"):
        measure_peak("int4")


# ---------------------------------------------------------------------------------------------
# The sweep


@pytest.fixture(scope="module")
def sweep(models):
    config = BenchConfig(
        batch_sizes=[1, 4], lengths=[None, 16], threads=1, warmup=2, repeats=2, isolate=False
    )
    report = bench(
        [models["teacher"], models["student_onnx"]],
        models["dev"],
        models["root"] / "sweep",
        config=config,
    )
    return report


def test_sweep_times_every_point_with_spread(sweep):
    rows = sweep.rows
    expected = {
        (m, rt, b, n)
        for m, rt in (("teacher", "pytorch"), ("teacher", "onnx"), ("kd-2L", "onnx"))
        for b in (1, 4)
        for n in (None, 16)
    }
    assert {(r.model, r.runtime, r.batch_size, r.seq_length) for r in rows} == expected
    assert all(
        r.requests == (24 if r.batch_size == 1 else 6) and r.repeats == 2 and r.threads == 1
        for r in rows
    )
    assert all(r.mean_tokens == (16 if r.padding == "fixed" else OWN_LENGTH) for r in rows)
    assert all(0 <= r.avg_ms_spread and 0 <= r.p99_ms_spread and r.p50_ms <= r.p99_ms for r in rows)
    assert all(r.tokenize_avg_ms > 0 and r.tokenize_p99_ms > 0 for r in rows)
    for row in (
        r for r in rows if r.model == "teacher" and r.runtime == "onnx"
    ):  # the export is the same function
        twin = next(
            r
            for r in rows
            if r.runtime == "pytorch"
            and r.batch_size == row.batch_size
            and r.seq_length == row.seq_length
        )
        assert row.metric == pytest.approx(twin.metric)
    teacher = next(
        r
        for r in rows
        if r.model == "teacher"
        and r.runtime == "pytorch"
        and r.batch_size == 1
        and r.padding == "own"
    )
    assert teacher.vs_teacher == 0.0 and teacher.speedup == 1.0
    assert sweep.extra["sweep"] == {
        "batch_sizes": [1, 4],
        "lengths": ["own", 16],
        "threads": [1],
        "repeats": 2,
        "alternate": True,
        "warmup": 2,
        "limit": None,
    }


def test_passes_alternate_between_rows_and_merge_into_medians(models, monkeypatch):
    """The protocol's "alternating": round r times one pass of every row; each row's figures
    are the medians over its rounds. --in-order times each row's passes back to back."""
    import slimbert.bench.run as run_module

    calls = []
    real = run_module.measure

    def spy(job, eval_path, columns, config, peak):
        payload = real(job, eval_path, columns, config, peak)
        calls.append(((job.target.name, job.target.runtime), config.repeats, payload))
        return payload

    monkeypatch.setattr(run_module, "measure", spy)
    config = BenchConfig(threads=1, warmup=1, repeats=3, limit=6, isolate=False, peak=False)
    paths = [models["teacher"], models["student_onnx"]]
    report = bench(paths, models["dev"], models["root"] / "alternate", config=config)
    order = [row for row, _, _ in calls]
    assert set(order[:3]) == {("teacher", "pytorch"), ("teacher", "onnx"), ("kd-2L", "onnx")}
    assert order == order[:3] * 3
    assert all(repeats == 1 for _, repeats, _ in calls)
    for row in report.rows:
        mine = [payload for who, _, payload in calls if who == (row.model, row.runtime)]
        averages = [payload["avg_ms"] for payload in mine]
        assert row.repeats == 3
        assert row.avg_ms == pytest.approx(float(np.median(averages)))
        assert row.avg_ms_spread == pytest.approx((max(averages) - min(averages)) / 2)
        assert row.total_ms == pytest.approx(float(np.median([p["total_ms"] for p in mine])))
        assert row.qps == pytest.approx(6 / (row.total_ms / 1000))  # a rate over the median
        assert row.metric == mine[0]["metric"]
        assert row.avg_ms_rounds == averages
    # each round's speed-up is the teacher's eager Avg ms over the row's in that same round
    teacher = next(r for r in report.rows if r.role == "teacher" and r.runtime == "pytorch")
    for row in report.rows:
        expected = [t / r for t, r in zip(teacher.avg_ms_rounds, row.avg_ms_rounds, strict=True)]
        assert row.speedup_rounds == pytest.approx(expected) and len(expected) == 3
    assert "The passes alternate" in " ".join(report.notes)

    calls.clear()
    in_order = BenchConfig(
        threads=1, warmup=1, repeats=3, limit=6, isolate=False, peak=False, alternate=False
    )
    report = bench(paths, models["dev"], models["root"] / "in-order", config=in_order)
    assert [row for row, _, _ in calls] == order[:3]
    assert all(repeats == 3 for _, repeats, _ in calls)
    assert all(row.repeats == 3 for row in report.rows)
    assert all(row.speedup_rounds is None for row in report.rows)  # no rounds to pair
    assert "The passes alternate" not in " ".join(report.notes)


def test_sweep_flops_and_share_of_measured_peak(sweep):
    peaks = {(p["precision"], p["threads"]): p["gflops"] for p in sweep.extra["peaks"]}
    assert list(peaks) == [("fp32", 1)]
    # hand counts per example: teacher N=4 and student N=2, H=32, I=64, C=2
    teacher_7 = 4 * (8 * 7 * 32 * 32 + 4 * 7 * 7 * 32 + 4 * 7 * 32 * 64) + 2 * 32 * 32 + 2 * 32 * 2
    assert teacher_7 == 486016
    student_16 = TransformerShape(2, 32, 4, 64, 2).flops(16)
    for row in sweep.rows:
        length = 16 if row.padding == "fixed" else OWN_LENGTH
        per_example = TransformerShape(4 if row.model == "teacher" else 2, 32, 4, 64, 2).flops(
            length
        )
        assert row.gflops_per_request * 1e9 == pytest.approx(row.batch_size * per_example)
        achieved = row.gflops_per_request * row.requests / (row.total_ms / 1000)
        assert row.achieved_gflops == pytest.approx(achieved)
        assert row.peak_gflops == peaks[("fp32", 1)]
        assert row.peak_share == pytest.approx(achieved / row.peak_gflops * 100)
    kd_fixed = next(
        r for r in sweep.rows if r.model == "kd-2L" and r.batch_size == 4 and r.padding == "fixed"
    )
    assert kd_fixed.gflops_per_request * 1e9 == pytest.approx(4 * student_16)
    teacher_own = next(
        r for r in sweep.rows if r.model == "teacher" and r.batch_size == 1 and r.padding == "own"
    )
    assert teacher_own.gflops_per_request * 1e9 == pytest.approx(teacher_7)


def test_sweep_writes_every_report_file(sweep, models):
    out = models["root"] / "sweep-report"
    path = write_report(sweep, out)
    md = path.read_text()
    assert (
        md.index("| Method | Model | Requests | Total ms | Avg ms | F1 | vs Teacher |")
        < md.index("## Physical limit")
        < md.index("## Details")
    )
    requests = md[: md.index("## Physical limit")]
    assert requests.count("\n| teacher |") == 8 and requests.count("\n| kd |") == 4
    assert (out / "report.csv").read_text().count("\n") == 13
    assert {p.name for p in out.glob("*.png")} == {"pareto.png", "speedup.png", "size.png"}
    assert json.loads((out / "report.json").read_text())["rows"][0]["gflops_per_request"] > 0


def test_thread_sweep_and_bad_lengths(models):
    config = BenchConfig(
        lengths=[16], thread_counts=[1, 2], warmup=1, repeats=1, isolate=False, peak=False
    )
    report = bench(
        [models["student_onnx"]], models["dev"], models["root"] / "threads", config=config
    )
    assert [(r.threads, r.seq_length) for r in report.rows] == [(1, 16), (2, 16)]
    assert report.extra["peaks"] == [] and all(
        r.peak_share is None and r.gflops_per_request > 0 for r in report.rows
    )
    too_long = BenchConfig(lengths=[128], isolate=False)
    with pytest.raises(SlimbertError, match="--lengths 128: kd-2L takes at most 64 tokens"):
        bench([models["student_onnx"]], models["dev"], models["root"] / "long", config=too_long)
    with pytest.raises(SlimbertError, match="--slo 'fast'"):
        bench(
            [models["student_onnx"]],
            models["dev"],
            models["root"] / "slo",
            config=BenchConfig(slo="fast"),
        )


def test_io_binding_reuses_buffers_and_matches_plain_runs(models):
    """The CUDA path's binding code runs on the CPU too, so it is checked here without a GPU."""
    plain = OnnxClassifier(models["student_onnx"] / ONNX_FILE, "cpu", threads=1)
    bound = BoundSession(plain.session, device="cpu")
    rng = np.random.default_rng(0)
    for shape in [(1, 7), (4, 16), (1, 7)]:
        features = {
            "input_ids": rng.integers(5, 30, shape),
            "attention_mask": np.ones(shape, np.int64),
            "token_type_ids": np.zeros(shape, np.int64),
        }
        np.testing.assert_allclose(bound(features), plain(features), atol=1e-6)
    assert sorted(bound.bindings) == [(1, 7), (4, 16)] and bound.num_labels == 2


def test_fp16_pytorch_rows_are_cuda_only_and_the_fp32_teacher_stays_the_baseline(
    models, monkeypatch
):
    with pytest.raises(SlimbertError, match="--torch-precision fp16: PyTorch has no fast fp16"):
        BenchConfig(torch_precisions=("fp32", "fp16")).check()
    with pytest.raises(SlimbertError, match=r"--torch-precision \['bf8'\]"):
        BenchConfig(provider="cuda", torch_precisions=("bf8",)).check()
    result = CliRunner().invoke(
        cli,
        ["bench", "--model", str(models["teacher"]), "--eval", str(models["dev"])]
        + ["--out", str(models["root"] / "refused"), "--torch-precision", "fp16"],
    )
    assert result.exit_code != 0 and "no fast fp16 kernels on the CPU" in result.output

    # the rows themselves, on the CPU (no GPU in CI): the check that keeps fp16 on CUDA is
    # passed by, so the cast path and the teacher baseline are what is tested
    monkeypatch.setattr(BenchConfig, "check", lambda self: None)
    config = BenchConfig(
        runtimes=("pytorch",),
        torch_precisions=("fp16", "fp32"),
        warmup=1,
        repeats=1,
        isolate=False,
        peak=False,
    )
    report = bench(
        [models["teacher"], models["student"]],
        models["dev"],
        models["root"] / "fp16",
        config=config,
    )
    rows = {(r.model, r.precision): r for r in report.rows}
    assert sorted(rows) == [
        ("kd-2L", "fp16"),
        ("kd-2L", "fp32"),
        ("teacher", "fp16"),
        ("teacher", "fp32"),
    ]
    assert rows["teacher", "fp32"].speedup == pytest.approx(1.0)  # fp32 eager is the baseline
    assert rows["teacher", "fp16"].speedup == pytest.approx(
        rows["teacher", "fp32"].avg_ms / rows["teacher", "fp16"].avg_ms
    )
    assert "teacher (pytorch, fp16)" in rows["teacher", "fp16"].label()
    # half weights, same predictions on this tiny model
    assert rows["kd-2L", "fp16"].accuracy == pytest.approx(rows["kd-2L", "fp32"].accuracy)


@pytest.mark.gpu
def test_cuda_rows_with_and_without_io_binding(models):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs onnxruntime-gpu and a CUDA device")
    config = BenchConfig(provider="cuda", runtimes=("onnx",), warmup=2, repeats=2, isolate=False)
    report = bench([models["student_onnx"]], models["dev"], models["root"] / "cuda", config=config)
    plain, bound = sorted(report.rows, key=lambda r: r.io_binding)
    assert (plain.io_binding, bound.io_binding) == (False, True)
    assert plain.metric == pytest.approx(bound.metric) and bound.requests == 24
    eager = BenchConfig(
        provider="cuda",
        runtimes=("pytorch",),
        torch_precisions=("fp32", "fp16"),
        warmup=2,
        repeats=2,
        isolate=False,
    )
    report = bench([models["student"]], models["dev"], models["root"] / "cuda-eager", config=eager)
    fp32, fp16 = sorted(report.rows, key=lambda r: r.precision != "fp32")
    assert (fp32.provider, fp16.provider, fp16.precision) == ("cuda", "cuda", "fp16")
    assert fp16.accuracy == pytest.approx(fp32.accuracy) and fp16.requests == 24


# ---------------------------------------------------------------------------------------------
# bench compare: a release gate


def slow_down(export_dir: Path, dest: Path, size: int = 384, chain: int = 12) -> Path:
    """Copy an export and add `chain` (size, size) matmuls to every request whose result is
    multiplied by zero and added to the logits: same outputs, much slower.

        input_ids ─Cast─ReduceSum─Mul(0)─┐
        C (size, size) ──────────────────Add── M ─MatMul(M)─ … ─ReduceSum─Mul(0)─┐
        logits_raw ──────────────────────────────────────────────────────────Add── logits

    The zero comes from the input, so graph optimisation cannot fold the chain away."""
    shutil.copytree(export_dir, dest)
    model = onnx.load(str(dest / ONNX_FILE))
    graph = model.graph
    producer = next(node for node in graph.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "logits_raw"
    rng = np.random.default_rng(0)
    graph.initializer.extend(
        [
            numpy_helper.from_array(
                (rng.uniform(-1, 1, (size, size)) / size).astype(np.float32), "slow_c"
            ),
            numpy_helper.from_array(np.array(0.0, np.float32), "slow_zero"),
        ]
    )
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["slow_ids"], to=onnx.TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["slow_ids"], ["slow_sum"], keepdims=0),
        helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_z"]),
        helper.make_node("Add", ["slow_c", "slow_z"], ["slow_m0"]),
    ]
    for i in range(chain):
        nodes.append(helper.make_node("MatMul", [f"slow_m{i}", "slow_c"], [f"slow_m{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"slow_m{chain}"], ["slow_total"], keepdims=0),
        helper.make_node("Mul", ["slow_total", "slow_zero"], ["slow_nothing"]),
        helper.make_node("Add", ["logits_raw", "slow_nothing"], ["logits"]),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest / ONNX_FILE))
    return dest


def run_bench(export_dir: Path, dev: Path, out: Path) -> Path:
    config = BenchConfig(threads=1, warmup=2, repeats=3, isolate=False, peak=False)
    write_report(bench([export_dir], dev, out, config=config), out)
    return out / "report.json"


def test_compare_flags_a_slowed_model_and_passes_an_unchanged_one(models):
    root = models["root"]
    slowed = slow_down(models["student_onnx"], root / "slowed" / "kd-2L")
    old = run_bench(models["student_onnx"], models["dev"], root / "run-old")
    slow = run_bench(slowed, models["dev"], root / "run-slow")
    # An unchanged model is the same report (two timed runs can differ by any factor on a busy
    # machine); a generous threshold for the slowed one, which is a few hundred times slower, not
    # 3x: twelve chained matmuls, so that a machine busy with other work (both runs' spread is
    # allowed for) cannot hide the slowdown, whatever the CPU's matmul kernels.
    unchanged = CliRunner().invoke(
        cli, ["bench", "compare", str(old), str(old), "--threshold", "200%"]
    )
    assert unchanged.exit_code == 0, unchanged.output
    assert "0 regressions in 1 matching rows" in unchanged.output
    regressed = CliRunner().invoke(
        cli, ["bench", "compare", str(old), str(slow.parent), "--threshold", "200%"]
    )
    assert regressed.exit_code == 3, regressed.output  # REGRESSION_EXIT, apart from errors (1)
    assert regressed.output.startswith(
        "SLOWER: kd-2L (onnx, cpu, fp32, batch 1, own length, 1 thread) p50:"
    )
    assert "LESS ACCURATE" not in regressed.output  # the slowed graph returns the same logits
    before, after = (json.loads(p.read_text())["rows"][0] for p in (old, slow))
    assert after["metric"] == before["metric"] and after["p50_ms"] > 3 * before["p50_ms"]


def test_bench_cli_keeps_its_form_and_recommends(models, tmp_path):
    out = tmp_path / "cli"
    args = [
        "bench",
        "--model",
        str(models["student_onnx"]),
        "--eval",
        str(models["dev"]),
        "--out",
        str(out),
        "--in-process",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--lengths",
        "own,16",
        "--no-peak",
        "--slo",
        "p99<=5s",
        "--max-f1-drop",
        "1.0",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [r["seq_length"] for r in report["rows"]] == [None, 16]
    assert (
        report["extra"]["recommendation"]["model"] == "kd-2L" and "is recommended" in result.output
    )
    # latency vs F1 and size vs F1; no teacher here, so no speed-up plot
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 2
    mixed = CliRunner().invoke(cli, ["bench", "--model", "x", "compare", "a.json", "b.json"])
    assert mixed.exit_code == 2 and "not both" in mixed.output
    missing = CliRunner().invoke(cli, ["bench", "--model", "x"])
    assert missing.exit_code == 2 and "Missing option --eval, --out" in missing.output
