"""The freshness benchmark's hand-written peer: one process that polls a batch, encodes the batch,
writes it with one `insert_many`, commits, and goes round again.

What a competent engineer would write first, at its best: librdkafka (confluent-kafka) with the
same consumer settings as freshvec's, a batch is whatever is queued once the first record arrived
(like freshvec's `max_batch_wait_ms: 0`), the same ONNX model on every core, one Weaviate request
per batch, the offset committed after the write (nothing lost). One key's later record in a batch
wins. Run by bench/freshness.py with the same arguments as bench/quix_app.py; each acknowledged
record's latency (ms since its Kafka timestamp) is appended to --latencies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BATCH = 64


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--weaviate-host", default="127.0.0.1")
    p.add_argument("--weaviate-http", type=int, default=8080)
    p.add_argument("--weaviate-grpc", type=int, default=50051)
    p.add_argument("--collection", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--namespace", required=True, help="UUID namespace of the object ids (freshvec's)")
    p.add_argument("--latencies", required=True, help="file: one line per acknowledged record, its latency in ms")
    p.add_argument("--commit-interval", type=float, default=0.0, help="unused: it commits after every batch")
    p.add_argument("--commit-every", type=int, default=0, help="unused")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from confluent_kafka import Consumer
    import weaviate
    from weaviate.classes.data import DataObject

    from freshvec.serve.model import load_sentence_transformer

    model = load_sentence_transformer(args.model_dir, backend="onnx", threads=args.threads)
    model.encode(["warm up"])
    namespace = uuid.UUID(args.namespace)
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.min.bytes": 1, "fetch.wait.max.ms": 100})
    consumer.subscribe([args.topic])
    client = weaviate.connect_to_local(host=args.weaviate_host, port=args.weaviate_http, grpc_port=args.weaviate_grpc)
    collection = client.collections.use(args.collection)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    with open(args.latencies, "a", buffering=1) as out:
        while not stop.is_set():
            first = consumer.poll(0.1)
            if first is None:
                continue
            messages = [first, *consumer.consume(BATCH - 1, 0)]
            latest = {}
            for m in messages:
                if m.error() is None and m.value() is not None:
                    latest[m.key().decode()] = m
            if latest:
                keys = list(latest)
                texts = [json.loads(latest[k].value())["text"] for k in keys]
                vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
                result = collection.data.insert_many([
                    DataObject(properties={"doc_id": k, "text": t}, uuid=uuid.uuid5(namespace, f"{args.topic}\x00{k}"),
                               vector=v.tolist()) for k, t, v in zip(keys, texts, vectors)])
                if result.errors:  # not acknowledged: stop, the uncommitted batch is read again next time
                    sys.exit(f"weaviate refused {len(result.errors)} objects: {next(iter(result.errors.values()))}")
            consumer.commit(asynchronous=False)
            now = time.time() * 1000
            out.write("".join(f"{now - m.timestamp()[1]:.2f}\n" for m in messages if m.error() is None))
    consumer.close()
    client.close()


if __name__ == "__main__":
    main()
