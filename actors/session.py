"""The two-stage session: while the writer finishes one batch, the reader prepares the next.

One object per session owns the hand-over queue, the writer thread, the writer's failure and the
offset after the last batch it finished. A session that failed is closed and a new one made, so a
writer left over from it can never move the new session's offset. Closing waits until the writer
has exited: a write of the old session landing after the new session rewrote the same keys from the
committed offset would put older text back (a chaos run left 18 keys stale and lost one that way).
The queue holds one batch: with one being written and one gathering (Gatherer), at most three
batches are in memory while Weaviate is slow or away, and the backlog waits in Kafka.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from freshvec.core.records import KafkaRecord

B = TypeVar("B")

log = logging.getLogger("freshvec.consumer")


class TwoStageSession(Generic[B]):
    def __init__(self, finish: Callable[[B], int | None], name: str,
                 idle: Callable[[], int | None] = lambda: None):
        """`finish(batch)` writes a batch and returns the offset that may now be committed; `idle()`,
        called while no batch comes (every 0.1 s), may return a new one (deferred work done)."""
        self._finish, self._idle = finish, idle
        self._jobs: queue.Queue[B] = queue.Queue(maxsize=1)
        self._taken = threading.Condition()  # notified when the writer takes the queued batch
        self._closing = threading.Event()
        self._failure: BaseException | None = None
        self.acked: int | None = None  # what may be committed: the writer finished everything before it
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
    def has_room(self) -> bool:
        """Would a hand-over be taken at once (nothing queued behind the batch being written)?"""
        return not self._jobs.full()

    def wait_for_room(self, timeout: float) -> bool:
        """Wait until the writer takes the queued batch, at most `timeout` seconds; True when there is room."""
        with self._taken:
            return self._taken.wait_for(lambda: self.has_room or self._failure is not None, timeout) and self.has_room

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
                if not self._step(self._idle):
                    return
                continue
            with self._taken:
                self._taken.notify_all()
            try:
                if not self._step(lambda: self._finish(batch)):
                    return
            finally:
                self._jobs.task_done()

    def _step(self, work: Callable[[], int | None]) -> bool:
        """Run `work` and take the offset it returns; False (the loop ends) when it raised."""
        try:
            acked = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            self._failure = exc
            with self._taken:
                self._taken.notify_all()
            return False
        if acked is not None:
            self.acked = acked
        return True


# While records gather behind a queued batch, the reader looks for more, and for room, this often.
GATHER_WAIT_S = 0.005
# How long a full batch waits for room before the reader looks up again (lag, stop, failures).
FULL_WAIT_S = 0.1


class Gatherer:
    """When read records leave as a batch. A record that finds the writer idle, or only writing, leaves
    at once (its embedding overlaps the write in progress); records that arrive while a batch already
    waits for the writer gather into the next one, which leaves the moment the writer takes the waiting
    one. So a trickle travels alone with no added wait, and under load each call to the embedder and
    Weaviate carries what queued meanwhile, instead of one call per record queueing behind the others.
    At most `max_records` gather: with the batch being written and the one queued, three batches."""

    def __init__(self, session: TwoStageSession, max_records: int, max_wait_ms: int):
        self.session, self.max_records, self.max_wait_ms = session, max_records, max_wait_ms
        self.pending: list[KafkaRecord] = []
        self._read = 0  # records the last step read

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_records

    @property
    def quiet(self) -> bool:
        """Nothing read by the last step and nothing gathered: the partition is idle."""
        return not self._read and not self.pending

    def step(self, read: Callable[..., list[KafkaRecord]]) -> list[KafkaRecord] | None:
        """Read once (`read(max_records, max_wait_ms, first_wait_s=...)`, PartitionReader.next_batch);
        the batch to hand over now, or None while records gather (or none came)."""
        room = self.max_records - len(self.pending)
        if self.pending:
            self.session.wait_for_room(GATHER_WAIT_S if room else FULL_WAIT_S)
            records = read(room, 0, first_wait_s=0) if room else []
        else:
            records = read(room, self.max_wait_ms)
        self._read = len(records)
        self.pending += records
        if self.pending and self.session.has_room:
            batch, self.pending = self.pending, []
            return batch
        return None
