"""`slimbert.load(EXPORT_DIR)`: the server's model in process — the same answers as a bare ONNX
Runtime session, whatever the batch size; pairs; one-line errors; `import slimbert` stays light;
and transformers' text-classification pipeline over the same folder where optimum is installed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from serving import (
    FOREIGN_LABELS,
    MAX_LENGTH,
    foreign_export,
    foreign_offline,
    offline,
    paired_export,
    single_export,
)

import slimbert
from slimbert.api import Prediction, Predictor
from slimbert.data import read_examples
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    return single_export(tmp_path_factory.mktemp("api-single"))


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> dict:
    return paired_export(tmp_path_factory.mktemp("api-pair"))


def test_load_answers_what_a_bare_session_answers(single):
    texts = read_examples(single["dev"]).texts  # 24 texts
    expected = offline(single["export"], texts)  # (24, 2), one text at a time, unpadded
    predictor = slimbert.load(single["export"], threads=1, batch_size=5)
    assert isinstance(predictor, Predictor) and predictor.labels == ("0", "1")
    answers = predictor(texts)
    assert len(answers) == 24 and all(isinstance(a, Prediction) for a in answers)
    assert [a.label for a in answers] == [str(i) for i in expected.argmax(1)]
    scores = np.array([[a.scores["0"], a.scores["1"]] for a in answers])
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    # batches of 5 (the last one of 4) or all 24 at once: the same answers
    together = predictor.predict(texts, batch_size=64)
    np.testing.assert_allclose(
        np.array([[a.scores["0"], a.scores["1"]] for a in together]), scores, atol=1e-6
    )
    one = predictor(texts[0])
    assert isinstance(one, Prediction) and one.label == answers[0].label
    long = predictor(" ".join(["bad"] * 40))
    assert long.truncated and long.tokens == MAX_LENGTH and long.value is None
    assert "Predictor('export', classification" in repr(predictor)


def test_load_uses_the_servers_model_and_session_options(single):
    predictor = slimbert.load(single["export"], threads=1, name="sentiment")
    classifier = predictor.model.classifier
    assert isinstance(classifier, OnnxClassifier)  # what `slimbert serve` and `bench` run
    assert classifier.session.get_session_options().intra_op_num_threads == 1
    assert predictor.identity.name == "sentiment" and predictor.identity.validated
    assert predictor.identity.max_length == MAX_LENGTH  # the manifest's


def test_pairs_and_refusals(paired, single):
    examples = read_examples(paired["dev"])
    pairs = list(zip(examples.texts, examples.text_pairs, strict=True))
    expected = offline(paired["export"], examples.texts, examples.text_pairs)
    predictor = slimbert.load(paired["export"], threads=1)
    answers = predictor(pairs)
    assert [a.label for a in answers] == [str(i) for i in expected.argmax(1)]
    as_lists = predictor([list(p) for p in pairs], batch_size=3)
    np.testing.assert_allclose(
        [list(a.scores.values()) for a in as_lists],
        [list(a.scores.values()) for a in answers],
        atol=1e-6,
    )
    assert predictor(pairs[2]).label == answers[2].label
    with pytest.raises(SlimbertError, match=r"input \[0\] is a single text .* give \(text, text\)"):
        predictor(["just one text"])
    with pytest.raises(SlimbertError, match=r"input \[1\] is int"):
        predictor([pairs[0], 3])
    with pytest.raises(SlimbertError, match="the input is int"):
        predictor(3)
    with pytest.raises(SlimbertError, match="trained on single texts"):
        slimbert.load(single["export"], threads=1)([("a", "b")])
    with pytest.raises(SlimbertError, match="batch_size 0"):
        slimbert.load(single["export"], batch_size=0)
    with pytest.raises(SlimbertError, match="no such directory"):
        slimbert.load(single["export"].parent / "absent")


def test_a_foreign_folder_loads_too(tmp_path):
    folder = foreign_export(tmp_path)
    texts = ["good movie", "the plot was awful", "not really very good"]
    predictor = slimbert.load(folder, threads=1)
    assert predictor.identity.validated is False
    expected = foreign_offline(folder, texts)
    labels = list(FOREIGN_LABELS.values())
    assert [a.label for a in predictor(texts)] == [labels[i] for i in expected.argmax(1)]


def test_import_slimbert_stays_light(single):
    """`import slimbert` loads nothing heavy; load() and a prediction add neither torch,
    transformers nor FastAPI."""
    script = (
        "import sys, slimbert\n"
        "heavy = ('numpy', 'onnxruntime', 'tokenizers', 'torch', 'transformers', 'fastapi')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        f"print(slimbert.load({str(single['export'])!r}, threads=1)('good').label)\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    before, label, after = result.stdout.splitlines()
    assert before == "[]" and label in ("0", "1")
    assert after == "['numpy', 'onnxruntime', 'tokenizers']"
    with pytest.raises(AttributeError, match="no attribute 'unload'"):
        slimbert.unload  # noqa: B018


def test_transformers_pipeline_over_the_export(single):
    pytest.importorskip("optimum.onnxruntime")
    from slimbert.api import pipeline

    texts = read_examples(single["dev"]).texts[:8] + [" ".join(["good"] * 40)]
    classify = pipeline(single["export"], top_k=None)
    answers = slimbert.load(single["export"], threads=1)(texts)
    for text, ranked, answer in zip(texts, classify(texts), answers, strict=True):
        assert ranked[0]["label"] == answer.label, text
        by_label = {entry["label"]: entry["score"] for entry in ranked}
        assert by_label == pytest.approx(answer.scores, abs=1e-5), text
