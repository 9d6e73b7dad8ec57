"""The errors freshvec raises, in one tree:

    FreshvecError
    ├── ConfigError              a bad configuration; names the key
    ├── CollectionMismatchError  the Weaviate collection holds another model's vectors
    └── TransientError           worth retrying: Serve or Weaviate down or slow (retriable = True)
        ├── EmbedError
        └── SinkError

The consumer loop reads ``retriable`` to decide between backing off (the offset
does not move) and stopping with the error.
"""

from __future__ import annotations


class FreshvecError(Exception):
    retriable = False


class ConfigError(FreshvecError, ValueError):
    pass


class CollectionMismatchError(FreshvecError):
    pass


class TransientError(FreshvecError):
    retriable = True


class EmbedError(TransientError):
    pass


class SinkError(TransientError):
    pass
