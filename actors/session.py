"""The two-stage session: while the writer finishes one batch, the reader prepares the next.

One object per session owns the hand-over queue, the writer thread, the writer's failure and the
offset after the last batch it finished. A session that failed is closed and a new one made, so a
writer left over from it can never move the new session's offset. Closing waits until the writer
has exited: a write of the old session landing after the new session rewrote the same keys from the
committed offset would put older text back (a chaos run left 18 keys stale and lost one that way). The queue holds one batch: with
one being written and one being prepared, at most three batches are in memory while Weaviate is
slow or away, and the backlog waits in Kafka.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B")

log = logging.getLogger("freshvec.consumer")


class TwoStageSession(Generic[B]):
    def __init__(self, finish: Callable[[B], int], name: str):
        """`finish(batch)` writes a batch and returns the offset after it (what may be committed)."""
        self._finish = finish
        self._jobs: queue.Queue[B] = queue.Queue(maxsize=1)
        self._closing = threading.Event()
        self._failure: BaseException | None = None
        self.acked: int | None = None  # the offset after the last batch the writer finished
        self._thread = threading.Thread(target=self._write_loop, name=f"{name}:writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hand_over(self, batch: B, stopped: threading.Event, waiting: Callable[[], None] = lambda: None) -> bool:
        """Queue `batch` for the writer; while the writer is busy, call `waiting` every 0.1 s.

        False when `stopped` was set first: the batch is dropped, uncommitted, so it is read again.
        """
        while not stopped.is_set():
            self.raise_if_failed()
            try:
                self._jobs.put(batch, timeout=0.1)
                return True
            except queue.Full:
                waiting()
        return False

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return self._jobs.unfinished_tasks == 0  # counts a batch from hand-over until it is written

    def raise_if_failed(self) -> None:
        """Raise the writer's error, as it was raised, in the calling thread."""
        if self._failure is not None:
            raise self._failure

    def close(self, log_every_s: float = 10.0) -> None:
        """Let the writer finish the batch in hand (not the queued one) and wait until it has exited.

        No time limit: the writer's calls are bounded and give up once the session is stopped, and a
        next session must not start while a write of this one can still land."""
        self._closing.set()
        waited = 0.0
        while self._thread.is_alive():
            self._thread.join(log_every_s)
            if self._thread.is_alive():
                waited += log_every_s
                log.warning("%s: still waiting for its writer to finish a batch (%.0f s)", self._thread.name, waited)

    def _write_loop(self) -> None:
        while not self._closing.is_set():
            try:
                batch = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self.acked = self._finish(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
                self._failure = exc
                return
            finally:
                self._jobs.task_done()
