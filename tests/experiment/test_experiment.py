"""slimbert experiment: recipe checking, the cell plan, resuming without recomputing, the table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import slimbert.experiment.cells as experiment_module
from slimbert.cli import cli
from slimbert.errors import SlimbertError
from slimbert.experiment.cells import run_experiment
from slimbert.experiment.recipe import TEACHING_PATHS, read_recipe
from slimbert.experiment.stages import Stages

BASE_F1 = {"ts": 70.0, "ps-boosting": 71.0, "ps-da": 72.0, "ps-da-star": 73.0}


class Fakes:
    """Stages that record their calls and make the folders a real stage would."""

    def __init__(self, fail_at_distil: int | None = None):
        self.calls: Counter[str] = Counter()
        self.args: dict[str, list] = {}
        self.fail_at_distil = fail_at_distil

    def stages(self) -> Stages:
        return Stages(
            self.train_teacher, self.boost, self.augment, self.pretrain, self.distil, self.bench
        )

    def _record(self, name: str, *args) -> None:
        self.calls[name] += 1
        self.args.setdefault(name, []).append(args)

    def train_teacher(self, base, spec, out, config, save_route=0):
        self._record("train_teacher", base, spec, out, config, save_route)
        out.mkdir(parents=True, exist_ok=True)
        f1 = 80.0 if out.name == "teacher" else 82.0
        return {
            "dir": str(out),
            "metric": {"accuracy": f1 - 5, "f1": f1},
            "metric_name": "f1",
            "best_step": 10,
            "steps": 20,
        }

    def boost(self, base, spec, out, settings, first_member, config):
        self._record("boost", base, spec, out, settings, first_member, config)
        out.mkdir(parents=True, exist_ok=True)
        rounds = [
            {
                "round": 0,
                "weighted_error": 0.1,
                "alpha": 2.2,
                "train_errors": 3,
                "eval_main": 80.0,
                "kept": True,
            },
            {
                "round": 1,
                "weighted_error": 0.37,
                "alpha": 0.53,
                "train_errors": 5,
                "eval_main": 68.0,
                "degenerate": "predicts only 1 on the training set",
                "kept": False,
                "retried": True,
            },
            {
                "round": 1,
                "weighted_error": 0.6,
                "alpha": -0.4,
                "train_errors": 9,
                "out_of_bag_rows": 15,  # a "bag" round: scored on the rows left out
                "out_of_bag_errors": 9,
                "eval_main": 60.0,
                "kept": False,
            },
        ]
        return {
            "dir": str(out),
            "metric": {"accuracy": 76.0, "f1": 81.0},
            "metric_name": "f1",
            "members": 1,
            "stopped": "stopped at round 2: weighted error 0.600 ≥ 1 − 1/K, no better than chance",
            "rounds": rounds,
        }

    def augment(self, spec, out, config, teacher):
        self._record("augment", spec, out, config, teacher)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("sentence1\tsentence2\tlabel\n")
        return {
            "file": str(out),
            "report": {
                "source_pairs": 10,
                "output_rows": 25,
                "added": 15,
                "rules": {"symmetry": {"added": 10}},
                "labels_before": {},
                "labels_after": {},
            },
        }

    def pretrain(self, teacher, texts, out, settings, config, spec):
        self._record("pretrain", teacher, texts, out, settings, config, spec)
        out.mkdir(parents=True, exist_ok=True)
        return {
            "dir": str(out),
            "mlm_loss_before": 5.0,
            "metric": {"mlm_loss": 3.0},
            "best_step": 2,
            "steps": 4,
        }

    def distil(self, method, teacher, spec, out, settings, config):
        if self.fail_at_distil is not None and self.calls["distil"] == self.fail_at_distil:
            raise KeyboardInterrupt
        self._record("distil", method, teacher, spec, out, settings, config)
        layers = settings.layers
        method = out.name.split("-", 1)[1].rsplit(f"-{layers}L", 1)[0]
        f1 = (
            BASE_F1[method] - 2 * (3 - layers) + (config.seed - 2)
        )  # seeds 1, 2, 3: mean = base, std = 1
        out.mkdir(parents=True, exist_ok=True)
        return {
            "dir": str(out),
            "metric": {"accuracy": f1 - 5, "f1": f1},
            "metric_name": "f1",
            "teacher_metric": {},
            "best_step": 5,
            "steps": 9,
        }

    def bench(self, model, eval_path, out, columns, settings):
        self._record("bench", model, eval_path, out, columns, settings)
        layers = 6 if model.name == "teacher" else int(model.name.split("-")[-2][:-1])
        avg = 2.0 * layers
        row = {
            "method": "kd",
            "model": model.name,
            "runtime": settings.runtime,
            "provider": "cpu",
            "batch_size": 1,
            "requests": 24,
            "total_ms": 24 * avg,
            "avg_ms": avg,
            "p50_ms": avg,
            "p90_ms": avg,
            "p99_ms": avg,
            "qps": 1000 / avg,
            "metric_name": "f1",
            "metric": 0.0,
        }
        return {"row": row, "environment": {"cpu": "test cpu", "cores": 2, "threads": 2}}


@pytest.fixture
def recipe(tmp_path, sst2_files) -> Path:
    train, dev = sst2_files
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "train": str(train),
                "eval": str(dev),
                "out": str(tmp_path / "exp"),
                "depths": [3, 1],
                "seeds": [1, 2, 3],
                "student": {"epochs": 2.0, "lr": 1e-4},
                "augment": {"filter_confidence": 0.9},
                "bench": {"warmup": 2},
            }
        )
    )
    return path


def test_a_resumed_experiment_recomputes_nothing_that_finished(recipe):
    with pytest.raises(KeyboardInterrupt):
        run_experiment(recipe, stages=Fakes(fail_at_distil=5).stages(), echo=lambda line: None)

    resumed = Fakes()
    experiment = run_experiment(recipe, stages=resumed.stages(), echo=lambda line: None)
    # 2 depths × 3 seeds × 4 methods = 24 students; 5 finished before the interruption.
    assert dict(resumed.calls) == {"distil": 24 - 5, "bench": 3}
    assert (
        len(experiment.read_back) == 6 + 5
    )  # teacher, boost, augment, DA professor, 2 pre-trainings

    again = Fakes()
    experiment = run_experiment(recipe, stages=again.stages(), echo=lambda line: None)
    assert sum(again.calls.values()) == 0 and len(experiment.read_back) == 6 + 24 + 3


def test_a_changed_setting_or_a_lost_model_recomputes_only_what_depends_on_it(recipe):
    run_experiment(recipe, stages=Fakes().stages(), echo=lambda line: None)
    payload = yaml.safe_load(recipe.read_text())
    payload["student"]["lr"] = 2e-4
    recipe.write_text(yaml.safe_dump(payload))
    changed = Fakes()
    run_experiment(recipe, stages=changed.stages(), echo=lambda line: None)
    assert dict(changed.calls) == {"distil": 24, "bench": 2}  # the teacher's latency stands

    lost = Path(payload["out"]) / "models" / "students" / "student-ps-da-star-1L-seed2"
    for file in lost.iterdir():
        file.unlink()
    lost.rmdir()
    redo = Fakes()
    run_experiment(recipe, stages=redo.stages(), echo=lambda line: None)
    assert dict(redo.calls) == {"distil": 1}


def test_cells_wire_teachers_professors_and_pretrained_students(recipe):
    fakes = Fakes()
    experiment = run_experiment(recipe, stages=fakes.stages(), echo=lambda line: None)
    models = experiment.out / "models"
    assert fakes.args["boost"][0][4] == models / "teacher"  # round 1 is the TS teacher
    assert fakes.args["augment"][0][3] == models / "teacher"  # the filter's teacher
    assert (
        fakes.args["train_teacher"][1][1].train == experiment.augmented_file
    )  # the PS-DA professor
    assert [a[0] for a in fakes.args["pretrain"]] == [models / "professor-da"] * 2
    by_student = {a[3].name: a for a in fakes.args["distil"]}
    assert all(a[0] == "kd" for a in by_student.values())  # the default method
    assert (
        by_student["student-ts-3L-seed1"][1] == models / "teacher"
        and by_student["student-ts-3L-seed1"][4].student_init is None
        and by_student["student-ts-3L-seed1"][4].layers == 3
    )
    assert by_student["student-ps-boosting-1L-seed3"][1] == models / "professor-boost"
    assert (
        by_student["student-ps-da-3L-seed2"][1] == models / "professor-da"
        and by_student["student-ps-da-3L-seed2"][4].student_init is None
    )
    assert by_student["student-ps-da-star-1L-seed2"][4].student_init == models / "pretrain-1L"
    assert (
        by_student["student-ps-da-star-1L-seed2"][5].seed == 2
        and by_student["student-ps-da-star-1L-seed2"][5].lr == 1e-4
    )
    assert all(
        a[2].train == experiment.config.train for a in fakes.args["distil"]
    )  # same data for every student


def test_teacher_route_is_kept_for_the_ts_teacher_only_and_keys_the_teacher(recipe):
    payload = yaml.safe_load(recipe.read_text())
    recipe.write_text(yaml.safe_dump({**payload, "teacher_route": 2}))
    fakes = Fakes()
    run_experiment(recipe, stages=fakes.stages(), echo=lambda line: None)
    routes = {a[2].name: a[4] for a in fakes.args["train_teacher"]}
    assert routes == {"teacher": 2, "professor-da": 0}
    recipe.write_text(yaml.safe_dump({**payload, "teacher_route": 3}))
    again = Fakes()
    run_experiment(recipe, stages=again.stages(), echo=lambda line: None)
    assert (
        again.calls["train_teacher"] == 2 and again.calls["distil"] == 24
    )  # a new teacher: all downstream redone
    recipe.write_text(yaml.safe_dump({**payload, "teacher_route": -1}))
    with pytest.raises(SlimbertError, match="teacher_route -1"):
        read_recipe(recipe)


def test_the_transfer_set_is_the_students_alone(recipe, tmp_path):
    run_experiment(recipe, stages=Fakes().stages(), echo=lambda line: None)
    transfer = tmp_path / "transfer.jsonl"
    transfer.write_text('{"text": "a fine film", "label": "1", "logits": [0.0, 1.0]}\n')
    payload = yaml.safe_load(recipe.read_text())
    recipe.write_text(yaml.safe_dump({**payload, "transfer": str(transfer)}))
    fakes = Fakes()
    run_experiment(recipe, stages=fakes.stages(), echo=lambda line: None)
    # teacher, professors and pre-training stand: only the students (and the student bench)
    # are new, every one of them given the set
    assert dict(fakes.calls) == {"distil": 24, "bench": 2}
    assert {a[2].transfer for a in fakes.args["distil"]} == {transfer}

    fresh = Fakes()
    payload["out"] = str(tmp_path / "fresh")
    recipe.write_text(yaml.safe_dump({**payload, "transfer": str(transfer)}))
    run_experiment(recipe, stages=fresh.stages(), echo=lambda line: None)
    assert [a[1].transfer for a in fresh.args["train_teacher"]] == [None, None]
    assert fresh.args["boost"][0][1].transfer is None
    assert fresh.args["augment"][0][0].transfer is None
    assert {a[5].transfer for a in fresh.args["pretrain"]} == {None}


def test_the_table_reads_like_the_source(recipe):
    experiment = run_experiment(recipe, stages=Fakes().stages(), echo=lambda line: None)
    text = (experiment.out / "experiment.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == (
        "| Model | Requests | Total ms | Avg ms | TS-F1 | PS-Boosting-F1 | PS-DA-F1 | PS-DA*-F1 "
        "| vs Teacher |"
    )
    assert (
        lines[2] == "| Teacher | 24 | 288.0 | 12.00 | 80.00 | 81.00 | 82.00 | – | +2.00 (PS-DA) |"
    )
    assert lines[3] == (
        "| Student 3L | 24 | 144.0 | 6.00 "
        "| 70.00 ± 1.00 | 71.00 ± 1.00 | 72.00 ± 1.00 | 73.00 ± 1.00 | -7.00 (PS-DA*) |"
    )
    assert lines[4] == (
        "| Student 1L | 24 | 48.0 | 2.00 "
        "| 66.00 ± 1.00 | 67.00 ± 1.00 | 68.00 ± 1.00 | 69.00 ± 1.00 | -11.00 (PS-DA*) |"
    )
    assert "| Student 1L | 24 | 48.0 | 2.00 | 61.00 ± 1.00 |" in text  # the accuracy table
    assert (
        "round 2: weighted error 0.3700, α 0.530, member dev 68.00 "
        "(predicts only 1 on the training set) (retried); "
        "round 2: weighted error 0.6000 (on the 15 rows left out of its bag), α -0.400, "
        "member dev 60.00 (dropped)" in text
    )
    assert (experiment.out / "report" / "pareto.png").stat().st_size > 1000
    assert (
        text.startswith("# Teacher → professor → student")
        and "- Git revision:" in text
        and "- Machine:" in text
    )


def test_methods_subset_plans_only_what_it_needs(recipe):
    payload = yaml.safe_load(recipe.read_text())
    payload["methods"] = ["TS", "PS-DA"]
    recipe.write_text(yaml.safe_dump(payload))
    fakes = Fakes()
    experiment = run_experiment(recipe, stages=fakes.stages(), echo=lambda line: None)
    assert dict(fakes.calls) == {"train_teacher": 2, "augment": 1, "distil": 12, "bench": 3}
    assert (
        "| Student 3L | 24 | 144.0 | 6.00 | 70.00 ± 1.00 | – | 72.00 ± 1.00 | – | -8.00 (PS-DA) |"
        in (experiment.out / "experiment.md").read_text()
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 3}, "recipe key 'epochs' is unknown"),
        ({"student": {"lr": "fast"}}, "recipe key 'student.lr': expected a number, got 'fast'"),
        ({"boost": {"round": 2}}, "recipe key 'boost.round' is unknown; valid keys under boost"),
        ({"seeds": 3}, "recipe key 'seeds': expected a list of int"),
        ({"methods": ["TS", "PS-KD"]}, "choose from TS, PS-Boosting, PS-DA, PS-DA*"),
        ({"augment": {"max_path": 9}}, "recipe section augment: --max-path 9"),
        ({"boost": {"weighting": "bag"}}, "set boost_from_teacher: false"),
    ],
)
def test_recipe_errors_name_the_key(recipe, change, message):
    payload = {**yaml.safe_load(recipe.read_text()), **change}
    recipe.write_text(yaml.safe_dump(payload))
    with pytest.raises(SlimbertError) as error:
        read_recipe(recipe)
    assert message in str(error.value)


def test_example_recipe_parses_and_covers_the_issue():
    path = Path(__file__).parents[2] / "recipes" / "experiment-mrpc.yaml"
    assert "#   slimbert experiment recipes/experiment-mrpc.yaml" in path.read_text()
    config = read_recipe(path)
    assert (
        config.methods == list(TEACHING_PATHS)
        and config.depths == [3, 2, 1]
        and len(config.seeds) >= 3
    )
    assert (
        config.base == "minilm-l6" and config.max_length == 128 and config.train.name == "train.tsv"
    )
    assert config.augment.filter_confidence == 0.9
    # boosting by bags, as benchmarks/results/quality-mrpc/NOTES.md found for MRPC
    assert config.boost.weighting == "bag" and not config.boost_from_teacher


def test_experiment_cli(recipe, tmp_path, monkeypatch):
    fakes = Fakes()
    monkeypatch.setattr(experiment_module, "Stages", fakes.stages)
    result = CliRunner().invoke(
        cli, ["experiment", str(recipe), "--out", str(tmp_path / "elsewhere")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "| Student 3L |" in result.output and (tmp_path / "elsewhere" / "experiment.md").is_file()
    )
    bad = CliRunner().invoke(cli, ["experiment", str(tmp_path / "missing.yaml")])
    assert (
        bad.exit_code == 1
        and "cannot read the recipe" in bad.output
        and "Traceback" not in bad.output
    )


@pytest.mark.slow
def test_real_stages_on_tiny_models(tmp_path):
    """The whole matrix with the real stages on a tiny 4-layer BERT and tiny pair files:
    every cell runs once, a rerun reads all of them back (about two minutes on 2 cores)."""
    import json
    import random

    import torch
    from conftest import FILLER, NEGATIVE, POSITIVE, build_bert

    def pairs(path: Path, n: int, seed: int, pool: int) -> Path:
        rng = random.Random(seed)

        def sentence(words):
            chosen = rng.sample(words, 2) + rng.sample(FILLER, 3)
            rng.shuffle(chosen)
            return " ".join(chosen)

        positive, negative = (
            [sentence(POSITIVE) for _ in range(pool)],
            [sentence(NEGATIVE) for _ in range(pool)],
        )
        lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(n):
            side, same = rng.random() < 0.5, rng.random() < 0.5
            first = rng.choice(positive if side else negative)
            second = rng.choice(
                (positive if side else negative) if same else (negative if side else positive)
            )
            lines.append(f"{int(same)}\t{i}\t{i + 1}\t{first}\t{second}")
        path.write_text("\n".join(lines) + "\n")
        return path

    torch.set_num_threads(1)
    base = build_bert(tmp_path / "base", layers=4, num_labels=None)
    budget = {
        "max_steps": 12,
        "batch_size": 16,
        "lr": 3e-3,
        "patience": 0,
        "eval_every": 6,
        "progress": False,
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "train": str(pairs(tmp_path / "train.tsv", 96, 1, 12)),
                "eval": str(pairs(tmp_path / "dev.tsv", 24, 2, 6)),
                "out": str(tmp_path / "exp"),
                "base": str(base),
                "max_length": 32,
                "depths": [3, 1],
                "seeds": [1, 2],
                "teacher": budget,
                "student": {**budget, "max_steps": 6},
                "pretrain_train": {**budget, "max_steps": 4},
                "boost": {"rounds": 2},
                "augment": {"filter_confidence": 0.9},
                "bench": {"warmup": 2, "repeats": 1, "limit": 8},
            }
        )
    )
    first = run_experiment(recipe, echo=lambda line: None)
    assert (
        len(first.computed) == 4 + 2 + 2 * 2 * 4 + 3 and not first.read_back
    )  # professors, pre-trainings, students, latency
    again = run_experiment(recipe, echo=lambda line: None)
    assert not again.computed and len(again.read_back) == len(first.computed)
    star = json.loads(
        (
            first.out / "models" / "students" / "student-ps-da-star-1L-seed2" / "slimbert.json"
        ).read_text()
    )
    assert star["student_init"]["path"].endswith("pretrain-1L") and star["teacher"].endswith(
        "professor-da"
    )
    boosted = json.loads(
        (
            first.out / "models" / "students" / "student-ps-boosting-3L-seed1" / "slimbert.json"
        ).read_text()
    )
    assert boosted["teacher_meta"]["method"] == "boost"
    assert "| Student 1L |" in (first.out / "experiment.md").read_text()
