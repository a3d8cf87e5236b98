"""The site's tasks: the celery app that the worker and beat run (Procfile),
and app.py queues into. The site's own redis, on its unix socket, is both the
broker and the result backend."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

REDIS_SOCKET = os.environ.get("REDIS_SOCKET", "/run/pidone-site/redis.sock")
REDIS_URL = f"redis+socket://{REDIS_SOCKET}"
MAX_SECONDS = 30  # app.py refuses longer tasks; the worker's stop_timeout is above it
TICK_SECONDS = 5.0  # beat queues `tick` this often

celery = Celery("tasks", broker=REDIS_URL, backend=REDIS_URL)
celery.conf.update(
    task_acks_late=True,  # a worker killed under a task leaves it in the queue
    worker_prefetch_multiplier=1,
    broker_transport_options={"visibility_timeout": 10 * MAX_SECONDS},
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    beat_schedule={"tick": {"task": "tasks.tick", "schedule": TICK_SECONDS}},
)


@celery.task(name="tasks.sleep_then_return")
def sleep_then_return(seconds: float) -> dict[str, Any]:
    """A stand-in for real work of a known length."""
    time.sleep(seconds)
    return {"slept": seconds, "worker_pid": os.getpid(), "uid": os.getuid()}


@celery.task(name="tasks.tick")
def tick() -> float:
    """What beat queues every TICK_SECONDS: the last one is on GET /tick."""
    now = time.time()
    celery.backend.set("site:last-tick", str(now))
    return now
