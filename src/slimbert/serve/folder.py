"""What an export folder says about the model in it, read without torch or transformers.

An export folder is what `slimbert export` writes (model.onnx, config.json, tokenizer files,
manifest.json, slimbert.json). Its identity is its name plus the sha256 of model.onnx; the hash
is checked against the manifest on load, so a server never answers under the name of a model it
is not running.

Any other ONNX sequence-classification folder (optimum's `optimum-cli export onnx --task
text-classification`, or model.onnx beside a config.json with id2label and the tokenizer files)
is read too, with a logged warning: slimbert has no parity record for it, so it counts as not
validated, its task and labels come from config.json, its max_length from the tokenizer and
config, and it takes single texts and pairs alike. A folder that carries slimbert.json but lost
its manifest is a damaged slimbert export and is refused.

Tokenisation uses the folder's tokenizer.json through the `tokenizers` library directly, set up
the way transformers' fast tokenizer sets itself up for `truncation=True, padding=True` (longest
first, the folder's padding side and pad token, padded to the batch's longest). That keeps
torch and transformers out of the server process (seconds of start-up and hundreds of MB), and
with its settings fixed at load the Rust tokenizer is safe to call from any thread. A folder
without tokenizer.json falls back to transformers' AutoTokenizer for the same Rust object.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from slimbert.data import REGRESSION
from slimbert.errors import SlimbertError
from slimbert.files import (
    CONFIG_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    RECORD_FILE,
    SPECIAL_TOKENS_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    sha256_file,
)
from slimbert.record import read_record

# transformers' model_max_length when a tokenizer does not set one (int(1e30))
UNSET_LENGTH = 1_000_000

SINGLE, PAIR, ANY = "single", "pair", "any"

log = logging.getLogger("slimbert.serve")


def _read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SlimbertError(f"{path}: unreadable ({exc}); re-run `slimbert export`") from None
    if not isinstance(payload, dict):
        raise SlimbertError(f"{path}: not a JSON object; re-run `slimbert export`")
    return payload


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def load_tokenizer(folder: Path, max_length: int):
    """The folder's Rust tokenizer, truncating to `max_length` and padding to each batch's
    longest."""
    if (folder / TOKENIZER_FILE).is_file():
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    else:
        # only for folders without tokenizer.json: transformers costs the server seconds to load
        from transformers import AutoTokenizer

        wrapped = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        if not wrapped.is_fast:
            raise SlimbertError(
                f"{folder}: no {TOKENIZER_FILE} and the tokenizer has no fast version; "
                "re-export with a fast tokenizer"
            )
        tokenizer = wrapped.backend_tokenizer
    settings = {}
    for name in (SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE):
        if (folder / name).is_file():
            settings.update(_read_json(folder / name))
    pad_token = (
        _token_text(settings.get("pad_token"))
        or (tokenizer.padding or {}).get("pad_token")
        or "[PAD]"
    )
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise SlimbertError(
            f"{folder}: pad token {pad_token!r} is not in the vocabulary; "
            "set pad_token in tokenizer_config.json"
        )
    tokenizer.enable_truncation(
        max_length,
        stride=0,
        strategy="longest_first",
        direction=settings.get("truncation_side", "right"),
    )
    tokenizer.enable_padding(
        direction=settings.get("padding_side", "right"),
        pad_id=pad_id,
        pad_token=pad_token,
        pad_type_id=0,
        length=None,
    )
    return tokenizer


@dataclass(frozen=True)
class FolderSettings:
    """What an export folder says about the model in it (identity less the runtime choices)."""

    sha256: str
    task: str
    labels: tuple[str, ...]
    max_length: int
    inputs: str
    validated: bool


def _class_labels(folder: Path, id2label: dict, where: str, fix: str) -> tuple[str, ...]:
    """Class names in logit order from an id2label mapping ({"0": "negative", ...})."""
    if not id2label:
        raise SlimbertError(f"{folder}: no id2label in {where}; {fix}")
    try:
        return tuple(str(id2label[key]) for key in sorted(id2label, key=int))
    except ValueError:
        raise SlimbertError(
            f"{folder}: id2label in {where} has keys that are not class indices; "
            'write it as {"0": "negative", "1": "positive"}'
        ) from None


def slimbert_settings(folder: Path) -> FolderSettings:
    """A folder `slimbert export` wrote: everything from its manifest, the hash checked."""
    manifest = _read_json(folder / MANIFEST_FILE)
    recorded = (manifest.get("files") or {}).get(ONNX_FILE, {}).get("sha256")
    if not recorded:
        raise SlimbertError(
            f"{folder / MANIFEST_FILE}: records no sha256 for {ONNX_FILE}; re-run `slimbert export`"
        )
    actual = sha256_file(folder / ONNX_FILE)
    if actual != recorded:
        raise SlimbertError(
            f"{folder / ONNX_FILE}: sha256 {actual[:12]}… differs from the manifest's "
            f"{recorded[:12]}…; "
            "the model was changed after export; re-run `slimbert export`"
        )
    task = manifest.get("task") or "classification"
    if task == REGRESSION:
        labels: tuple[str, ...] = ("score",)
    else:
        id2label = (
            manifest.get("id2label") or _read_json(folder / CONFIG_FILE).get("id2label") or {}
        )
        labels = _class_labels(
            folder, id2label, "manifest.json or config.json", "re-run `slimbert export`"
        )
    max_length = manifest.get("max_length")
    if not isinstance(max_length, int) or max_length < 1:
        raise SlimbertError(f"{folder / MANIFEST_FILE}: no max_length; re-run `slimbert export`")
    pair = read_record(folder).pair
    inputs = ANY if pair is None else (PAIR if pair else SINGLE)
    return FolderSettings(actual, task, labels, max_length, inputs, validated=True)


def foreign_settings(folder: Path) -> FolderSettings:
    """An ONNX folder slimbert did not export (optimum's, or hand-made): task and labels from
    config.json, max_length the smallest of the tokenizer's model_max_length and the config's
    max_position_embeddings, single texts and pairs both accepted."""
    config = _read_json(folder / CONFIG_FILE)
    num_labels = len(config.get("id2label") or {}) or config.get("num_labels")
    if config.get("problem_type") == REGRESSION or num_labels == 1:
        task, labels = REGRESSION, ("score",)
    else:
        task = "classification"
        labels = _class_labels(
            folder,
            config.get("id2label") or {},
            "config.json",
            'add the class names, e.g. "id2label": {"0": "negative", "1": "positive"}',
        )
    limits = []
    tokenizer_config = folder / TOKENIZER_CONFIG_FILE
    if tokenizer_config.is_file():
        limits.append(_read_json(tokenizer_config).get("model_max_length"))
    limits.append(config.get("max_position_embeddings"))
    limits = [n for n in limits if isinstance(n, int) and 0 < n < UNSET_LENGTH]
    if not limits:
        raise SlimbertError(
            f"{folder}: neither tokenizer_config.json (model_max_length) nor config.json "
            "(max_position_embeddings) says how many tokens the model takes; set one"
        )
    return FolderSettings(
        sha256_file(folder / ONNX_FILE), task, labels, min(limits), ANY, validated=False
    )


def read_folder(folder: Path) -> FolderSettings:
    """The settings of an export folder, slimbert's own or any ONNX sequence classifier's;
    raises SlimbertError naming what is missing or inconsistent."""
    if not folder.is_dir():
        raise SlimbertError(
            f"{folder}: no such directory; give a folder written by `slimbert export`"
        )
    for required in (ONNX_FILE, CONFIG_FILE):
        if not (folder / required).is_file():
            raise SlimbertError(
                f"{folder}: no {required}; give a folder written by `slimbert export` "
                "(or an ONNX export with config.json and the tokenizer files)"
            )
    if (folder / MANIFEST_FILE).is_file():
        return slimbert_settings(folder)
    if (folder / RECORD_FILE).is_file():
        # slimbert wrote this folder and its manifest is gone: serving it would drop the hash check
        raise SlimbertError(
            f"{folder}: no {MANIFEST_FILE} beside {RECORD_FILE}; re-run `slimbert export`"
        )
    settings = foreign_settings(folder)
    log.warning(
        "%s: no %s; serving an ONNX export that slimbert did not validate "
        "(no parity record; task, labels and max_length %d from config.json and the tokenizer)",
        folder,
        MANIFEST_FILE,
        settings.max_length,
    )
    return settings
