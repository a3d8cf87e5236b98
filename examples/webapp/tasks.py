"""The worker side of the example: the celery app and its one task.

pidone runs the worker as `celery -A tasks worker ...` (Procfile); app.py
imports this module to queue tasks and read their results. redis on
127.0.0.1:6379 is both the broker (the queue) and the result backend.
pidone knows the worker is ready from its own log line ("worker@HOST
ready.", pidone.toml's `ready = "log:..."`): no code here for it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# /enqueue refuses longer tasks; the worker's stop_timeout in pidone.toml is
# above this, so a warm shutdown always lets a running task finish.
MAX_SECONDS = 60

celery = Celery("tasks", broker=REDIS_URL, backend=REDIS_URL)
celery.conf.update(
    # Acknowledge a task once it has finished, not when the worker takes it.
    # The stop pidone sends (SIGTERM to the main pid: a warm shutdown) lets
    # running tasks finish either way; late acks are for a worker that dies
    # under a task: kill -9, the SIGKILL pidone sends after stop_timeout, the
    # OOM killer, a cold shutdown (SIGQUIT). The message is then still in
    # redis, unacknowledged, and is delivered again: kombu puts it back when
    # the dying worker's connection closes cleanly, or once the visibility
    # timeout below has passed. The price: a task may run twice, so tasks
    # must be idempotent (this one is).
    task_acks_late=True,
    # The same when a pool child dies under a task (WorkerLostError): put the
    # task back in the queue instead of recording a failure.
    task_reject_on_worker_lost=True,
    # With late acks, reserve one task at a time per pool process: a message
    # prefetched behind a long task would wait for it, unacknowledged.
    worker_prefetch_multiplier=1,
    # An unacknowledged message is delivered again after this many seconds:
    # longer than the longest task, or a running task would start twice.
    broker_transport_options={"visibility_timeout": 5 * MAX_SECONDS},
    result_expires=24 * 3600,
    task_track_started=True,  # /result shows STARTED while the task runs
    # redis is up when pidone starts the worker (it is `after` redis); if it
    # goes away later, pidone cycles the worker anyway. Retry meanwhile.
    broker_connection_retry_on_startup=True,
)


@celery.task(name="tasks.sleep_then_return")
def sleep_then_return(seconds: float) -> dict[str, Any]:
    """Sleep, then return a value: a stand-in for real work of a known length."""
    started = time.time()
    time.sleep(seconds)
    return {
        "slept": seconds,
        "worker_pid": os.getpid(),
        "started_at": started,
        "finished_at": time.time(),
    }
