"""Serving an ONNX folder slimbert did not export: a DistilBERT (no token_type_ids) exported with
plain torch.onnx.export, and one exported by optimum where it is installed. Each is served with
a warning, fed exactly its graph's inputs, and answers what a bare ONNX Runtime session
answers."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil

import numpy as np
import pytest
from conftest import sentiment_rows
from serving import FOREIGN_LABELS, FOREIGN_MAX_LENGTH, foreign_export, foreign_offline, serve

from slimbert.errors import SlimbertError
from slimbert.files import sha256_file
from slimbert.serve import Item, ServedModel


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    return foreign_export(tmp_path_factory.mktemp("serve-foreign"))


def test_a_foreign_folder_is_served_with_a_warning(foreign, caplog):
    with caplog.at_level(logging.WARNING, logger="slimbert.serve"):
        model = ServedModel(foreign, threads=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "slimbert did not validate" in warnings[0]
    assert str(foreign) in warnings[0] and "no manifest.json" in warnings[0]
    identity = model.identity
    assert identity.validated is False and identity.to_dict()["validated"] is False
    assert identity.labels == ("negative", "positive") and identity.task == "classification"
    # the tokenizer's model_max_length (24) under the config's max_position_embeddings (64)
    assert identity.max_length == FOREIGN_MAX_LENGTH
    assert identity.inputs == "any"  # nothing says whether it was trained on pairs
    assert identity.sha256 == sha256_file(foreign / "model.onnx")


def test_the_session_is_fed_exactly_the_graph_inputs(foreign, monkeypatch):
    model = ServedModel(foreign, threads=1)
    feeds = []
    original = model.classifier.session.run

    def spy(outputs, feed, *args):
        feeds.append(sorted(feed))
        return original(outputs, feed, *args)

    monkeypatch.setattr(model.classifier.session, "run", spy)
    features, _ = model.encode([Item("good movie")])
    assert sorted(features) == ["attention_mask", "input_ids"]
    model.predict([Item("good movie"), Item("bad film", "the plot")])
    assert feeds == [["attention_mask", "input_ids"]] * 2  # one call per kind: texts, pairs


def test_foreign_predictions_equal_offline(foreign):
    model = ServedModel(foreign, threads=1)
    rows = sentiment_rows(10, 7)
    texts = [text for text, _ in rows] + [" ".join(["good"] * 40)]
    seconds = [text for text, _ in reversed(rows)] + ["bad"]
    expected_texts = foreign_offline(foreign, texts)  # (11, 2)
    expected_pairs = foreign_offline(foreign, texts, seconds)

    async def scenario(client, app):
        single = await client.post("/v1/predict", json={"texts": texts})
        paired = await client.post(
            "/v1/predict", json={"pairs": [list(p) for p in zip(texts, seconds, strict=True)]}
        )
        info = await client.get("/v1/model")
        return single.json(), paired.json(), info.json()

    single, paired, info = serve(model, scenario, max_batch_size=4)
    labels = list(FOREIGN_LABELS.values())
    for answer, expected in ((single, expected_texts), (paired, expected_pairs)):
        predictions = answer["predictions"]
        assert [p["label"] for p in predictions] == [labels[i] for i in expected.argmax(1)]
        scores = np.array([[p["scores"][label] for label in labels] for p in predictions])
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        assert predictions[-1]["truncated"] and predictions[-1]["tokens"] == FOREIGN_MAX_LENGTH
    # both labels occur, and the pairs' second texts really reached the model
    assert set(expected_texts.argmax(1)) == {0, 1}
    assert np.abs(expected_texts - expected_pairs).max() > 0.05
    assert info["validated"] is False and info["labels"] == labels


def test_a_foreign_folder_that_disagrees_with_itself_is_refused(foreign, tmp_path):
    copy = tmp_path / "three-labels"
    shutil.copytree(foreign, copy)
    config = json.loads((copy / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(SlimbertError, match="answers 2 scores per input but config.json names 3"):
        ServedModel(copy)
    (copy / "config.json").unlink()
    with pytest.raises(SlimbertError, match="no config.json"):
        ServedModel(copy)
    shutil.copytree(foreign, tmp_path / "no-length")
    config = json.loads((foreign / "config.json").read_text())
    del config["max_position_embeddings"]
    (tmp_path / "no-length" / "config.json").write_text(json.dumps(config))
    (tmp_path / "no-length" / "tokenizer_config.json").unlink()
    with pytest.raises(SlimbertError, match="says how many tokens the model takes"):
        ServedModel(tmp_path / "no-length")


def test_optimum_export_is_served_like_optimum_runs_it(tmp_path):
    pytest.importorskip("optimum.exporters.onnx")
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    source = foreign_export(tmp_path)
    model_dir = tmp_path / "model"
    shutil.copytree(source, model_dir)
    (model_dir / "model.onnx").unlink()
    # a PyTorch checkpoint for optimum to export: the same DistilBERT, rebuilt from its seed
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(5)
    DistilBertForSequenceClassification(
        DistilBertConfig.from_pretrained(str(model_dir))
    ).save_pretrained(str(model_dir), safe_serialization=True)
    main_export(str(model_dir), output=str(tmp_path / "optimum"), task="text-classification")
    served = ServedModel(tmp_path / "optimum", threads=1)
    assert sorted(served.classifier.input_names) == ["attention_mask", "input_ids"]
    assert served.identity.validated is False and served.identity.labels == ("negative", "positive")

    texts = [text for text, _ in sentiment_rows(8, 9)]
    reference = ORTModelForSequenceClassification.from_pretrained(str(tmp_path / "optimum"))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "optimum"))
    encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    logits = reference(**encoded).logits.numpy()  # (8, 2)
    answers = served.predict([Item(t) for t in texts])
    scores = np.array([[a["scores"]["negative"], a["scores"]["positive"]] for a in answers])
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(scores, expected, atol=1e-5)

    async def scenario(client, app):  # and over HTTP, as any other folder
        return (await client.post("/v1/predict", json={"texts": texts[:2]})).status_code

    assert serve(served, scenario) == 200
    assert asyncio.iscoroutinefunction(scenario)
