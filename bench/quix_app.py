"""The freshness benchmark's Quix Streams peer: Kafka -> embeddings -> Weaviate as a Quix app.

Quix Streams is the stream-processing library a Python team would likely reach for first.

A peer at its best, tuned as Quix's docs advise for a batching sink: a `BatchingSink` subclass whose
`write(batch)` Quix calls on every checkpoint, with the checkpoint (commit) interval lowered from
its 5 s default to --commit-interval (0.05 s) so a batch is written within ~50 ms of its first
record, and optionally capped at --commit-every records. Each batch (Quix keeps one per topic
partition) is encoded in one `encode` call (the same ONNX model and thread count as freshvec's) and
written with one `insert_many`; a key's later record in a batch wins. The consumer's poll timeout
(Quix's default is 1 s) is lowered to the commit interval too, or a batch whose deadline passes
while the consumer waits for the next record would wait up to that second. A refused write raises
`SinkBackpressureError`: Quix drops the batch, pauses the partitions, seeks back to the checkpoint's
first offsets and re-reads them after RETRY_AFTER_S (nothing is lost; offsets are committed only
after the write). Each acknowledged record's latency (ms since its Kafka timestamp) is appended to
--latencies. Runs in its own venv, bench/.venv-quix (bench/setup_quix.sh); stops cleanly on SIGTERM
or SIGINT (Application.run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

os.environ["HF_HUB_OFFLINE"] = "1"  # before sentence_transformers / huggingface_hub are imported

from quixstreams import Application  # noqa: E402
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch  # noqa: E402

BATCH = 64  # encode's batch_size, as freshvec's
RETRY_AFTER_S = 1.0  # pause after a refused write before Quix re-reads the batch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--weaviate-host", default="127.0.0.1")
    p.add_argument("--weaviate-http", type=int, default=8080)
    p.add_argument("--weaviate-grpc", type=int, default=50051)
    p.add_argument("--collection", required=True)
    p.add_argument("--model-dir", required=True, help="sentence-transformers model dir with onnx/model.onnx")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="ONNX Runtime intra-op threads")
    p.add_argument("--namespace", required=True, help="UUID namespace of the object ids (freshvec's)")
    p.add_argument("--latencies", required=True, help="file: one line per acknowledged record, its latency in ms")
    p.add_argument("--commit-interval", type=float, default=0.05,
                   help="Quix checkpoint interval in seconds: the sink writes a batch on each (Quix default 5)")
    p.add_argument("--commit-every", type=int, default=0,
                   help="also checkpoint after this many records (0: off, Quix's default)")
    return p.parse_args(argv)


def load_model(model_dir: str, threads: int):
    import onnxruntime
    from sentence_transformers import SentenceTransformer

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    # As freshvec's loader (freshvec/serve/model.py): idle workers sleep instead of spinning, so
    # between batches the consumer and the brokers get the cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return SentenceTransformer(model_dir, backend="onnx", device="cpu", local_files_only=True,
                               model_kwargs={"provider": "CPUExecutionProvider", "session_options": opts})


class WeaviateEmbeddingSink(BatchingSink):
    """Encodes each checkpoint's batch (one topic partition's records) and writes it to Weaviate."""

    def __init__(self, args: argparse.Namespace):
        super().__init__()
        self._args = args
        self._namespace = uuid.UUID(args.namespace)
        self._model = self._client = self._collection = self._out = None

    def setup(self):
        """Called by Application.run() before it subscribes: load the model, connect, say ready."""
        import weaviate

        self._model = load_model(self._args.model_dir, self._args.threads)
        self._model.encode(["warm up"])
        self._client = weaviate.connect_to_local(host=self._args.weaviate_host, port=self._args.weaviate_http,
                                                 grpc_port=self._args.weaviate_grpc)
        self._collection = self._client.collections.use(self._args.collection)  # created by the benchmark
        self._out = open(self._args.latencies, "a")
        print("ready", flush=True)

    def write(self, batch: SinkBatch):
        from weaviate.classes.data import DataObject
        from weaviate.exceptions import WeaviateBaseError

        items = [item for item in batch if item.key is not None and item.value is not None]
        latest = {item.key: item.value["text"] for item in items}  # dicts keep the first insertion order
        if latest:
            keys = list(latest)
            texts = [latest[k] for k in keys]
            vectors = self._model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
            objects = [DataObject(properties={"doc_id": k, "text": t}, vector=v.tolist(),
                                  uuid=uuid.uuid5(self._namespace, f"{batch.topic}\x00{k}"))
                       for k, t, v in zip(keys, texts, vectors)]
            try:
                result = self._collection.data.insert_many(objects)
            except WeaviateBaseError as exc:
                print(f"quix_app: insert_many failed ({exc}); retrying in {RETRY_AFTER_S}s", file=sys.stderr)
                raise SinkBackpressureError(retry_after=RETRY_AFTER_S) from exc
            if result.errors:
                first = next(iter(result.errors.values()))
                print(f"quix_app: weaviate refused {len(result.errors)} objects ({first.message}); "
                      f"retrying in {RETRY_AFTER_S}s", file=sys.stderr)
                raise SinkBackpressureError(retry_after=RETRY_AFTER_S)
        now = time.time() * 1000
        self._out.write("".join(f"{now - item.timestamp:.2f}\n" for item in items))
        self._out.flush()

    def close(self):
        if self._client is not None:
            self._client.close()
        if self._out is not None:
            self._out.close()


def main(argv=None) -> None:
    args = parse_args(argv)
    sink = WeaviateEmbeddingSink(args)
    # Quix creates its state dir even for a stateless app: keep it out of the working directory.
    with tempfile.TemporaryDirectory(prefix="freshvec-quix-") as state_dir:
        app = Application(
            broker_address=args.brokers,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            commit_interval=args.commit_interval,
            commit_every=args.commit_every,
            consumer_poll_timeout=args.commit_interval if 0 < args.commit_interval < 1.0 else 1.0,
            state_dir=state_dir,
        )
        topic = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
        app.dataframe(topic).sink(sink)
        try:
            app.run()  # until SIGTERM / SIGINT; commits the last checkpoint (flushing the sink) on the way out
        finally:
            sink.close()


if __name__ == "__main__":
    main()
