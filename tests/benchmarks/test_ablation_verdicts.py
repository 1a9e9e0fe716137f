"""The ablation tables say, row by row, whether a paper's direction reproduces: the verdict is
computed from the seeds' paired Δ accuracies, never typed in."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "summarize_ablations.py"


@pytest.fixture(scope="module")
def summarize():
    spec = importlib.util.spec_from_file_location("benchmark_summarize_ablations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize(
    ("deltas", "sign", "said"),
    [
        ([-1.0, -1.2, -0.8], -1, "reproduces"),  # mean −1.0, std 0.2: below, as the paper
        ([1.0, 1.2, 0.8], -1, "does not reproduce"),  # above where the paper is below
        ([0.5, -0.4, 0.2], 1, "within noise"),  # mean 0.1 inside its std 0.47
        ([0.3, 0.3, 0.3], 1, "reproduces"),  # no spread: any mean is outside it
    ],
)
def test_a_rows_verdict_follows_its_mean_and_spread(summarize, deltas, sign, said):
    assert summarize.verdict(deltas, sign) == said


def test_the_paper_line_names_each_placed_row_and_tallies(summarize, tmp_path, monkeypatch):
    table = summarize.Table(
        "t",
        "paper",
        (
            summarize.Row("m-ref", "reference"),
            summarize.Row("m-a", "a", paper=-1),
            summarize.Row("m-b", "b", paper=1),
            summarize.Row("m-c", "c"),  # no paper row: never judged
        ),
        "m-ref",
    )
    accuracy = {"m-ref": [80.0, 81.0, 82.0], "m-a": [78.0, 79.5, 80.0], "m-b": [79.0, 82.0, 81.0]}

    def seeds_of(folder, task, stem, seeds):
        return {
            seed: {"metric": {"accuracy": value}}
            for seed, value in zip(seeds, accuracy.get(stem, []), strict=False)
        }

    monkeypatch.setattr(summarize, "seeds_of", seeds_of)
    reference = seeds_of(tmp_path, "mrpc", "m-ref", [1, 2, 3])
    [line, blank] = summarize.paper_line(tmp_path, "mrpc", table, [1, 2, 3], reference)
    # a: −2.0, −1.5, −2.0 → −1.83 ± 0.29, below as the paper says; b: −1, +1, −1 → noise
    assert line == (
        "*Against the paper:* a (the paper: below) -1.83 ± 0.29, reproduces; "
        "b (the paper: above) -0.33 ± 1.15, within noise — 1 reproduces, 1 within noise."
    )
    assert blank == ""
