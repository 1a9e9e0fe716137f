"""TextCNN, BiLSTM and soft-tree students: forward values, teaching modes, save/load, ONNX
parity."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import build_bert, build_tokenizer

from slimbert.cli import cli
from slimbert.compress.teaching import TeachingConfig, loss_terms
from slimbert.compress.teaching_step import (
    SoftTargets,
    ensemble_logits,
    normalised_weights,
    student_losses,
)
from slimbert.data import LabelMap, read_examples
from slimbert.errors import SlimbertError
from slimbert.models import load_model_dir, model_label_map, model_task
from slimbert.networks.configs import BiLSTMConfig, TextCNNConfig, TreeConfig
from slimbert.networks.files import build_network
from slimbert.networks.modules import principal_directions
from slimbert.networks.tree import SoftTree
from slimbert.teachers.ensemble import ENSEMBLE_FORMAT

FLAGS = [
    "--max-length",
    "32",
    "--batch-size",
    "8",
    "--no-progress",
    "--no-group-by-length",  # pinned figures: random batches
    "--seed",
    "0",
    "--patience",
    "0",
    "--max-steps",
    "3",
]
SIZES = {
    "textcnn": ["--embedding-dim", "16", "--filters", "4"],
    "bilstm": ["--embedding-dim", "16", "--hidden-size", "6", "--fc-size", "8"],
    "tree": ["--embedding-dim", "8", "--depth", "2"],
}
LABELS = LabelMap({0: "0", 1: "1"})


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write_pairs(path, n: int, seed: int):
    """MRPC-like pairs: label 1 when both sides share their sentiment word list."""
    from conftest import NEGATIVE, POSITIVE, sentiment_rows

    rows = sentiment_rows(n, seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["sentence1", "sentence2", "label"])
        for i, (text, label) in enumerate(rows):
            same = i % 3 != 0
            other = POSITIVE[i % 8] if (label == 1) == same else NEGATIVE[i % 8]
            writer.writerow([text, f"the {other} story", int(same)])
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from two threads, and lose much on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    return write_pairs(folder / "train.tsv", 32, 3), write_pairs(folder / "dev.tsv", 12, 4)


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    model, tokenizer, _ = load_model_dir(tiny_teacher)
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# forward values


def test_soft_tree_depth_one_matches_hand_computation():
    """x = mean(e1, e2) = (0.5, 1); p = σ(β(w·x + b)) = σ(2 · 0.25); Q_left = (½, ½),
    Q_right = (¾, ¼); logits = log((1 − p) Q_left + p Q_right);
    penalty = −½ (log p + log(1 − p))."""
    config = TreeConfig(
        vocab_size=4, source_dim=2, embedding_dim=2, num_labels=2, depth=1, inverse_temperature=2.0
    )
    tree = SoftTree(config)
    with torch.no_grad():
        tree.embeddings.table.weight.copy_(
            torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
        )
        tree.inner.weight.copy_(torch.tensor([[1.0, -0.5]]))
        tree.inner.bias.copy_(torch.tensor([0.25]))
        tree.leaves.copy_(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))
    ids, mask = (
        torch.tensor([[1, 2, 0]]),
        torch.tensor([[1, 1, 0]]),
    )  # the padded 0 (vector 9, 9) must not count
    tree.train()
    out = tree(input_ids=ids, attention_mask=mask)
    assert out.logits.tolist()[0] == pytest.approx(
        [-0.4221818075964896, -1.0659945758823541], abs=1e-6
    )
    assert float(out.penalty.detach()) == pytest.approx(0.7240769841801067, abs=1e-6)
    tree.eval()
    assert tree(input_ids=ids, attention_mask=mask).penalty is None


def test_principal_directions_keep_inner_products_at_full_width_and_fix_signs():
    torch.manual_seed(0)
    table = torch.randn(50, 6)
    full = principal_directions(table, 6)
    scale = float(full[0, 0])
    assert torch.allclose(full, scale * torch.eye(6)) and (
        table @ full
    ).std().item() == pytest.approx(1.0, abs=1e-5)
    narrow = principal_directions(
        table, 3
    )  # (H, E): orthogonal columns, largest entry of each positive
    gram = narrow.T @ narrow
    assert torch.allclose(gram, gram[0, 0] * torch.eye(3), atol=1e-5)
    assert all(float(column[column.abs().argmax()]) > 0 for column in narrow.T)
    assert torch.allclose(principal_directions(-table, 3), narrow, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "pair"),
    [
        (TextCNNConfig(embedding_dim=16, filters=4), False),
        (TextCNNConfig(embedding_dim=16, filters=4, pair_encoding="auto"), True),
        (TextCNNConfig(embedding_dim=16, filters=4, pair_encoding="packed"), True),
        (BiLSTMConfig(embedding_dim=16, hidden_size=5, fc_size=6), False),
        (BiLSTMConfig(embedding_dim=16, hidden_size=5, fc_size=6, projection="learned"), True),
        (TreeConfig(embedding_dim=8, depth=3), True),
    ],
)
def test_padding_never_changes_a_prediction(teacher, config, pair):
    model, tokenizer = teacher
    torch.manual_seed(0)
    student = build_network(config, model, tokenizer, LABELS, "classification", pair).eval()
    texts = ["good movie", "bad plot was awful and the film was boring"]
    pairs = ["the film", "a story that was not really good at all"] if pair else None
    batch = tokenizer(texts, pairs, padding=True, return_tensors="pt")
    alone = tokenizer(texts[:1], pairs[:1] if pair else None, return_tensors="pt")
    assert batch["input_ids"].shape[1] > alone["input_ids"].shape[1] + 4
    assert torch.allclose(student(**batch).logits[0], student(**alone).logits[0], atol=1e-6)


def test_siamese_textcnn_reads_each_text_apart(teacher):
    """Siamese: the logits of a pair depend on which text is first only through [a, b]; packed:
    a pair is one sequence. Both need the pair split where the tokenizer splits it, and a
    tokenizer without token_type_ids gets a one-line error for siamese."""
    model, tokenizer = teacher
    torch.manual_seed(0)
    siamese = build_network(
        TextCNNConfig(embedding_dim=16, filters=4, pair_encoding="auto"),
        model,
        tokenizer,
        LABELS,
        "classification",
        True,
    ).eval()
    assert siamese.config.pair and siamese.config.pair_encoding == "siamese"
    assert siamese.classifier.in_features == 4 * 3 * 4  # [a, b, a⊙b, |a−b|] of 3 widths × 4
    batch = tokenizer(["good movie"], ["bad plot"], return_tensors="pt")
    pooled = {}
    siamese.classifier.register_forward_hook(lambda m, args, out: pooled.update(x=args[0]))
    siamese(**batch)
    first, second, product, gap = pooled["x"].split(12, dim=-1)
    alone_first = siamese.encode(
        siamese.embeddings(batch["input_ids"]),
        batch["attention_mask"] * (batch["token_type_ids"] == 0),
    )
    torch.testing.assert_close(first, alone_first)
    torch.testing.assert_close(product, first * second)
    torch.testing.assert_close(gap, (first - second).abs())

    class NoTypes:
        model_input_names = ["input_ids", "attention_mask"]
        pad_token_id = 0

    with pytest.raises(SlimbertError, match="no token_type_ids.*--pair-encoding packed"):
        build_network(
            TextCNNConfig(embedding_dim=16, filters=4, pair_encoding="siamese"),
            model,
            NoTypes(),
            LABELS,
            "classification",
            True,
        )
    packed = build_network(
        TextCNNConfig(embedding_dim=16, filters=4, pair_encoding="auto"),
        model,
        NoTypes(),
        LABELS,
        "classification",
        True,
    )
    assert not packed.config.pair and packed.config.pair_encoding == "packed"


def test_embeddings_start_from_the_teachers_table(teacher):
    model, tokenizer = teacher
    table = model.get_input_embeddings().weight.detach()  # (V, 32)
    own = build_network(
        TextCNNConfig(embedding_dim=16, filters=4),
        model,
        tokenizer,
        LABELS,
        "classification",
        False,
    )
    assert torch.allclose(
        own.embeddings.table.weight, table @ principal_directions(table, 16), atol=1e-5
    )
    learned = build_network(
        TextCNNConfig(embedding_dim=16, filters=4, projection="learned"),
        model,
        tokenizer,
        LABELS,
        "classification",
        False,
    )
    assert (
        torch.equal(learned.embeddings.table.weight, table)
        and not learned.embeddings.table.weight.requires_grad
    )
    ids = torch.tensor([[2, 7, 9]])
    assert torch.allclose(
        learned.embeddings(ids), own.embeddings(ids), atol=1e-5
    )  # both start equal


# --------------------------------------------------------------------------------------------
# teaching modes


def test_mean_and_weighted_logits_against_hand_values():
    first, second = torch.tensor([[2.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 4.0], [3.0, -1.0]])
    assert ensemble_logits([first, second], normalised_weights(None, 2)).tolist() == [
        [1.0, 2.0],
        [2.0, 0.0],
    ]
    assert normalised_weights((3, 1), 2) == [0.75, 0.25]
    assert ensemble_logits([first, second], normalised_weights((3, 1), 2)).tolist() == [
        [1.5, 1.0],
        [1.5, 0.5],
    ]
    # a live (joint) teacher in first place, a cached one (N = 3 rows) picked by the batch's indices
    cached = torch.tensor([[0.0, 0.0], [0.0, 4.0], [3.0, -1.0]])
    targets = SoftTargets([None, cached], normalised_weights((1, 1), 2))
    batch = {"idx": torch.tensor([1, 2])}
    assert targets.for_batch(batch, first, torch.device("cpu")).tolist() == [[1.0, 2.0], [2.0, 0.0]]


@pytest.mark.parametrize("isolated", [True, False])
def test_isolated_teacher_gets_no_gradient_from_the_soft_loss(teacher, tiny_teacher, isolated):
    _, tokenizer = teacher
    model = load_model_dir(tiny_teacher)[0]  # a private copy: its gradients are inspected
    torch.manual_seed(0)
    student = build_network(
        TextCNNConfig(embedding_dim=16, filters=4, dropout=0.0),
        model,
        tokenizer,
        LABELS,
        "classification",
        False,
    )
    batch = dict(
        tokenizer(["good great movie", "awful boring plot"], padding=True, return_tensors="pt")
    )
    batch["labels"], batch["idx"] = torch.tensor([1, 0]), torch.tensor([0, 1])
    soft_only = loss_terms(TeachingConfig(alpha=1.0))
    loss, teacher_loss, logged = student_losses(
        student, batch, soft_only, SoftTargets([None], [1.0]), model, isolated=isolated
    )
    assert set(logged) == {"soft", "hard", "teacher_hard"} and float(
        loss.detach()
    ) == pytest.approx(logged["soft"])
    loss.backward(retain_graph=True)
    soft_grads = [
        p.grad.abs().sum().item() if p.grad is not None else 0.0 for p in model.parameters()
    ]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    if isolated:
        assert sum(soft_grads) == 0.0
    else:
        assert sum(soft_grads) > 0.0
    # the labels reach the teacher in both modes, and never the student
    student.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    teacher_loss.backward()
    assert sum(p.grad.abs().sum().item() for p in model.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in student.parameters())


def test_teaching_config_rejects_flags_that_would_do_nothing():
    with pytest.raises(SlimbertError, match="--alpha 0 .* --joint"):
        TeachingConfig(alpha=0.0, joint=True).check(1)
    with pytest.raises(SlimbertError, match="2 weights for 3 --teacher"):
        TeachingConfig(teacher_weights=(1.0, 1.0)).check(3)
    with pytest.raises(SlimbertError, match="not all 0"):
        TeachingConfig(teacher_weights=(0.0, 0.0)).check(2)
    with pytest.raises(SlimbertError, match="a second --teacher would do nothing"):
        TeachingConfig(alpha=0.0).check(2)
    with pytest.raises(SlimbertError, match="wider than the teacher"):
        TextCNNConfig(source_dim=32, embedding_dim=64).check()


# --------------------------------------------------------------------------------------------
# end to end through the CLI: pinned first losses, modes, save/load, export parity


@pytest.fixture(scope="module")
def students(tmp_path_factory, tiny_teacher, sst2_files):
    """One offline student per architecture from the (random, untrained) tiny teacher."""
    root = tmp_path_factory.mktemp("students")
    train, dev = sst2_files
    made = {}
    for method, sizes in SIZES.items():
        result = invoke(
            "compress",
            method,
            "--teacher",
            tiny_teacher,
            "--train",
            train,
            "--eval",
            dev,
            "--out",
            root / method,
            *sizes,
            *FLAGS,
        )
        assert result.exit_code == 0, result.output
        made[method] = root / method
    return made


# seed 0 on the tiny fixtures: a change in data order, init, projection or loss shows up here
PINNED = {
    "textcnn": [0.3455, 0.5167, 0.5206],
    "bilstm": [0.3526, 0.3406, 0.3370],
    "tree": [0.4881, 0.4867, 0.4870],
}


@pytest.mark.parametrize("method", list(SIZES))
def test_first_losses_are_pinned(students, method):
    meta = json.loads((students[method] / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through slimbert.record
    first = meta["first_losses"]
    assert meta["teaching"]["mode"] == "offline" and meta["method"] == method and meta["steps"] == 3
    expected = (
        0.5 * first[0]["soft"]
        + 0.5 * first[0]["hard"]
        + (0.1 * first[0]["balance"] if method == "tree" else 0.0)
    )
    assert first[0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert [round(r["loss"], 4) for r in first[:3]] == pytest.approx(PINNED[method], abs=2e-4)


@pytest.mark.parametrize("method", list(SIZES))
def test_soft_loss_mse_is_the_squared_logit_gap_computed_by_hand(
    method, loud_teacher, sst2_files, tmp_path
):
    """--soft-loss mse (Tang et al.): the soft term is the mean over rows and classes of
    (z_student − z_teacher)², no temperature. One step at lr 1e-9, dropout 0, over the whole
    64-row training file in one batch: the saved student is the one that stepped, to rounding,
    and the step's loss covers every row."""
    train, dev = sst2_files
    out = tmp_path / method
    result = invoke(
        "compress", method, "--teacher", loud_teacher, "--train", train, "--eval", dev,
        "--out", out, *SIZES[method], "--soft-loss", "mse", "--dropout", "0",
        "--max-length", "32", "--batch-size", "64", "--max-steps", "1", "--lr", "1e-9",
        "--mixed-precision", "no", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first = json.loads((out / "slimbert.json").read_text())["first_losses"][0]
    examples = read_examples(train)
    teacher, tokenizer, _ = load_model_dir(loud_teacher)
    student = load_model_dir(out)[0]
    tokens = tokenizer(examples.texts, padding=True, truncation=True, max_length=32,
                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        z_teacher = teacher.eval()(**tokens).logits  # (N, 2)
        z_student = student.eval()(**tokens).logits  # (N, 2)
    mse = float(((z_student - z_teacher) ** 2).mean())
    # what the default, --soft-loss kl at T 2, would log instead: T² · KL(teacher ‖ student)
    log_t, log_s = torch.log_softmax(z_teacher / 2, -1), torch.log_softmax(z_student / 2, -1)
    kl = float((log_t.exp() * (log_t - log_s)).sum(-1).mean()) * 4
    assert first["soft"] == pytest.approx(mse, rel=1e-4)
    assert abs(kl - mse) > 0.1 * mse
    # the student's logits count: the teacher's alone would be off by more than the tolerance
    assert abs(float((z_teacher**2).mean()) - mse) > 1e-2 * mse
    balance = 0.1 * first["balance"] if method == "tree" else 0.0
    assert first["loss"] == pytest.approx(0.5 * mse + 0.5 * first["hard"] + balance, rel=1e-4)


@pytest.mark.parametrize("method", list(SIZES))
def test_saved_student_loads_back_with_the_same_logits(students, method, teacher):
    from slimbert.networks.files import ARCHITECTURES

    model, tokenizer, meta = load_model_dir(students[method])
    assert type(model) is ARCHITECTURES[method][1] and not model.training
    assert model_task(model) == "classification" and model_label_map(model).id2label == {
        0: "0",
        1: "1",
    }
    config = json.loads((students[method] / "config.json").read_text())
    assert (
        config["slimbert_architecture"] == method
        and config["id2label"] == {"0": "0", "1": "1"}
        and config["vocab_size"] == 41
    )
    assert meta.parameters == sum(p.numel() for p in model.parameters())
    again, _, _ = load_model_dir(students[method])
    batch = tokenizer(["good movie", "the plot was awful"], padding=True, return_tensors="pt")
    # saved and reloaded weights are the same data; two instances' logits agree to float32
    # rounding, not bit for bit (kernel summation order depends on alignment and the CPU)
    torch.testing.assert_close(model(**batch).logits, again(**batch).logits, rtol=1e-5, atol=1e-6)


def test_a_config_from_another_version_is_a_clear_error(students, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(students["textcnn"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["pooling"] = "k-max"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(SlimbertError, match=r"unknown keys \['pooling'\]"):
        load_model_dir(copy)


@pytest.mark.parametrize("method", list(SIZES))
def test_export_parity_and_dynamic_axes(students, method, sst2_files, tmp_path):
    import onnxruntime as ort

    from slimbert.export.onnx import export

    out = tmp_path / f"{method}-onnx"
    manifest = export(students[method], sst2_files[1], out)
    assert [i["name"] for i in manifest["inputs"]] == [
        "input_ids",
        "token_type_ids",
        "attention_mask",
    ]
    assert manifest["exporter"].startswith("torch.onnx.export")
    assert (
        manifest["validation"]["examples"] == 24
        and manifest["validation"]["label_agreement"] == 100.0
    )
    assert manifest["validation"]["max_abs_diff"] <= 1e-4
    model, tokenizer, _ = load_model_dir(students[method])
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for texts in (["good"], ["good great movie", "a b", "the plot was awful and boring and sad"]):
        features = tokenizer(texts, padding=True, return_tensors="np")
        onnx_logits = session.run(["logits"], {k: v.astype(np.int64) for k, v in features.items()})[
            0
        ]
        torch_logits = (
            model(**{k: torch.from_numpy(v) for k, v in features.items()}).logits.detach().numpy()
        )
        assert onnx_logits.shape == (len(texts), 2)
        assert np.abs(onnx_logits - torch_logits).max() <= 1e-5


@pytest.mark.parametrize("method", ["textcnn", "bilstm", "tree"])
def test_pair_students_train_and_export(method, tiny_teacher, pair_files, tmp_path):
    from slimbert.export.onnx import export

    train, dev = pair_files
    out = tmp_path / method
    result = invoke(
        "compress",
        method,
        "--teacher",
        tiny_teacher,
        "--train",
        train,
        "--eval",
        dev,
        "--out",
        out,
        *SIZES[method],
        *FLAGS,
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["pair"] is True  # each text encoded apart (TextCNN: --pair-encoding auto)
    if method == "textcnn":
        assert config["pair_encoding"] == "siamese"
    manifest = export(out, dev, tmp_path / f"{method}-onnx")
    assert (
        manifest["validation"]["max_abs_diff"] <= 1e-4 and manifest["validation"]["examples"] == 12
    )


def test_hard_labels_only_joint_and_several_teachers(students, tiny_teacher, sst2_files, tmp_path):
    train, dev = sst2_files
    common = ["--train", train, "--eval", dev, *SIZES["textcnn"], *FLAGS]
    result = invoke(
        "compress",
        "textcnn",
        "--teacher",
        tiny_teacher,
        "--alpha",
        0,
        "--out",
        tmp_path / "hard",
        *common,
    )
    assert result.exit_code == 0, result.output
    hard = json.loads((tmp_path / "hard" / "slimbert.json").read_text())
    assert hard["teaching"]["mode"] == "hard-labels" and all(
        set(r) == {"step", "loss", "hard"} and r["loss"] == r["hard"] for r in hard["first_losses"]
    )

    for isolated in ("--isolated", "--not-isolated"):
        out = tmp_path / isolated
        result = invoke(
            "compress",
            "textcnn",
            "--teacher",
            tiny_teacher,
            "--joint",
            isolated,
            "--teacher-lr",
            "1e-3",
            "--out",
            out,
            *common,
        )
        assert result.exit_code == 0, result.output
    joint = [
        json.loads((tmp_path / flag / "slimbert.json").read_text())
        for flag in ("--isolated", "--not-isolated")
    ]
    assert [m["teaching"]["mode"] for m in joint] == ["joint-isolated", "joint-not-isolated"]
    # same first step (same weights, same batch); the teacher's updates then differ: by step 3
    # the soft loss's pull on the not-isolated teacher has moved its loss by ~6e-4, thousands of
    # times float32 rounding at 0.7 (6e-8), which is all a run-to-run difference could be
    isolated_run, coupled_run = ([r["teacher_hard"] for r in m["first_losses"]] for m in joint)
    assert isolated_run[0] == pytest.approx(coupled_run[0], abs=1e-6)
    assert abs(isolated_run[2] - coupled_run[2]) > 1e-4

    # the previous production model (here: the offline TextCNN) as a second, lighter teacher
    result = invoke(
        "compress",
        "textcnn",
        "--teacher",
        tiny_teacher,
        "--teacher",
        students["textcnn"],
        "--teacher-weights",
        "3,1",
        "--out",
        tmp_path / "several",
        *common,
    )
    assert result.exit_code == 0, result.output
    several = json.loads((tmp_path / "several" / "slimbert.json").read_text())
    offline = json.loads((students["textcnn"] / "slimbert.json").read_text())
    assert several["teaching"]["mode"] == "several" and several["teaching"]["weights_used"] == [
        0.75,
        0.25,
    ]
    assert set(several["teacher_metrics"]) == {str(tiny_teacher), str(students["textcnn"])}
    assert several["first_losses"][0]["hard"] == pytest.approx(offline["first_losses"][0]["hard"])
    # same student, same batch: the soft targets alone differ (the 3:1 mix moves the first soft
    # loss by ~0.012, far past any rounding)
    assert abs(several["first_losses"][0]["soft"] - offline["first_losses"][0]["soft"]) > 1e-3


def test_a_teacher_with_its_own_tokenizer_reads_its_own_token_ids(
    tiny_teacher, sst2_files, tmp_path, monkeypatch
):
    """A second teacher whose vocabulary is ordered differently gets the same rows tokenised its
    way."""
    import shutil

    from transformers import BertTokenizerFast

    from slimbert.compress import teaching
    from slimbert.teachers import others

    other = tmp_path / "other-vocab"
    shutil.copytree(tiny_teacher, other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (other / name).unlink(missing_ok=True)  # transformers 5 writes no special_tokens_map
    vocab = (other / "vocab.txt").read_text().split()
    (other / "vocab.txt").write_text(
        "\n".join(vocab[:5] + vocab[5:][::-1]) + "\n"
    )  # same size, words reversed
    BertTokenizerFast.from_pretrained(str(other), do_lower_case=True).save_pretrained(str(other))
    seen = {}
    original = teaching.teacher_logits

    def spy(model, teacher_dir, data, **kwargs):
        seen[str(teacher_dir)] = data.train_set.features[0]["input_ids"]
        return original(model, teacher_dir, data, **kwargs)

    monkeypatch.setattr(teaching, "teacher_logits", spy)  # the first teacher's
    monkeypatch.setattr(others, "teacher_logits", spy)  # every other --teacher's
    train, dev = sst2_files
    result = invoke(
        "compress",
        "textcnn",
        "--teacher",
        tiny_teacher,
        "--teacher",
        other,
        "--train",
        train,
        "--eval",
        dev,
        "--out",
        tmp_path / "s",
        *SIZES["textcnn"],
        *FLAGS,
    )
    assert result.exit_code == 0, result.output
    ours, theirs = seen[str(tiny_teacher)], seen[str(other)]
    assert len(ours) == len(theirs) and ours[0] == theirs[0] and ours[1:-1] != theirs[1:-1]
    assert theirs[1:-1] == [
        len(vocab) + 4 - i for i in ours[1:-1]
    ]  # id i ↔ id V + 4 − i after the 5 specials


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "0", "--joint"], "--alpha 0 trains on the gold labels alone"),
        (["--teacher-weights", "1,2"], "2 weights for 1 --teacher"),
        (["--embedding-dim", "64"], "wider than the teacher's embeddings (32)"),
        (["--teacher-route", "{out}", "--embedding-dim", "16"], "no such directory"),
    ],
)
def test_user_errors_are_one_line_and_leave_nothing(
    tiny_teacher, sst2_files, tmp_path, args, message
):
    out = tmp_path / "out"
    argv = [
        "compress",
        "textcnn",
        "--teacher",
        str(tiny_teacher),
        "--train",
        str(sst2_files[0]),
        "--eval",
        str(sst2_files[1]),
        "--out",
        str(out),
        *[a.format(out=tmp_path / "none") for a in args],
    ]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_joint_with_an_ensemble_teacher_is_refused_in_one_line(sst2_files, tmp_path):
    """--joint trains the first teacher alongside the student; a professor ensemble has no one
    classifier to train, so it is refused before any data is read or anything written."""
    ensemble = tmp_path / "professor"
    build_bert(ensemble / "member-0", layers=1)
    build_tokenizer(ensemble)
    (ensemble / "ensemble.json").write_text(
        json.dumps(
            {
                "format": ENSEMBLE_FORMAT,
                "combine": "logits",
                "members": ["member-0"],
                "weights": [1.0],
                "best_member": 0,
            }
        )
    )
    out = tmp_path / "out"
    train, dev = sst2_files
    argv = ["compress", "textcnn", "--teacher", ensemble, "--train", train, "--eval", dev]
    argv += ["--out", out, "--joint", *SIZES["textcnn"], *FLAGS]
    result = CliRunner().invoke(cli, [str(a) for a in argv])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.strip() == (
        f"Error: --joint: {ensemble} is an ensemble; joint training needs one classifier "
        "directory as the first --teacher"
    )
    assert not out.exists()
    # the same ensemble teaches offline: the refusal is --joint's alone
    offline = CliRunner().invoke(cli, [str(a) for a in argv if a != "--joint"])
    assert offline.exit_code == 0, offline.output


def test_tree_metadata_lists_what_each_node_tests(students):
    meta = json.loads((students["tree"] / "slimbert.json").read_text())
    nodes, leaves = meta["tree"]["nodes"], meta["tree"]["leaves"]
    assert [n["depth"] for n in nodes] == [0, 1, 1] and len(leaves) == 4
    assert all(len(n["right"]) == 8 and not set(n["right"]) & set(n["left"]) for n in nodes)
    assert all(
        sum(v for k, v in leaf.items() if k != "leaf") == pytest.approx(1.0, abs=1e-3)
        for leaf in leaves
    )


@pytest.mark.parametrize("name", ["textcnn", "bilstm", "tree"])
def test_method_defaults_match_the_student_config_defaults(name):
    """Each method config repeats its student's sizes as flags; their defaults must agree."""
    import dataclasses

    from slimbert.compress.bilstm import BiLSTMMethod
    from slimbert.compress.registry import METHODS
    from slimbert.compress.textcnn import TextCNNMethod
    from slimbert.compress.tree import TreeMethod
    from slimbert.networks.files import ARCHITECTURES

    method_type = {"textcnn": TextCNNMethod, "bilstm": BiLSTMMethod, "tree": TreeMethod}[name]
    assert METHODS[name].run.__module__ == f"slimbert.compress.{name}"
    config_type, _ = ARCHITECTURES[name]
    assert method_type().student() == config_type()
    sizes = {f.name for f in dataclasses.fields(method_type)} & {
        f.name for f in dataclasses.fields(config_type)
    }
    assert sizes >= {"embedding_dim", "projection", "freeze_embeddings", "dropout"}


def test_inspect_tree_reads_tokens_along_each_node(teacher):
    from slimbert.compress.tree import inspect_tree

    model, tokenizer = teacher
    torch.manual_seed(0)
    student = build_network(
        TreeConfig(embedding_dim=8, depth=1), model, tokenizer, LABELS, "classification", False
    )
    vectors = student.embeddings.table.weight.detach()  # (V, 8)
    with torch.no_grad():
        student.inner.weight.copy_(vectors[tokenizer.convert_tokens_to_ids("superb")].unsqueeze(0))
        student.leaves.copy_(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))
    listing = inspect_tree(student, tokenizer, top_k=3)
    scores = vectors @ vectors[tokenizer.convert_tokens_to_ids("superb")]
    assert listing["nodes"][0]["right"] == tokenizer.convert_ids_to_tokens(
        scores.topk(3).indices.tolist()
    )
    assert listing["leaves"] == [{"leaf": 0, "0": 0.5, "1": 0.5}, {"leaf": 1, "0": 0.75, "1": 0.25}]
