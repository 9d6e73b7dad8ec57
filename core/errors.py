"""Everything freshvec raises, in one tree; `retriable` says whether waiting can help.

    FreshvecError                    retriable = False: something must change first
    ├── ConfigError                  a bad configuration or argument; names the key
    ├── SetupError                   something `make setup` provides is missing (Kafka jars, the model)
    ├── ServiceError                 a local service would not start (port taken, exited, too slow)
    ├── PortInUseError               another process holds a port freshvec serves on
    ├── CollectionMismatchError      the Weaviate collection holds another model's vectors
    ├── DeployError                  the Serve application could not be deployed (its replicas failed)
    ├── RegionError                  a region has no alive node carrying its label
    ├── ReindexError                 a reindex cannot start, go on or be undone as asked
    ├── KafkaRefused                 Kafka answered and refused: authentication, authorization
    ├── RunIncomplete                a bounded run ended before it finished its records
    ├── RecordRejected               a service answered and refused these records (never retried alone)
    │   ├── EmbedRejected            the embedder's own code raised for these texts
    │   └── WriteRejected            Weaviate refused these objects; carries which and why
    └── TransientError               retriable = True: a service is away, slow or restarting
        ├── EmbedError               Serve
        ├── SinkError                Weaviate
        └── KafkaUnavailableError    Kafka

Each client's errors are translated where it is called (core/kafka.py, core/store.py, the
consumer's embed call), so the code above them sees only these. A consumer backs off and retries a
TransientError without limit (its offset does not move), dead-letters the records of a
RecordRejected after a few tries, and stops in state `failed` on any other FreshvecError. The CLI
prints any FreshvecError as one line and exits with code 2.
"""

from __future__ import annotations


class FreshvecError(Exception):
    retriable = False


class ConfigError(FreshvecError, ValueError):
    pass


class SetupError(FreshvecError):
    pass


class ServiceError(FreshvecError):
    pass


class PortInUseError(FreshvecError):
    pass


class CollectionMismatchError(FreshvecError):
    pass


class LegacyCollectionError(FreshvecError):
    """A plain collection where freshvec expects an alias (made before aliases), or nothing to migrate."""


class DeployError(FreshvecError):
    pass


class RegionError(FreshvecError):
    pass


class ReindexError(FreshvecError):
    """`freshvec reindex` cannot do what was asked; the message says what to do instead."""


class KafkaRefused(FreshvecError):
    pass


class RunIncomplete(FreshvecError):
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
