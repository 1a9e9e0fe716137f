"""Every encoder family as a teacher: tiny random models of each (tests/family_models.py) with
tokenizers of their own kind run train-teacher → kd → export (parity gate) → predictions from
the ONNX graph → bench, and the layer methods where they apply; where one cannot, the refusal
is one line that says why."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import transformers
from click.testing import CliRunner
from conftest import sentiment_rows, write_sst2
from family_models import FAMILY_NAMES, build_family
from serving import serve

from slimbert.batches import model_inputs
from slimbert.cli import cli
from slimbert.compress.students import StudentShape, build_student
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier
from slimbert.families import FAMILIES, family_of, forward_inputs, model_input_names
from slimbert.models import load_classifier, load_tokenizer
from slimbert.serve.model import ServedModel
from slimbert.teachers.ensemble import EnsembleClassifier
from slimbert.teachers.load import load_teacher
from slimbert.training.capture import forward_internals

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5

# What the family's real tokenizer makes, and what of it the model reads.
INPUTS = {
    "bert": ["input_ids", "token_type_ids", "attention_mask"],
    "distilbert": ["input_ids", "attention_mask"],
    "roberta": ["input_ids", "attention_mask"],
    "xlm-roberta": ["input_ids", "attention_mask"],
    "electra": ["input_ids", "token_type_ids", "attention_mask"],
    "deberta-v3": ["input_ids", "attention_mask"],  # its tokenizer also makes token_type_ids
    "mpnet": ["input_ids", "attention_mask"],
    "modernbert": ["input_ids", "attention_mask"],
    "albert": ["input_ids", "token_type_ids", "attention_mask"],
}
if TRANSFORMERS_5:
    # transformers 5's AlbertTokenizer no longer lists token_type_ids in model_input_names, so
    # a pair's segments reach an ALBERT model as position only (the tokenizer decides).
    INPUTS["albert"] = ["input_ids", "attention_mask"]

# (family, method) → the words its one-line refusal must hold; every other pair works.
# DeBERTa's and MPNet's relative-position terms are caught where the model computes them, so
# TinyBERT's attention scores are theirs (slimbert.training.capture); rotary ones are not.
REFUSED = {
    ("modernbert", "tinybert"): "rotates Q and K",
    ("albert", "theseus"): "one shared layer",
}
if TRANSFORMERS_5:
    # transformers 5's ModernBERT feeds each layer the mask of its attention type
    REFUSED["modernbert", "theseus"] = "one module cannot stand in"

# Families whose attention ONNX Runtime's bert fusion matches (see slimbert.families).
FUSES_ATTENTION = {"bert", "roberta", "xlm-roberta", "electra", "albert"}
if TRANSFORMERS_5:
    FUSES_ATTENTION.add("distilbert")  # its 5.x eager graph adds the mask (slimbert.families)

DATA_FLAGS = ["--batch-size", "8", "--max-length", "32", "--seed", "0", "--no-progress"]


def invoke(args: list[str]):
    result = CliRunner().invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a failure: refusals are SlimbertError lines
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("family-data")
    return write_sst2(folder / "train.tsv", sentiment_rows(32, 1)), write_sst2(
        folder / "dev.tsv", sentiment_rows(16, 2)
    )


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, files):
    """family → a teacher fine-tuned for two steps by the real CLI (built on first use)."""
    built: dict = {}
    texts = [text for text, _ in sentiment_rows(64, 1)]

    def get(family: str):
        if family not in built:
            folder = tmp_path_factory.mktemp(family)
            base = build_family(family, folder / "base", texts)
            result = invoke(
                [
                    "train-teacher",
                    "--base",
                    str(base),
                    "--out",
                    str(folder / "teacher"),
                    "--train",
                    str(files[0]),
                    "--eval",
                    str(files[1]),
                    "--max-steps",
                    "2",
                    *DATA_FLAGS,
                ]
            )
            assert result.exit_code == 0, result.output
            built[family] = folder / "teacher"
        return built[family]

    return get


def test_every_family_has_one_record_and_unknown_types_are_refused():
    types = [t for family in FAMILIES for t in family.model_types]
    assert len(types) == len(set(types))
    for name in FAMILY_NAMES:
        model_type = "deberta-v2" if name == "deberta-v3" else name
        assert model_type in types
    config = type("Config", (), {"model_type": "gpt2"})()
    with pytest.raises(SlimbertError, match="model type 'gpt2' is not an encoder family") as info:
        family_of(config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_inputs_are_what_the_tokenizer_makes_and_the_model_reads(family, tmp_path):
    folder = build_family(family, tmp_path, [t for t, _ in sentiment_rows(32, 1)], layers=1)
    model, tokenizer = load_classifier(folder).eval(), load_tokenizer(folder)
    assert model_input_names(model, tokenizer) == INPUTS[family]
    encoded = tokenizer(["good movie", "the plot was bad"], padding=True, return_tensors="pt")
    made = set(encoded)  # the DeBERTa-v3 tokenizer makes token_type_ids; the model ignores them
    assert made == set(tokenizer.model_input_names)
    batch = {**encoded, "idx": torch.tensor([0, 1]), "labels": torch.tensor([0, 1])}
    assert sorted(model_inputs(batch, model)) == sorted(INPUTS[family])
    assert model(**model_inputs(batch, model)).logits.shape == (2, 2)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pipeline_kd_export_predict_bench(family, teachers, files, tmp_path):
    teacher = teachers(family)
    student, onnx_dir = tmp_path / "kd", tmp_path / "onnx"
    common = ["--train", str(files[0]), "--eval", str(files[1]), *DATA_FLAGS]
    result = invoke(
        ["compress", "kd", "--teacher", str(teacher), "--out", str(student), "--layers", "2"]
        + ["--max-steps", "2", *common]
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((student / "slimbert.json").read_text())
    assert meta["layer_map"] == [1, 3] and len(meta["first_losses"]) == 2
    assert all(math.isfinite(row["loss"]) for row in meta["first_losses"])

    result = invoke(
        ["export", "--model", str(student), "--eval", str(files[1]), "--out", str(onnx_dir)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    assert sorted(i["name"] for i in manifest["inputs"]) == sorted(INPUTS[family])
    parity = manifest["validation"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["label_agreement"] == 100.0

    # predictions from the exported graph, fed the tokenizer's output as a server would
    model, tokenizer = load_classifier(student).eval(), load_tokenizer(onnx_dir)
    texts = ["a great and lovely film", "the worst , most boring plot"]
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    onnx_logits = OnnxClassifier(onnx_dir / "model.onnx")(dict(encoded))  # (2, 2)
    with torch.inference_mode():
        batch = {k: torch.from_numpy(v) for k, v in encoded.items()}
        torch_logits = model(**model_inputs(batch, model)).logits.numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)

    # one served request: the server feeds the graph exactly its inputs
    async def scenario(client, app):
        return await client.post("/v1/predict", json={"texts": texts})

    answer = serve(ServedModel(onnx_dir, threads=1), scenario)
    assert answer.status_code == 200, answer.text
    served = [p["label"] for p in answer.json()["predictions"]]
    assert served == [str(i) for i in torch_logits.argmax(1)]

    result = invoke(
        ["bench", "--model", str(onnx_dir), "--eval", str(files[1]), "--out", str(tmp_path / "b")]
        + [
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--limit",
            "4",
            "--threads",
            "1",
            "--no-peak",
            "--in-process",
        ]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b" / "report.json").read_text())["rows"]
    assert rows and all(row["p50_ms"] > 0 for row in rows)


@pytest.mark.parametrize("method", ["tinybert", "minilm", "theseus"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_layer_methods_work_or_refuse_in_one_line(family, method, teachers, files, tmp_path):
    teacher = teachers(family)
    args = ["compress", method, "--teacher", str(teacher), "--out", str(tmp_path / "s")]
    args += ["--layers", "2", "--max-steps", "1", "--train", str(files[0])]
    args += ["--eval", str(files[1]), *DATA_FLAGS]
    result = invoke(args)
    refusal = REFUSED.get((family, method))
    if refusal is not None:
        assert result.exit_code != 0 and refusal in result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
        if method != "tinybert":
            return
        # hidden states and embeddings still distil without the attention term, narrower too
        args[args.index(str(tmp_path / "s"))] = str(tmp_path / "narrow")
        result = invoke(args + ["--attention-weight", "0", "--hidden-size", "16", "--heads", "2"])
        assert result.exit_code == 0, result.output
        meta = json.loads((tmp_path / "narrow" / "slimbert.json").read_text())
        assert "attention" not in meta["first_losses"]["intermediate"][0]
        assert meta["projection"] is True
        return
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "s" / "slimbert.json").read_text())
    for stage in meta["first_losses"].values():
        assert all(math.isfinite(row["loss"]) for row in stage)
    student = load_classifier(tmp_path / "s")
    assert family_of(student.config).size(student.config, "depth") == 2


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_attention_capture_reads_each_layer_once(family, teachers, files):
    """Q/K/V are caught at every depth (ALBERT's shared layer once per depth, DeBERTa's
    relative-position projections left out); where positions are absolute or their relative
    terms are caught (DeBERTa, MPNet), softmax of the rebuilt scores is the model's own
    attention map on real query rows (DeBERTa also masks padded queries)."""
    model = load_classifier(teachers(family)).eval()
    tokenizer = load_tokenizer(teachers(family))
    batch = dict(
        tokenizer(["good movie", "the plot was very bad"], padding=True, return_tensors="pt")
    )
    with torch.inference_mode():
        out = forward_internals(model, batch, attentions=family != "modernbert")
    depth = family_of(model.config).size(model.config, "depth")
    assert len(out.attention_parts) == depth
    batch_size, length = batch["input_ids"].shape
    for part in out.attention_parts:
        assert part.query.shape == part.key.shape == part.value.shape == (batch_size, length, 32)
    readable = family_of(model.config).scores_readable(model.config)
    assert readable == (family != "modernbert")
    if readable:
        mask = batch["attention_mask"][:, None, None, :]  # (B, 1, 1, T)
        rows = batch["attention_mask"][:, None, :, None] == 1  # (B, 1, T, 1) real queries
        for part, attention in zip(out.attention_parts, out.attentions, strict=True):
            scores = part.scores().masked_fill(mask == 0, torch.finfo(torch.float32).min)
            torch.testing.assert_close(
                scores.softmax(-1).masked_fill(~rows, 0),
                attention.masked_fill(~rows, 0),
                atol=1e-5,
                rtol=1e-4,
            )


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_student_copies_the_teacher_at_full_width_and_narrows(family, teachers):
    teacher = load_classifier(teachers(family)).eval()
    student, report = build_student(teacher, StudentShape(4), [0, 1, 2, 3])
    assert report.random == [] and len(report.copied) == len(teacher.state_dict())
    batch = {"input_ids": torch.tensor([[2, 5, 6, 7, 3]]), "attention_mask": torch.ones(1, 5)}
    batch["attention_mask"] = batch["attention_mask"].long()
    with torch.inference_mode():
        torch.testing.assert_close(
            student.eval()(**batch).logits, teacher(**batch).logits, atol=1e-5, rtol=1e-4
        )
    narrow, report = build_student(teacher, StudentShape(2, hidden=16, heads=2, ffn=24), [1, 3])
    family_record = family_of(narrow.config)
    assert [family_record.size(narrow.config, k) for k in ("depth", "width", "heads", "ffn")] == [
        2,
        16,
        2,
        24,
    ]
    assert report.random and narrow.eval()(**batch).logits.shape == (1, 2)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pretrain_student_then_kd_from_it(family, teachers, files, tmp_path):
    """Masked-LM pre-training through the family's own head (RoBERTa lm_head, ALBERT
    predictions) or its whole masked-LM model (DistilBERT, ModernBERT), then kd starts from it."""
    teacher = teachers(family)
    result = invoke(
        ["pretrain-student", "--teacher", str(teacher), "--out", str(tmp_path / "mlm")]
        + ["--train", str(files[0]), "--layers", "2", "--max-steps", "1", "--batch-size", "8"]
        + ["--no-progress"]
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "mlm" / "slimbert.json").read_text())
    assert meta["layer_map"] == [1, 3] and math.isfinite(meta["mlm_loss_before"])
    result = invoke(
        ["compress", "kd", "--teacher", str(teacher), "--out", str(tmp_path / "kd")]
        + ["--layers", "2", "--student-init", str(tmp_path / "mlm"), "--max-steps", "1"]
        + ["--train", str(files[0]), "--eval", str(files[1]), *DATA_FLAGS]
    )
    assert result.exit_code == 0, result.output
    init = json.loads((tmp_path / "kd" / "slimbert.json").read_text())["student_init"]
    assert init["copied_tensors"] > 0 and init["layer_map"] == [1, 3]


# every family teaches one of the three, each of the three learns from three families
NETWORKS = [(name, ("textcnn", "bilstm", "tree")[i % 3]) for i, name in enumerate(FAMILY_NAMES)]


@pytest.mark.parametrize(("family", "method"), NETWORKS)
def test_non_transformer_students_of_other_families(family, method, teachers, files, tmp_path):
    result = invoke(
        ["compress", method, "--teacher", str(teachers(family)), "--out", str(tmp_path / "s")]
        + ["--embedding-dim", "16", "--max-steps", "1", "--train", str(files[0])]
        + ["--eval", str(files[1]), *DATA_FLAGS]
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        [
            "export",
            "--model",
            str(tmp_path / "s"),
            "--eval",
            str(files[1]),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["validation"]["max_abs_diff"] <= 1e-4


def test_an_ensemble_feeds_each_member_only_its_inputs(teachers):
    """A DistilBERT member never sees the token_type_ids a BERT tokenizer made."""
    distil, bert = load_classifier(teachers("distilbert")), load_classifier(teachers("bert"))
    ensemble = EnsembleClassifier([distil, bert], [1.0, 1.0]).eval()
    assert forward_inputs(distil) == ("input_ids", "attention_mask")
    ids = torch.tensor([[2, 7, 8, 3]])
    given = dict(
        input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids)
    )
    with torch.inference_mode():
        mixed = ensemble(**given).logits
        alone = (
            distil(input_ids=ids, attention_mask=given["attention_mask"]).logits
            + bert(**given).logits
        ) / 2
    torch.testing.assert_close(mixed, alone)


# DeBERTa's graph takes the optimizer ~15 s on a busy core; benchmarks/families_parity.py covers it
OPTIMIZED = [
    pytest.param(name, marks=pytest.mark.slow) if name == "deberta-v3" else name
    for name in FAMILY_NAMES
]


@pytest.mark.parametrize("family", OPTIMIZED)
def test_optimize_reports_whether_attention_fused_and_why(family, teachers, files, tmp_path):
    teacher = teachers(family)
    result = invoke(
        ["export", "--model", str(teacher), "--eval", str(files[1]), "--out", str(tmp_path / "o")]
        + ["--optimize"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    fusions = manifest["optimizations"][0]["fusions"]
    attention = fusions["counts"]["Attention"]
    if family in FUSES_ATTENTION:
        assert attention >= 1 and "attention fused in" in fusions["attention"]
    else:
        assert attention == 0 and "attention not fused: " in fusions["attention"]
    assert fusions["attention"] in result.output
    assert manifest["validation"]["max_abs_diff"] <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["dynamic", "static"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_int8_exports_validate(family, quantize, teachers, files, tmp_path):
    args = ["export", "--model", str(teachers(family)), "--eval", str(files[1])]
    args += ["--out", str(tmp_path / "o"), "--quantize", quantize]
    if quantize == "static":
        args += ["--optimize", "--calibration-data", str(files[0])]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["validation"]["label_agreement"] >= 97.0


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_professor_boost_members_of_every_family(family, tmp_path, files):
    texts = [t for t, _ in sentiment_rows(64, 1)]
    base = build_family(family, tmp_path / "base", texts, layers=2)
    train = write_sst2(tmp_path / "train.tsv", sentiment_rows(64, 1))
    result = invoke(
        ["professor", "boost", "--base", str(base), "--out", str(tmp_path / "p"), "--rounds", "2"]
        + ["--retries", "0", "--train", str(train), "--eval", str(files[1])]
        + ["--max-steps", "24", "--lr", "3e-3", "--patience", "0", "--eval-every", "24"]
        + ["--batch-size", "16", "--max-length", "32", "--seed", "0", "--no-progress"]
    )
    # every family's member learns the tiny task (a refusal is a failure here: a member stuck at
    # chance would end boosting in one line, and that would not be "works")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "p" / "slimbert.json").read_text())
    assert meta["members"] >= 1 and meta["metric"]["accuracy"] >= 75.0, meta["stopped"]
    teacher = load_teacher(tmp_path / "p")
    tokenizer = teacher.tokenizer
    batch = dict(tokenizer(["good movie", "bad plot"], padding=True, return_tensors="pt"))
    with torch.inference_mode():
        logits = teacher.model(**model_inputs(batch, teacher.model)).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta"])  # WordPiece, BPE, Unigram
def test_augmentation_swaps_whole_words_in_every_vocabulary_kind(family, tmp_path):
    from slimbert.data import read_examples
    from slimbert.teachers.word_augment import AugmentConfig, augment
    from slimbert.teachers.word_candidates import whole_words
    from slimbert.training.logits_cache import model_fingerprint

    texts = [t for t, _ in sentiment_rows(32, 1)]
    folder = build_family(family, tmp_path / "teacher", texts, layers=1)
    tokenizer = load_tokenizer(folder)
    spelled = whole_words(tokenizer, list(range(len(tokenizer))))
    assert len(spelled) >= 2  # a 400-piece Unigram of these texts holds few whole words
    assert all(w.isalpha() and len(w) > 1 for w in spelled.values())  # no Ġ, ▁ or ## in them
    # a word's pieces after the first are mid-word pieces: never candidates
    for word in {w for t in texts for w in t.lower().split() if w.isalpha()}:
        pieces = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        assert not set(pieces[1:]) & set(spelled), (word, pieces)

    examples = read_examples(write_sst2(tmp_path / "train.tsv", sentiment_rows(32, 1)))
    examples = examples.subset(range(8))
    result = augment(
        examples,
        load_classifier(folder),
        tokenizer,
        model_fingerprint(folder),
        AugmentConfig(copies=2, prob=1.0, top_k=3, seed=0),
    )
    assert result.replaced_words > 0
    vocabulary = {w.lower() for w in spelled.values()}
    for copy, source in zip(result.examples.texts, result.sources, strict=True):
        for old, new in zip(examples.texts[source].split(), copy.split(), strict=True):
            assert new == old or new.lower() in vocabulary, (old, new)
