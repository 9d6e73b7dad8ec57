"""The errors freshvec raises, in one tree:

    FreshvecError
    ├── ConfigError              a bad configuration; names the key
    ├── CollectionMismatchError  the Weaviate collection holds another model's vectors
    ├── RecordRejected           a service answered and refused these records (not retriable alone)
    │   ├── EmbedRejected        the embedder's own code raised for these texts
    │   └── WriteRejected        Weaviate refused these objects; carries which and why
    └── TransientError           worth retrying: Serve or Weaviate down or slow (retriable = True)
        ├── EmbedError
        ├── SinkError
        └── KafkaUnavailableError  no broker answers (at start: `freshvec run` stops with one line)

The consumer loop reads ``retriable`` to decide between backing off (the offset
does not move) and stopping with the error. A RecordRejected is tried a few
times more, then its records are isolated and dead-lettered (actors/consumer.py).
"""

from __future__ import annotations


class FreshvecError(Exception):
    retriable = False


class ConfigError(FreshvecError, ValueError):
    pass


class CollectionMismatchError(FreshvecError):
    pass


class RecordRejected(FreshvecError):
    step = "?"


class EmbedRejected(RecordRejected):
    step = "embed"


class WriteRejected(RecordRejected):
    """`errors`: position in the written batch -> Weaviate's message, for each refused object."""

    step = "write"

    def __init__(self, message: str, errors: dict[int, str]):
        super().__init__(message)
        self.errors = errors


class TransientError(FreshvecError):
    retriable = True


class EmbedError(TransientError):
    pass


class SinkError(TransientError):
    pass


class KafkaUnavailableError(TransientError):
    pass
