"""How a consumer waits out failures, decided by the error tree (core/errors.py) alone.

A TransientError (a service away, slow or restarting) is retried without limit, with exponential
back-off, until the consumer stops: its offset does not move, so nothing is lost by waiting. A
RecordRejected (a service answered and refused) may be a passing fault too, so `attempts` tries it
`poison_attempts` times in all before giving up on the records. Anything else is raised at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception, wait_exponential_jitter

from freshvec.core.errors import RecordRejected, TransientError


class RetryPolicy:
    def __init__(self, stopped: threading.Event, max_backoff_s: float, poison_attempts: int,
                 on_retry: Callable[[BaseException, str], None] = lambda exc, target: None,
                 on_recovered: Callable[[], None] = lambda: None):
        """`on_retry(error, target)` runs before each wait, `target` naming the service (kafka, serve,
        weaviate); `on_recovered()` when a call that had to be retried succeeded."""
        self.stopped, self.max_backoff_s, self.poison_attempts = stopped, max_backoff_s, poison_attempts
        self.on_retry, self.on_recovered = on_retry, on_recovered

    def call(self, fn: Callable[..., Any], *args, target: str, within_s: float | None = None) -> Any:
        """fn(*args) until it succeeds; a retriable error backs off (until stopped, then it is raised).

        `within_s`: give up after that long and raise the last error, for a call whose client may be
        the one stuck, so that the caller starts over with a new one. Once stopped, no call is made
        and no back-off waits: a stopped session's writer must exit, not write (see session.py).
        """
        failed: list[BaseException] = []  # the last error, raised as it is when stopped mid-retry

        def before_sleep(state) -> None:
            failed[:] = [state.outcome.exception()]
            self.on_retry(failed[0], target)

        for attempt in Retrying(
            retry=retry_if_exception(lambda e: getattr(e, "retriable", False)),
            wait=wait_exponential_jitter(multiplier=0.05, max=self.max_backoff_s, jitter=0.05),
            stop=lambda state: self.stopped.is_set() or (
                within_s is not None and (state.seconds_since_start or 0) >= within_s),
            before_sleep=before_sleep,
            sleep=self.stopped.wait,
            reraise=True,
        ):
            if self.stopped.is_set():
                raise failed[0] if failed else TransientError(f"stopped before calling {target}")
            with attempt:
                result = fn(*args)
        if attempt.retry_state.attempt_number > 1:
            self.on_recovered()
        return result

    def attempts(self, fn: Callable[..., Any], *args, target: str) -> Any:
        """`call`, plus `poison_attempts` tries in all of a RecordRejected: one that repeats is the record's doing."""
        for attempt in range(1, self.poison_attempts + 1):
            try:
                return self.call(fn, *args, target=target)
            except RecordRejected as exc:
                if attempt == self.poison_attempts or self.stopped.is_set():
                    raise
                self.on_retry(exc, target)
                self.pause(attempt)

    def pause(self, attempt: int) -> None:
        """The back-off between tries of a refused record (returns early when the consumer stops)."""
        self.stopped.wait(min(0.1 * 2 ** attempt, self.max_backoff_s))
