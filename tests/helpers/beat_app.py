"""A celery app for the legion tests: only a beat with a 1 s schedule.

No worker runs: each tick beat sends stays in redis, in the broker's queue
(the list `celery`), as the message a worker would run. Before it is
published, beat adds who sent it and when (the replica's hostname: its UTS
namespace's; the wall clock, which all replicas share), so the queue is the
record of which replica's beat sent which tick when.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

# celery is in the webapp example's venv (which runs this), not in pidone's
from celery import Celery  # type: ignore[import-not-found]
from celery.signals import before_task_publish  # type: ignore[import-not-found]

REDIS_URL = os.environ["REDIS_URL"]
TICK = "legion.tick"

app = Celery("beat_app", broker=REDIS_URL)
app.conf.update(
    beat_schedule={"tick": {"task": TICK, "schedule": 1.0}},
    # A beat cut off from redis gives up a publish quickly (it is stopped
    # anyway when its pidone loses the lease); with redis back it connects again.
    broker_connection_timeout=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"socket_timeout": 1, "socket_connect_timeout": 1},
)


def sign_the_tick(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers["sender"] = socket.gethostname()
        headers["sent_at"] = time.time()


before_task_publish.connect(sign_the_tick, weak=False)
