"""Split a document into chunks that the model reads whole, counted with the model's own tokenizer.

The model reads max_seq_length tokens (all-MiniLM-L6-v2: 256) and drops the rest, so a longer
document embedded as one text could only ever be found by its beginning. semantic-text-splitter
fills each chunk up to the token budget at the highest boundary that fits (blank lines, then line
breaks, sentences, words), so an edit moves the boundaries of its own section only: the chunks
around it keep their text, and with it their cached vectors (actors/state.py).
"""

from __future__ import annotations

from freshvec.core.config import ChunkingConfig
from freshvec.core.errors import ConfigError
from freshvec.core.models import max_tokens, resolve_model_path
from freshvec.core.records import Chunk


class Chunker:
    """One per consumer; `split` runs on its reader thread only (a tokenizer is not shared)."""

    def __init__(self, cfg: ChunkingConfig, model: str):
        self.enabled, self.max_chunks, self.model = cfg.enabled, cfg.max_chunks, model
        path = resolve_model_path(model)
        if not self.enabled:
            return
        from semantic_text_splitter import TextSplitter
        from tokenizers import Tokenizer

        reads = max_tokens(path)
        if not (path / "tokenizer.json").is_file():
            raise ConfigError(f"pipeline.chunking: model {model} has no tokenizer.json to count tokens with; "
                              "set pipeline.chunking.enabled: false")
        self.max_tokens = cfg.max_tokens or reads
        if self.max_tokens > reads:
            raise ConfigError(f"pipeline.chunking.max_tokens is {self.max_tokens}, but model {model} reads "
                              f"{reads} tokens and would drop the rest of each chunk")
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_truncation()  # the file may truncate below what the model reads (MiniLM's: 128)
        tokenizer.no_padding()
        # The splitter counts a chunk's own tokens; the model adds [CLS] and [SEP] (or their like).
        self.capacity = self.max_tokens - tokenizer.num_special_tokens_to_add(False)
        self.overlap = cfg.overlap_tokens if cfg.overlap_tokens is not None else self.max_tokens // 10
        if self.capacity < 1 or self.overlap >= self.capacity:
            raise ConfigError(f"pipeline.chunking.overlap_tokens ({self.overlap}) must be below max_tokens "
                              f"({self.max_tokens}) less the model's special tokens")
        self._tokenizer = tokenizer
        self._splitter = TextSplitter.from_huggingface_tokenizer(tokenizer, self.capacity, self.overlap)

    def split(self, text: str) -> list[Chunk]:
        """The document's chunks in order; a document the model reads whole is one chunk, as it came."""
        if not self.enabled or self._fits(text):
            return [Chunk(text, 0, len(text))]
        chunks = [Chunk(part, start, start + len(part)) for start, part in self._splitter.chunk_indices(text)]
        return chunks or [Chunk(text, 0, len(text))]

    def _fits(self, text: str) -> bool:
        # One tokenizer pass: tens of microseconds for an event, a sixth of the splitter's time on a
        # 2,000-word document.
        return len(self._tokenizer.encode(text, add_special_tokens=False)) <= self.capacity
