"""The web side of the example: a Flask app that uwsgi serves behind nginx.

    GET /                 hello, and which uwsgi worker answered
    GET /enqueue?seconds=N  queue a task that sleeps N seconds (0..60), returns its id
    GET /result/<id>      the task's state, and its value once it has one

uwsgi loads `app` from this module (uwsgi.ini: module = app:app); the task
goes to the celery worker through redis (tasks.py).
"""

from __future__ import annotations

import os
import time

from celery.result import AsyncResult
from flask import Flask, Response, jsonify, request
from tasks import MAX_SECONDS, celery, sleep_then_return

app = Flask(__name__)
LOADED_AT = time.time()  # a graceful reload (SIGHUP to uwsgi) imports the app anew


@app.get("/")
def hello() -> str:
    return f"Hello from pidone-webapp! (uwsgi worker {os.getpid()}, app loaded {LOADED_AT:.3f})\n"


@app.get("/enqueue")
def enqueue() -> tuple[Response, int]:
    try:
        seconds = float(request.args.get("seconds", "1"))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_SECONDS:  # NaN fails this too
        return jsonify(error=f"seconds must be a number from 0 to {MAX_SECONDS}"), 400
    result = sleep_then_return.delay(seconds)
    return jsonify(id=result.id, result_url=f"/result/{result.id}"), 202


@app.get("/result/<task_id>")
def result(task_id: str) -> Response:
    task = AsyncResult(task_id, app=celery)
    body: dict[str, object] = {"id": task_id, "state": task.state}
    if task.successful():
        body["result"] = task.result
    elif task.failed():
        body["error"] = repr(task.result)
    return jsonify(body)
