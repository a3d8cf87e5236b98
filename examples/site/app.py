"""The site's web side: a plain WSGI application that gunicorn serves.

    GET /                   hello, from which gunicorn worker (pid, uid)
    GET /enqueue?seconds=N  queue a task that sleeps N seconds (0..30)
    GET /result/ID          the task's state, and its value once done
    GET /tick               when beat's periodic task last ran (epoch seconds)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from celery.result import AsyncResult
from tasks import MAX_SECONDS, celery, sleep_then_return

LOADED_AT = time.time()

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def reply(start: StartResponse, status: str, body: object) -> list[bytes]:
    data = (json.dumps(body) + "\n").encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def application(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        hello = {"site": "hello", "pid": os.getpid(), "uid": os.getuid(), "loaded": LOADED_AT}
        return reply(start, "200 OK", hello)
    if path == "/enqueue":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            seconds = float(query.get("seconds", ["1"])[0])
        except ValueError:
            seconds = math.nan
        if not 0 <= seconds <= MAX_SECONDS:  # NaN fails this too
            return reply(start, "400 Bad Request", {"error": f"seconds: 0 to {MAX_SECONDS}"})
        task = sleep_then_return.delay(seconds)
        return reply(start, "202 Accepted", {"id": task.id, "result_url": f"/result/{task.id}"})
    if path.startswith("/result/"):
        task = AsyncResult(path.removeprefix("/result/"), app=celery)
        body: dict[str, object] = {"state": task.state}
        if task.successful():
            body["result"] = task.result
        return reply(start, "200 OK", body)
    if path == "/tick":
        last = celery.backend.get("site:last-tick")
        return reply(start, "200 OK", {"last_tick": float(last) if last else None})
    return reply(start, "404 Not Found", {"error": "not found"})
