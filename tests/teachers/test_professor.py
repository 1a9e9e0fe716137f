"""professor boost: SAMME by hand, the ensemble artifact and the ensemble as a kd teacher
(professor augment: test_pair_augment.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import build_bert, sentiment_rows, write_sst2

from slimbert.batches import DataSpec
from slimbert.cli import cli
from slimbert.errors import SlimbertError
from slimbert.teachers.boost import BoostConfig, boost
from slimbert.teachers.ensemble import EnsembleClassifier, combine_logits
from slimbert.teachers.samme import draw_bag, samme_step, weighted_hard_loss, weighted_loader
from slimbert.training.config import TrainConfig

# ---------------------------------------------------------------------------------------------
# SAMME


def test_samme_three_classes_hand_computed():
    # err = 0.25; α = log(0.75 / 0.25) + log(3 − 1) = log 6; the one miss goes 0.25 → 0.25·6 = 1.5,
    # then everything is divided by 1.5 + 3·0.25 = 2.25.
    step = samme_step(np.full(4, 0.25), np.array([True, False, False, False]), num_classes=3)
    assert step.error == pytest.approx(0.25)
    assert step.alpha == pytest.approx(math.log(6.0))
    np.testing.assert_allclose(step.weights, [2 / 3, 1 / 9, 1 / 9, 1 / 9], rtol=1e-12)
    assert not step.chance and not step.perfect


def test_samme_binary_non_uniform_and_shrinkage():
    # err = 0.2 / 1.0; α = log(0.8 / 0.2) + log 1 = log 4; w = [0.1, 0.8, 0.3, 0.4] / 1.6.
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    miss = np.array([False, True, False, False])
    step = samme_step(weights, miss, num_classes=2)
    assert step.error == pytest.approx(0.2)
    assert step.alpha == pytest.approx(math.log(4.0))
    np.testing.assert_allclose(step.weights, [0.0625, 0.5, 0.1875, 0.25], rtol=1e-12)
    # ν = 0.5: α = log 2, the miss doubles: [0.1, 0.4, 0.3, 0.4] / 1.2.
    half = samme_step(weights, miss, num_classes=2, shrinkage=0.5)
    assert half.alpha == pytest.approx(math.log(2.0))
    np.testing.assert_allclose(half.weights, np.array([0.1, 0.4, 0.3, 0.4]) / 1.2, rtol=1e-12)


def test_samme_chance_and_perfect_members():
    chance = samme_step(np.full(4, 0.25), np.array([True, True, False, False]), num_classes=2)
    assert chance.chance and chance.alpha == pytest.approx(0.0)
    np.testing.assert_allclose(chance.weights, np.full(4, 0.25))
    # No misses: err is clipped to half an example, 0.5 / 4, so α = log(0.875 / 0.125) = log 7.
    perfect = samme_step(np.full(4, 0.25), np.zeros(4, dtype=bool), num_classes=2)
    assert perfect.perfect and perfect.error == 0.0
    assert perfect.alpha == pytest.approx(math.log(7.0))
    np.testing.assert_allclose(perfect.weights, np.full(4, 0.25))


def test_samme_scores_only_the_given_rows_and_reweights_every_row():
    # Scored rows 0, 1, 2 (row 3 was in the member's bag): err = 0.25 / 0.75 = 1/3, α = log 2.
    # Every miss is raised, the unscored row 3's too: [0.25·2, 0.25, 0.25, 0.25·2] / 1.5.
    miss = np.array([True, False, False, True])
    step = samme_step(np.full(4, 0.25), miss, 2, scored=np.array([True, True, True, False]))
    assert step.error == pytest.approx(1 / 3)
    assert step.alpha == pytest.approx(math.log(2.0))
    np.testing.assert_allclose(step.weights, [1 / 3, 1 / 6, 1 / 6, 1 / 3], rtol=1e-12)
    # no miss among the scored rows: the floor is half a *scored* example, 0.5 / 2
    clean = samme_step(np.full(4, 0.25), miss, 2, scored=np.array([False, True, True, False]))
    assert clean.error == 0.0 and clean.alpha == pytest.approx(math.log(3.0))
    assert not clean.perfect  # rows 0 and 3 are still missed: there is something to reweight
    with pytest.raises(ValueError, match="scored"):
        samme_step(np.full(4, 0.25), miss, 2, scored=np.zeros(4, dtype=bool))


@pytest.mark.parametrize("group_by_length", [True, False])
def test_a_bag_follows_the_weights_and_its_loader_sees_only_the_bag(group_by_length):
    from slimbert.batches import EncodedDataset
    from slimbert.data import Examples

    weights = np.array([0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    bag = draw_bag(weights, seed=3)
    assert len(bag) == 8 and set(bag) <= {1, 3}  # a zero weight is never drawn
    np.testing.assert_array_equal(bag, draw_bag(weights, seed=3))  # seeded
    uniform = draw_bag(np.full(1000, 1e-3), seed=0)
    assert 0.58 < len(set(uniform)) / 1000 < 0.68  # 1 − 1/e of the rows, the rest out of bag

    class Words:  # the loader only needs input ids and a pad id
        pad_token_id = 0

        def __call__(self, texts, pairs=None, **kwargs):
            return {"input_ids": [[1, 2 + len(text)] for text in texts]}

    texts = [f"row {i}" * (i + 1) for i in range(8)]
    examples = Examples(texts, None, ["0", "1"] * 4, "classification", Path("rows.tsv"))
    data = EncodedDataset(Words(), examples, max_length=32, label_ids=[0, 1] * 4)
    config = TrainConfig(batch_size=3, seed=5, progress=False, group_by_length=group_by_length)
    seen = [
        int(i)
        for _ in range(2)
        for batch in weighted_loader(data, weights, "bag", config, bag)
        for i in batch["idx"]
    ]
    assert sorted(seen) == sorted(bag.tolist() * 2)  # every epoch the same bag, nothing else
    with pytest.raises(ValueError, match="bag"):
        weighted_loader(data, weights, "bag", config)


def test_weighted_hard_loss_matches_cross_entropy_at_uniform_weights():
    from slimbert.training.outputs import Outputs

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    batch = {"idx": torch.tensor([0, 1, 2]), "labels": labels}
    outputs = Outputs(logits=logits, attention_mask=torch.ones(3, 2))
    uniform = weighted_hard_loss(torch.full((3,), 1 / 3))(outputs, None, batch)
    assert float(uniform) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-6
    )
    # All weight on example 2: n · w = [0, 0, 3], so the loss is CE_2 · 3 / 3 = CE_2.
    focused = weighted_hard_loss(torch.tensor([0.0, 0.0, 1.0]))(outputs, None, batch)
    assert float(focused) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[2:], labels[2:])), rel=1e-6
    )


def test_ensemble_classifier_weights_logits(tmp_path):
    from slimbert.models import load_classifier

    first = load_classifier(build_bert(tmp_path / "a", layers=1, seed=1)).eval()
    second = load_classifier(build_bert(tmp_path / "b", layers=1, seed=2)).eval()
    inputs = {
        "input_ids": torch.tensor([[2, 5, 9, 3], [2, 7, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }
    with torch.no_grad():
        a, b = first(**inputs).logits, second(**inputs).logits  # (2, 2) each
        mixed = EnsembleClassifier([first, second], [1.0, 3.0])(**inputs).logits
        mixture = EnsembleClassifier([first, second], [1.0, 3.0], combine="probabilities")(
            **inputs
        ).logits
    torch.testing.assert_close(mixed, 0.25 * a + 0.75 * b, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        mixture.exp(), 0.25 * a.softmax(-1) + 0.75 * b.softmax(-1), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        combine_logits([a.numpy(), b.numpy()], [1.0, 3.0]), mixed.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        combine_logits([a.numpy(), b.numpy()], [1.0, 3.0], "probabilities"),
        mixture.numpy(),
        atol=1e-6,
    )


SHRINKAGE = 0.5


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> tuple[Path, DataSpec, dict]:
    """A 2-round professor boosted from a tiny 2-layer base on the tiny sentiment files, six of
    whose training labels are flipped so that round 1 has errors to reweight."""
    folder = tmp_path_factory.mktemp("boost")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = build_bert(folder / "base", layers=2, num_labels=None)
        rows = [
            (text, 1 - label if i < 6 else label)
            for i, (text, label) in enumerate(sentiment_rows(64, 1))
        ]
        spec = DataSpec(
            write_sst2(folder / "train.tsv", rows),
            write_sst2(folder / "dev.tsv", sentiment_rows(24, 2)),
            max_length=32,
        )
        # WeightedRandomSampler's draws (no length grouping): the ones this tiny setting was tuned
        # on, where round 2 learns something (with other draws it can answer one class everywhere)
        config = TrainConfig(
            max_steps=24,
            batch_size=16,
            lr=3e-3,
            patience=0,
            eval_every=24,
            progress=False,
            seed=42,
            group_by_length=False,
        )
        # resampling at half votes: loss weights n · w of 5× on the flipped rows make round 2 of
        # this tiny model answer one class everywhere (dropped as degenerate, see below)
        meta = boost(
            str(base),
            spec,
            folder / "professor",
            BoostConfig(rounds=2, weighting="resample", shrinkage=SHRINKAGE),
            config,
        ).to_json()
    finally:
        torch.set_num_threads(threads)
    return folder / "professor", spec, meta


def test_boost_writes_an_ensemble_whose_rounds_follow_samme(ensemble):
    path, spec, meta = ensemble
    record = json.loads((path / "ensemble.json").read_text())
    assert record["format"] == "slimbert-ensemble/1" and record["members"] == [
        "member-0",
        "member-1",
    ]
    # tokenizer.json: transformers 5 saves no vocab.txt
    assert (path / "member-0" / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()
    assert sum(record["weights"]) == pytest.approx(1.0)
    first, second = meta["rounds"]
    # Round 1 trains on uniform weights; its vote follows SAMME from its own error (K = 2).
    assert first["largest_weight_x_n"] == pytest.approx(1.0)
    err = max(first["weighted_error"], 0.5 / 64)
    assert first["alpha"] == pytest.approx(SHRINKAGE * math.log((1 - err) / err))
    assert first["train_errors"] == round(first["weighted_error"] * 64)
    # Round 2 trained on weights raised on round 1's misses: each miss weighs r = exp(α) =
    # ((1 − err) / err)^ν times a hit, i.e. n · w = r / (1 − err + err · r) for a miss
    # (1 / (2 · err) at ν = 1).
    assert first["train_errors"] > 0 and second["kept"]
    r = ((1 - err) / err) ** SHRINKAGE
    assert second["largest_weight_x_n"] == pytest.approx(r / (1 - err + err * r))
    assert record["alphas"] == pytest.approx([first["alpha"], second["alpha"]])
    assert meta["best_member"] == f"member-{record['best_member']}"
    # the professor's and its members' slimbert.json go through slimbert.record
    assert json.loads((path / "slimbert.json").read_text()) == meta
    member = json.loads((path / "member-0" / "slimbert.json").read_text())
    assert meta["schema_version"] == member["schema_version"] == 1 and member["round"] == 0


def test_ensemble_is_a_kd_teacher(ensemble, tmp_path):
    """compress kd --teacher <ensemble>: the cached logits are the vote-weighted members', the
    teacher figure is the ensemble's, and the student is cut from the best member."""
    from safetensors.torch import load_file

    from slimbert.batches import make_loader, predict_logits, prepare
    from slimbert.compress.students import StudentShape, build_student, pick_layers
    from slimbert.models import load_model_dir
    from slimbert.teachers.load import load_teacher
    from slimbert.training.logits_cache import cache_dir

    path, spec, meta = ensemble
    out = tmp_path / "student"
    result = CliRunner().invoke(
        cli,
        [
            "compress",
            "kd",
            "--teacher",
            str(path),
            "--train",
            str(spec.train),
            "--eval",
            str(spec.eval),
            "--out",
            str(out),
            "--layers",
            "1",
            "--max-length",
            "32",
            "--max-steps",
            "1",
            "--lr",
            "1e-9",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    student_meta = json.loads((out / "slimbert.json").read_text())
    assert student_meta["teacher_metric"]["f1"] == pytest.approx(meta["metric"]["f1"], abs=1e-6)

    record = json.loads((path / "ensemble.json").read_text())
    members = [load_model_dir(path / name)[0] for name in record["members"]]
    teacher = load_teacher(path)
    data = prepare(spec, teacher.tokenizer, label_map=teacher.label_map, task=teacher.task)
    loader = make_loader(data.train_set, 64, shuffle=False)
    expected = combine_logits(
        [predict_logits(m, loader) for m in members], record["weights"]
    )  # (N, C)
    cached = list((cache_dir() / "logits").glob("*.safetensors"))
    assert len(cached) == 1
    np.testing.assert_allclose(load_file(str(cached[0]))["logits"].numpy(), expected, atol=1e-5)

    # lr 1e-9 for one step leaves the student where build_student put it: the best member's layers.
    best = members[record["best_member"]]
    reference = build_student(best, StudentShape(1), pick_layers(2, 1))[0].state_dict()
    trained = load_model_dir(out)[0].state_dict()
    for key in (
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "classifier.weight",
    ):
        torch.testing.assert_close(trained[key], reference[key], rtol=0, atol=1e-6)


def test_ensemble_gives_logits_only(ensemble):
    from slimbert.teachers.load import load_teacher

    teacher = load_teacher(ensemble[0])
    assert teacher.is_ensemble and teacher.members == 2
    with pytest.raises(SlimbertError, match="logits only"):
        teacher.model(
            input_ids=torch.tensor([[2, 3]]),
            attention_mask=torch.ones(1, 2, dtype=torch.long),
            output_hidden_states=True,
        )


def test_boost_refuses_regression(tmp_path, tiny_base):
    path = tmp_path / "stsb.tsv"
    path.write_text(
        "sentence1\tsentence2\tscore\ngood movie\tgreat film\t4.5\nbad plot\tgood actor\t1.0\n"
    )
    with pytest.raises(SlimbertError, match="classification"):
        boost(
            str(tiny_base),
            DataSpec(path, path, max_length=16),
            tmp_path / "out",
            BoostConfig(rounds=2),
            TrainConfig(max_steps=1, progress=False),
        )
    assert not (tmp_path / "out").exists()


def test_boost_reuses_a_trained_teacher_as_round_one(ensemble, tmp_path):
    from slimbert.files import sha256_file

    path, spec, _ = ensemble
    base = path.parent / "base"
    config = TrainConfig(max_steps=1, progress=False)
    meta = boost(
        str(base),
        spec,
        tmp_path / "one",
        BoostConfig(rounds=1, first_member=path / "member-0"),
        config,
    ).to_json()
    assert (
        meta["members"] == 1
        and meta["rounds"][0]["trained"] is False
        and meta["rounds"][0]["seed"] is None
    )
    assert sha256_file(tmp_path / "one" / "member-0" / "model.safetensors") == sha256_file(
        path / "member-0" / "model.safetensors"
    )
    assert meta["metric"] == meta["rounds"][0]["eval"]  # one member: the ensemble is that member


def _members_from(path: Path, calls: list[str]):
    """Stand in for boost's member fine-tune: the first call returns a member answering class id 1
    everywhere (member 0 with its classifier zeroed and a bias towards id 1), a retry returns the
    fixture's own round-2 member."""
    from slimbert.models import load_model_dir

    def train_member(*args, description: str, **kwargs):
        calls.append(description)
        if len(calls) > 1:
            return load_model_dir(path / "member-1")[0]
        member = load_model_dir(path / "member-0")[0]
        with torch.no_grad():
            member.classifier.weight.zero_()
            member.classifier.bias.copy_(torch.tensor([-5.0, 5.0]))
        return member

    return train_member


@pytest.mark.parametrize("retries", [1, 0])
def test_boost_retries_then_drops_a_member_answering_one_class(
    ensemble, tmp_path, monkeypatch, retries
):
    """A member answering one class on every training row carries no information whatever its
    weighted error (under skewed weights it can be under 1 − 1/K): it is fine-tuned again with
    the next seed, and with no retries left the boosting stops without it."""
    import slimbert.teachers.boost_members as members_module
    from slimbert.teachers.load import load_teacher

    path, spec, _ = ensemble
    calls: list[str] = []
    monkeypatch.setattr(members_module, "train_member", _members_from(path, calls))
    meta = boost(
        str(path.parent / "base"),
        spec,
        tmp_path / "professor",
        BoostConfig(rounds=2, retries=retries, first_member=path / "member-0"),
        TrainConfig(max_steps=1, progress=False, seed=42),
    ).to_json()
    first, constant, *rest = meta["rounds"]
    label = json.loads((tmp_path / "professor" / "ensemble.json").read_text())["id2label"]["1"]
    assert first["kept"] and "degenerate" not in first
    assert constant["degenerate"] == f"predicts only {label} on the training set"
    assert not constant["kept"]
    if retries:
        (retry,) = rest
        assert calls == ["boost 2/2", "boost 2/2 retry 1"]
        assert constant["retried"] and retry["kept"] and retry["seed"] == constant["seed"] + 100
        assert meta["members"] == 2
    else:
        assert rest == [] and calls == ["boost 2/2"] and meta["members"] == 1
        assert meta["stopped"] == (
            f"stopped at round 2: degenerate, predicts only {label} on the training set"
        )
    # a dropped member leaves nothing behind; a retry is saved under its round's name and loads
    assert (tmp_path / "professor" / "member-1").exists() == bool(retries)
    assert load_teacher(tmp_path / "professor").members == meta["members"]


def test_bag_boosting_scores_each_member_on_the_rows_left_out(ensemble, tmp_path, monkeypatch):
    """weighting "bag": each member trains on one weighted bag (draw_bag with its seed) and its
    weighted error — so its vote — comes from the training rows it never saw."""
    import slimbert.teachers.boost_members as members_module

    path, spec, _ = ensemble
    bags: list[np.ndarray] = []
    train_member = members_module.train_member

    def spy(*args, bag=None, **kwargs):
        bags.append(bag)
        return train_member(*args, bag=bag, **kwargs)

    monkeypatch.setattr(members_module, "train_member", spy)
    config = TrainConfig(
        max_steps=48, batch_size=16, lr=3e-3, patience=0, eval_every=48, progress=False, seed=42
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixture trains: the same float sums on any machine
    try:
        meta = boost(
            str(path.parent / "base"),
            spec,
            tmp_path / "bagged",
            BoostConfig(rounds=1, weighting="bag"),
            config,
        ).to_json()
    finally:
        torch.set_num_threads(threads)
    (first,) = meta["rounds"]
    (bag,) = bags
    np.testing.assert_array_equal(bag, draw_bag(np.full(64, 1 / 64), 42))
    left_out = 64 - len(set(bag.tolist()))
    assert first["out_of_bag_rows"] == left_out > 0
    assert first["out_of_bag_errors"] <= first["train_errors"]
    # uniform weights: err is the share of left-out rows missed (floored at half a row of them)
    err = max(first["out_of_bag_errors"] / left_out, 0.5 / left_out)
    assert first["alpha"] == pytest.approx(math.log((1 - err) / err))


def test_bag_boosting_refuses_a_first_member(ensemble):
    path, _, _ = ensemble
    with pytest.raises(SlimbertError, match="no left-out rows can score it"):
        BoostConfig(weighting="bag", first_member=path / "member-0")
