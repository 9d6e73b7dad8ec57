"""Load the embedding model from disk (found by core/models.py), never from a model hub.

Hub downloads are switched off before sentence-transformers is imported, so a
wrong name fails at once with a message instead of hanging on the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from freshvec.core.models import resolve_model_path

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("freshvec.serve")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_sentence_transformer(name: str, device: str = "cpu", backend: str = "torch", threads: int | None = None):
    """Load a SentenceTransformer offline; the import is here because torch is slow to import.

    backend "onnx" runs the same weights in ONNX Runtime on CPU. A model directory without an
    onnx/model.onnx is exported on its first load (about 3 s for MiniLM) and the export kept under
    $FRESHVEC_CACHE/onnx, so packaged models need no extra files and later loads skip the export.
    """
    from sentence_transformers import SentenceTransformer

    kwargs = {}
    if backend == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle workers sleep instead of spinning: between batches the replica's HTTP loop, the
        # consumers and the brokers need those cores (16 clients x 1 text: 181 -> 210 texts/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        kwargs["model_kwargs"] = {"session_options": options, "provider": "CPUExecutionProvider"}
    path = resolve_model_path(name)
    export = None
    if backend == "onnx" and not (path / "onnx" / "model.onnx").exists():
        export = _export_dir(path)
        if (export / "onnx" / "model.onnx").exists():
            path, export = export, None
    model = SentenceTransformer(str(path), device=device, backend=backend, local_files_only=True, **kwargs)
    if export is not None:
        _keep_export(model, export)
    return model


def _export_dir(path: Path) -> Path:
    """Where the ONNX export of the model at `path` is kept: exporting takes ~3 s of CPU, on every
    replica start (an autoscaled replica serves nothing until it is done). Keyed by the path and its
    weights' size and time, so changed weights are exported again."""
    weights = sorted(f for f in path.iterdir() if f.suffix in (".safetensors", ".bin"))
    key = "|".join([str(path), *(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in weights)])
    cache = Path(os.environ.get("FRESHVEC_CACHE", Path.home() / ".cache" / "freshvec"))
    return cache / "onnx" / f"{path.name}-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}"


def _keep_export(model, export: Path) -> None:
    """Save the model with its export under `export`, atomically (replicas starting together race);
    best effort: without it the next start exports again."""
    tmp = export.with_name(f"{export.name}.tmp-{os.getpid()}")
    try:
        model.save_pretrained(str(tmp))
        tmp.rename(export)
    except OSError as exc:  # another replica was first, or the cache is not writable
        log.debug("ONNX export not kept at %s: %s", export, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class OnnxMeanPooling:
    """Tokenizer -> ONNX Runtime -> mean pooling -> L2 norm, straight from a loaded model's parts.

    For sentence-transformers models laid out as Transformer, mean Pooling, Normalize (all-MiniLM-L6-v2
    and most text embedders) on the ONNX backend. The vectors are `model.encode`'s (6e-8 apart at
    most, measured); what goes is the torch glue around the forward pass (tensors in and out, pooling
    and normalizing in torch), about 1.5 ms of an 11 ms one-text pass on a cold cache, which is how a
    replica meets a single streamed event.
    """

    def __init__(self, tokenizer, session, max_length: int, dim: int):
        import threading

        self.tokenizer, self.session, self.max_length, self.dim = tokenizer, session, max_length, dim
        self._inputs = [i.name for i in session.get_inputs()]
        # A fast tokenizer called with padding/truncation settings may reset them on its Rust half,
        # which refuses concurrent borrowers; parallel passes (see EmbeddingModel) share this one.
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def of(cls, model) -> OnnxMeanPooling | None:
        """The direct path for `model`, or None when its layout is any other (then use model.encode)."""
        layout = [type(module).__name__ for module in model]
        if layout != ["Transformer", "Pooling", "Normalize"] or getattr(model[0], "backend", None) != "onnx":
            return None
        pooling = model[1].get_config_dict()
        if pooling.get("pooling_mode") != "mean" or getattr(model[0], "do_lower_case", False):
            return None
        session = getattr(getattr(model[0], "auto_model", None), "model", None)
        if session is None or not hasattr(session, "get_inputs"):
            return None
        if not {i.name for i in session.get_inputs()} <= set(model.tokenizer(["probe"])):
            return None  # the graph wants an input the tokenizer does not make
        return cls(model.tokenizer, session, model.max_seq_length, model.get_embedding_dimension())

    def __call__(self, texts: list[str], chunk: int = 32) -> np.ndarray:
        import numpy as np

        # Length-sorted chunks pad less than one long batch, as sentence-transformers does.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            out[part] = self._encode([texts[i].strip() for i in part])
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        with self._tokenizer_lock:
            encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="np")
        feeds = {name: encoded[name].astype(np.int64, copy=False) for name in self._inputs}
        tokens = self.session.run(None, feeds)[0]
        mask = encoded["attention_mask"][..., None].astype(np.float32)
        pooled = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
