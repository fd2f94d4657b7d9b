"""The worker's consumer (``CELERY_WORKER_CONSUMER``), in its own module: the web imports
``playground.broker`` for its short publish, and need not import Celery's worker."""

from __future__ import annotations

import time

from celery.worker import state
from celery.worker.consumer import Consumer as CeleryConsumer

# Consumer's pauses after a refused write (seconds): 1, 2, 4, then this, until the consumer
# has run this long without one.
CHANNEL_ERROR_PAUSE_MAX = 8
CHANNEL_ERROR_STREAK_RESET = 60
CHANNEL_ERROR_PAUSE_STEP = 0.2  # how soon a shutdown asked for during a pause is seen


class Consumer(CeleryConsumer):
    """Celery's consumer, pausing between restarts while the broker refuses its writes.

    A Redis broker out of memory (``maxmemory`` with ``noeviction``) takes connections but
    refuses writes with an error reply, a channel error, which the worker retries as a lost
    connection (``CELERY_BROKER_CHANNEL_ERROR_RETRY``). Celery reconnects at once each time,
    so the worker restarted its consumer five times a second, logging a warning each time
    and a "Frequent restarts detected" error with its traceback every second (about six
    lines a second for as long as the server stayed full, session 44). A lost connection
    already waits between attempts (``broker_connection_retry``'s steps); a refused write
    now does too: 1, 2, 4, then every ``CHANNEL_ERROR_PAUSE_MAX`` seconds, the streak
    starting again once the consumer ran for ``CHANNEL_ERROR_STREAK_RESET`` seconds without
    one. A shutdown asked for meanwhile ends the pause at once."""

    # When the last pause ended (monotonic), and how many pauses in a row there have been.
    _channel_error_at: float | None = None
    _channel_error_streak = 0

    def on_connection_error_after_connected(self, exc) -> None:
        super().on_connection_error_after_connected(exc)
        self._pause_if_refused(exc)

    def on_connection_error_before_connected(self, exc) -> None:
        super().on_connection_error_before_connected(exc)
        self._pause_if_refused(exc)

    def _pause_if_refused(self, exc) -> None:
        if isinstance(exc, self.channel_errors) and not isinstance(exc, self.connection_errors):
            self._channel_error_pause()

    def _channel_error_pause(self) -> None:
        now = time.monotonic()
        streak = self._channel_error_streak
        if (
            self._channel_error_at is None
            or now - self._channel_error_at > CHANNEL_ERROR_STREAK_RESET
        ):
            streak = 0
        pause = min(CHANNEL_ERROR_PAUSE_MAX, 2**streak)
        self._channel_error_streak = streak + 1
        deadline = now + pause
        while (left := deadline - time.monotonic()) > 0 and not _shutting_down():
            time.sleep(min(CHANNEL_ERROR_PAUSE_STEP, left))
        # Measured from the pause's end: a restart that fails at once is part of the streak.
        self._channel_error_at = time.monotonic()


def _shutting_down() -> bool:
    """A shutdown asked for (what celery's ``maybe_shutdown`` raises for): the consumer's
    loop ends next, so a pause ends now."""
    return state.should_stop not in (None, False) or state.should_terminate not in (None, False)
